package connectivity

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors; internal/api maps them to HTTP status codes.
var (
	ErrInvalid    = errors.New("invalid")            // 400: bad format, dangling reference, immutable field
	ErrNotFound   = errors.New("not found")          // 404
	ErrConflict   = errors.New("conflict")           // 409: already exists, or still referenced
	ErrTransition = errors.New("illegal transition") // 409: the lifecycle forbids the state change
)

// FieldError is bad input in one field. Field is the JSON name, dotted for
// nested fields ("ipDomain.subnet", "filters[2].application").
type FieldError struct {
	Field string
	Msg   string
	Kind  error // ErrInvalid, ErrConflict or ErrTransition
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %s", e.Field, e.Msg) }
func (e *FieldError) Unwrap() error { return e.Kind }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Kind: ErrInvalid}
}

// State is a SIM's lifecycle state.
type State string

const (
	StateInventory  State = "INVENTORY"
	StateTestReady  State = "TEST_READY"
	StateActivated  State = "ACTIVATED"
	StateSuspended  State = "SUSPENDED"
	StateTerminated State = "TERMINATED"
)

// States lists the lifecycle states in order.
var States = []State{StateInventory, StateTestReady, StateActivated, StateSuspended, StateTerminated}

// transitions are the changes a user may make. A SIM may skip testing
// (INVENTORY → ACTIVATED), as carriers allow; TERMINATED is final.
var transitions = map[State][]State{
	StateInventory: {StateTestReady, StateActivated},
	StateTestReady: {StateActivated, StateInventory},
	StateActivated: {StateSuspended},
	StateSuspended: {StateActivated, StateTerminated},
}

// CanTransition reports whether a user may change a SIM from one state to
// another.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// System-imposed conditions on a SIM. They are set by the hub, audited like
// transitions, raised as alerts, and cleared when a user activates the SIM
// again (or, for the data limit, when the billing cycle turns).
const (
	SystemDataLimit    = "data_limit_exceeded"
	SystemUnauthorized = "unauthorized_imei"
)

// SIM is one SIM card.
type SIM struct {
	ICCID  string `json:"iccid"`
	Org    string `json:"org"`
	IMSI   string `json:"imsi"`
	MSISDN string `json:"msisdn,omitempty"`
	Label  string `json:"label,omitempty"`
	State  State  `json:"state"`
	// SystemState is a condition the hub imposed: data_limit_exceeded or
	// unauthorized_imei; empty when none.
	SystemState string `json:"systemState,omitempty"`
	Device      string `json:"device,omitempty"`
	// IMEILock binds the SIM to the first IMEI it connects with; IMEI is
	// that IMEI (or IMEISV) once bound.
	IMEILock  bool      `json:"imeiLock"`
	IMEI      string    `json:"imei,omitempty"`
	StaticIP  string    `json:"staticIp,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Ki and OPc are the subscriber's authentication keys (32 hex digits
	// each) for the mobile core; they are stored, pushed to the core and
	// never shown by the API.
	Ki  string `json:"-"`
	OPc string `json:"-"`
}

// SIMPatch changes only the non-nil fields. An empty Device unbinds the SIM;
// ClearIMEI forgets the bound IMEI so the next connection binds again.
type SIMPatch struct {
	Label     *string `json:"label,omitempty"`
	MSISDN    *string `json:"msisdn,omitempty"`
	Device    *string `json:"device,omitempty"`
	IMEILock  *bool   `json:"imeiLock,omitempty"`
	ClearIMEI bool    `json:"clearImei,omitempty"`
	StaticIP  *string `json:"staticIp,omitempty"`
	// Ki and OPc replace the SIM's keys (32 hex digits each), as when a
	// card is re-personalised; the mobile core gets them at once.
	Ki  *string `json:"ki,omitempty"`
	OPc *string `json:"opc,omitempty"`
}

// SIMFilter narrows ListSIMs; empty fields do not filter.
type SIMFilter struct {
	State  State
	Device string
	Label  string // prefix
	Limit  int    // default 100, at most 1000
	After  string // paging cursor: the last ICCID of the previous page
}

// SmallCell is one radio (eNodeB/gNodeB) of a site.
type SmallCell struct {
	ID      string `json:"id"`
	TAC     int    `json:"tac"`
	Address string `json:"address"`
	Enabled bool   `json:"enabled"`
}

// IMSIRange is the block of IMSIs a site's SIMs come from, inclusive.
type IMSIRange struct {
	First string `json:"first"`
	Last  string `json:"last"`
}

// SiteNetwork is a site's private-network settings. Site is the id of a
// site in the registry.
type SiteNetwork struct {
	Site       string      `json:"site"`
	MCC        string      `json:"mcc"`
	MNC        string      `json:"mnc"`
	IMSIRange  *IMSIRange  `json:"imsiRange,omitempty"`
	SmallCells []SmallCell `json:"smallCells"`
	// EdgeNode is the site's edge node, which runs the user plane (UPF).
	EdgeNode  string    `json:"edgeNode,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// IPDomain is a device group's data network.
type IPDomain struct {
	DNN    string   `json:"dnn"`
	Subnet string   `json:"subnet"`
	DNS    []string `json:"dns,omitempty"`
	MTU    int      `json:"mtu"`
}

// Quota caps the bytes (both ways) each SIM of a device group may use per
// billing cycle (a calendar month, UTC). Action "block" stops the SIM at
// the cap; "notify" only alerts. Alerts fire at 80% and 100%.
type Quota struct {
	Bytes  int64  `json:"bytes"`
	Action string `json:"action"`
}

// DeviceGroup is a set of devices sharing an IP domain, a maximum bitrate
// per device and a traffic class.
type DeviceGroup struct {
	Name         string    `json:"name"`
	Site         string    `json:"site"`
	Devices      []string  `json:"devices"`
	IPDomain     IPDomain  `json:"ipDomain"`
	MBRUplink    int64     `json:"mbrUplink"`   // bits per second per device
	MBRDownlink  int64     `json:"mbrDownlink"` // bits per second per device
	TrafficClass string    `json:"trafficClass"`
	Quota        *Quota    `json:"quota,omitempty"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// TrafficClass is a QoS class.
type TrafficClass struct {
	Name string `json:"name"`
	ARP  int    `json:"arp"`  // allocation and retention priority, 1 (highest) to 15
	QCI  int    `json:"qci"`  // QCI (4G) or 5QI (5G), 1 to 255
	PDB  int    `json:"pdb"`  // packet delay budget, milliseconds
	PELR int    `json:"pelr"` // packet error loss rate exponent: 10^-pelr, 1 to 8
	// UpdatedAt is set by the hub.
	UpdatedAt time.Time `json:"updatedAt"`
}

// Default behaviours of a slice for traffic no filter matched.
const (
	DenyAll     = "DENY-ALL"
	AllowAll    = "ALLOW-ALL"
	AllowPublic = "ALLOW-PUBLIC"
)

// AppFilter allows or denies an application on a slice; lower Priority
// numbers are evaluated first.
type AppFilter struct {
	Application string `json:"application"`
	Priority    int    `json:"priority"`
	Action      string `json:"action"` // allow or deny
}

// Bitrate is a maximum bitrate in bits per second with a burst in bytes.
type Bitrate struct {
	Uplink     int64 `json:"uplink"`
	Downlink   int64 `json:"downlink"`
	BurstBytes int64 `json:"burstBytes"`
}

// Slice is a network slice. SST and SD cannot change once created.
type Slice struct {
	Name            string      `json:"name"`
	Site            string      `json:"site"`
	SST             int         `json:"sst"`
	SD              string      `json:"sd"` // 6 hex digits, 000000 to FFFFFF
	DeviceGroups    []string    `json:"deviceGroups"`
	DefaultBehavior string      `json:"defaultBehavior"`
	Filters         []AppFilter `json:"filters"`
	MBR             *Bitrate    `json:"mbr,omitempty"`
	UpdatedAt       time.Time   `json:"updatedAt"`
}

// Endpoint is a port range and protocol of an application.
type Endpoint struct {
	Port     int    `json:"port"`
	PortEnd  int    `json:"portEnd,omitempty"` // inclusive; Port when 0
	Protocol string `json:"protocol"`          // TCP, UDP or ANY
}

// Application is a destination devices talk to.
type Application struct {
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"` // address/bits
	Endpoints []Endpoint `json:"endpoints"`
	UpdatedAt time.Time  `json:"updatedAt"`
}

// AuditEntry is one SIM state change.
type AuditEntry struct {
	ID     string    `json:"id"`
	ICCID  string    `json:"iccid"`
	Actor  string    `json:"actor"` // "token:<id>", "schedule:<id>", "job:<id>" or "system"
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"`
}

// AuditFilter narrows ListAudit.
type AuditFilter struct {
	ICCID string
	Limit int
	After string
}

// Scheduled is a state change waiting for its time.
type Scheduled struct {
	ID    string    `json:"id"`
	ICCID string    `json:"iccid"`
	To    State     `json:"to"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
}

// Job states.
const (
	JobRunning = "running"
	JobDone    = "done"
)

// Job is an asynchronous bulk change.
type Job struct {
	ID        string     `json:"id"`
	Org       string     `json:"org"`
	Kind      string     `json:"kind"` // import or state
	Status    string     `json:"status"`
	Total     int        `json:"total"`
	Done      int        `json:"done"`
	Failed    int        `json:"failed"`
	Errors    []RowError `json:"errors"`
	CreatedAt time.Time  `json:"createdAt"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
}

// RowError is why one row of a bulk job failed. Row counts from 1.
type RowError struct {
	Row   int    `json:"row"`
	ICCID string `json:"iccid,omitempty"`
	Error string `json:"error"`
}

// MaxJobErrors bounds the row errors a job keeps.
const MaxJobErrors = 1000

// Direction of traffic.
type Direction int

const (
	Uplink   Direction = iota // device → network
	Downlink                  // network → device
)

// Usage is bytes and messages each way.
type Usage struct {
	UpBytes   int64 `json:"upBytes"`
	DownBytes int64 `json:"downBytes"`
	UpMsgs    int64 `json:"upMessages"`
	DownMsgs  int64 `json:"downMessages"`
}

func (u *Usage) add(o Usage) {
	u.UpBytes += o.UpBytes
	u.DownBytes += o.DownBytes
	u.UpMsgs += o.UpMsgs
	u.DownMsgs += o.DownMsgs
}

// Bytes is the total both ways.
func (u Usage) Bytes() int64 { return u.UpBytes + u.DownBytes }

// UsageRow is usage in one hour.
type UsageRow struct {
	Hour time.Time `json:"hour"`
	Usage
}

// UsageQuery selects usage by SIM, device or slice (exactly one) between
// From and To (hours, UTC).
type UsageQuery struct {
	ICCID, Device, Slice string
	From, To             time.Time
}

// SIMUsage is a SIM's usage in the current billing cycle.
type SIMUsage struct {
	CycleStart time.Time `json:"cycleStart"`
	Usage
	QuotaBytes int64 `json:"quotaBytes,omitempty"`
}

// CDR is a usage record from the radio side (the mobile core's charging
// records), imported idempotently by ID.
type CDR struct {
	ID        string    `json:"id"`
	IMSI      string    `json:"imsi"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	UpBytes   int64     `json:"upBytes"`
	DownBytes int64     `json:"downBytes"`
}

// CDRReport is the outcome of a CDR import.
type CDRReport struct {
	Imported  int        `json:"imported"`
	Duplicate int        `json:"duplicate"`
	Failed    int        `json:"failed"`
	Errors    []RowError `json:"errors"`
}

// Decision is the answer to CheckConnect.
type Decision struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason,omitempty"`
	ICCID  string `json:"iccid,omitempty"`
}

// Directory answers whether sites and devices exist; the hub adapts the
// registry to it.
type Directory interface {
	SiteExists(ctx context.Context, org, site string) (bool, error)
	DeviceExists(ctx context.Context, org, device string) (bool, error)
}

// Alert is a condition the hub raises for people to see.
type Alert struct {
	Org      string    `json:"org"`
	Kind     string    `json:"kind"` // data_limit_exceeded, data_limit_80, unauthorized_imei
	Severity string    `json:"severity"`
	ICCID    string    `json:"iccid"`
	Device   string    `json:"device,omitempty"`
	Message  string    `json:"message"`
	At       time.Time `json:"at"`
}

// Alerter receives alerts; the hub wires it to its alerts service.
type Alerter interface {
	Raise(ctx context.Context, a Alert) error
}
