package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/users"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ErrNotConfigured is returned by optional features whose module the hub
// does not run.
var ErrNotConfigured = errors.New("not configured on this hub")

// Registry is the part of *registry.Service the console uses.
type Registry interface {
	Authenticate(ctx context.Context, secret string) (registry.Principal, error)
	GetOrg(ctx context.Context, id string) (registry.Org, error)
	ListOrgs(ctx context.Context, parent string) ([]registry.Org, error)
	ListSites(ctx context.Context, org string) ([]registry.Site, error)
	GetDevice(ctx context.Context, org, id string) (registry.Device, error)
	ListDevices(ctx context.Context, org string, f registry.DeviceFilter) ([]registry.Device, string, error)
	UpdateDevice(ctx context.Context, org, id string, p registry.DevicePatch) (registry.Device, error)
	RegenerateKey(ctx context.Context, org, id, which string) (registry.Device, error)
	ImportCSV(ctx context.Context, org string, r io.Reader, progress func(done, total int)) (registry.ImportReport, error)
}

// Telemetry reads a device's time series from the time-series store.
type Telemetry interface {
	Range(ctx context.Context, org, device string, fields []string, from, to time.Time, step time.Duration, agg string) ([]Series, error)
	Latest(ctx context.Context, org, device string) ([]LatestValue, error)
}

// Series is one field's points; T is unix milliseconds.
type Series struct {
	Field  string
	Points []Point
}

// Point is one sample.
type Point struct {
	T int64
	V float64
}

// LatestValue is a field's newest value: a float64, string or bool.
type LatestValue struct {
	Field string
	T     int64
	Value any
}

// Presence is what the MQTT gateway knows about connections.
type Presence interface {
	Connected(deviceID string) bool
	// DeviceMessages is the number of telemetry messages received on the
	// device's current connection; false when it is not connected.
	DeviceMessages(deviceID string) (uint64, bool)
}

// Alert is one alert as the console shows it.
type Alert struct {
	ID       string
	Rule     string
	Device   string
	Site     string
	Severity string // critical, major, minor, warning, info
	State    string // open, acknowledged, resolved
	Message  string
	At       time.Time
}

// Alerts lists an organization's alerts; the hub provides it once the rules
// engine runs.
type Alerts interface {
	// Recent returns the newest alerts of org, newest first; device "" means
	// every device.
	Recent(ctx context.Context, org, device string, limit int) ([]Alert, error)
}

// Anomaly is a device's streaming anomaly detector as the console shows it.
type Anomaly struct {
	Seen            bool // an update has been scored since the hub started
	Kind            string
	Fields          []string
	Warm            bool // warm-up is over: scores and alerts
	Warmup          int  // updates the warm-up lasts
	WarmupRemaining int
	Score           float64
	Alert           bool
	Contributions   []AnomalyContribution
}

// AnomalyContribution is one field's part in the score.
type AnomalyContribution struct {
	Field  string
	Share  float64
	Reason string // spike, shift, spread, jump, stuck, joint
}

// Anomalies reads devices' anomaly detectors; the hub provides it.
type Anomalies interface {
	DeviceAnomaly(ctx context.Context, org, device string) (Anomaly, error)
}

// Twin is a device twin: desired and reported JSON documents and the ETag
// that guards updates of desired.
type Twin struct {
	Desired  json.RawMessage
	Reported json.RawMessage
	ETag     string
}

// Twins reads and edits device twins.
type Twins interface {
	Get(ctx context.Context, org, device string) (Twin, error)
	// PatchDesired merges patch into desired if the twin's ETag is still
	// ifMatch.
	PatchDesired(ctx context.Context, org, device string, patch json.RawMessage, ifMatch string) (Twin, error)
}

// Methods invokes a direct method on a connected device.
type Methods interface {
	Invoke(ctx context.Context, org, device, method string, payload json.RawMessage, timeout time.Duration) (status int, response json.RawMessage, err error)
}

// Messages sends cloud-to-device messages.
type Messages interface {
	Send(ctx context.Context, org, device string, body []byte) error
}

// Users checks console user names and passwords; *users.Service
// implements it.
type Users interface {
	Authenticate(ctx context.Context, name, password string) (users.User, error)
	Get(ctx context.Context, id string) (users.User, error)
	// Create, List and Delete serve the admins' users page.
	Create(ctx context.Context, org, name, password string, role registry.Role) (users.User, error)
	List(ctx context.Context, org string) ([]users.User, error)
	Delete(ctx context.Context, org, id string) error
	// ChangePassword checks the current password, sets the new one and
	// signs out the user's sessions other than keep.
	ChangePassword(ctx context.Context, id, current, next, keep string) error
}

// Deps are the console's collaborators. Registry is required; a nil
// optional module makes its section say plainly that it is not enabled.
type Deps struct {
	Registry  Registry
	Telemetry Telemetry
	Presence  Presence
	Alerts    Alerts
	Twins     Twins
	Methods   Methods
	Messages  Messages
	// Dashboards stores dashboards; nil keeps them in memory.
	Dashboards DashboardStore
	// Connectivity lists the private network's SIMs and slices; nil shows
	// the page as not configured.
	Connectivity Connectivity
	// Users enables sign-in with a user name and password; nil offers API
	// tokens only.
	Users Users
	// Sessions keeps sign-ins across restarts; nil keeps them in memory.
	Sessions SessionStore
	// Rules edits alert rules; Inbox acts on alerts; Templates stores device
	// templates; PromQL evaluates dashboard tiles. Each is optional.
	Rules     Rules
	Inbox     Inbox
	Templates Templates
	PromQL    PromQL
	// Anomalies shows each device's anomaly detector; nil hides the panel.
	Anomalies Anomalies
	// Audit records every change made in the console and serves the audit
	// page (audit.go); nil records nothing and says the log is off.
	Audit  Audit
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// SessionTTL is how long a sign-in lasts without use; 12 h when zero.
	SessionTTL time.Duration
	// LivePeriod is how often live views look for new data; 1 s when zero.
	LivePeriod time.Duration
}

// Server is the console's HTTP handler.
type Server struct {
	deps     Deps
	log      *slog.Logger
	now      func() time.Time
	pages    map[string]*pageTemplate
	mux      *http.ServeMux
	sessions *sessions
	throttle *loginThrottle
	fleet    *fleetCache
	dash     DashboardStore
	live     time.Duration
}

// New builds the console.
func New(deps Deps) (*Server, error) {
	if deps.Registry == nil {
		return nil, errors.New("web: Deps.Registry is required")
	}
	s := &Server{deps: deps, log: deps.Logger, now: deps.Now, live: deps.LivePeriod, dash: deps.Dashboards}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.live <= 0 {
		s.live = time.Second
	}
	if s.dash == nil {
		s.dash = NewMemoryDashboards()
	}
	ttl := deps.SessionTTL
	if ttl <= 0 {
		ttl = 12 * time.Hour
	}
	s.sessions = newSessions(ttl, s.now, deps.Sessions)
	s.throttle = newLoginThrottle(s.now)
	s.fleet = newFleetCache()
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("web: parse templates: %w", err)
	}
	s.pages = pages
	s.installAudit()
	s.routes()
	return s, nil
}

// ServeHTTP serves the console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// SIMRow is one SIM as the connectivity page lists it.
type SIMRow struct {
	ICCID, IMSI, Label, State, SystemState, Device, IMEI string
	IMEILock                                             bool
	UpBytes, DownBytes                                   int64
}

// SliceRow is one network slice with its device groups.
type SliceRow struct {
	Name, Site, SD, DefaultBehavior string
	SST                             int
	DeviceGroups                    []string
}

// DeviceGroupRow is one device group with its QoS.
type DeviceGroupRow struct {
	Name, Site, DNN, Subnet, TrafficClass string
	Devices                               int
	UplinkBps, DownlinkBps                int64 // 0: no limit
	ARP                                   int   // the traffic class's priority, 0 when unknown
}

// CoreView is the mobile core (SD-Core) as the connectivity page shows
// it: the link (ok, unreachable, login_failed, starting, not_configured),
// and each object's state there (in_sync, pending, failed) with the
// core's own words.
type CoreView struct {
	Link, LinkDetail string
	LinkSince        time.Time
	LastReconcile    time.Time // zero: not read back yet
	Unmanaged        int
	InSync, Pending  int
	Failed           int
	Objects          []CoreObjectRow // groups, slices, and subscribers not in sync
}

// CoreObjectRow is one object's state in the mobile core.
type CoreObjectRow struct {
	Kind, Name, State, Detail string
	At                        time.Time
}

// Connectivity reads the private network's subscriber side.
type Connectivity interface {
	SIMs(ctx context.Context, org string, limit int) ([]SIMRow, error)
	DeviceGroups(ctx context.Context, org string) ([]DeviceGroupRow, error)
	Slices(ctx context.Context, org string) ([]SliceRow, error)
	Core(ctx context.Context, org string) (CoreView, error)
}
