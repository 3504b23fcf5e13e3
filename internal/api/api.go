package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Registry is the part of *registry.Service the API calls. The signatures are
// those of the registry contract, so *registry.Service satisfies it and tests
// can use a fake.
type Registry interface {
	Authenticate(ctx context.Context, secret string) (registry.Principal, error)

	CreateOrg(ctx context.Context, parent string, o registry.Org) (registry.Org, error)
	GetOrg(ctx context.Context, id string) (registry.Org, error)
	ListOrgs(ctx context.Context, parent string) ([]registry.Org, error)
	SetRetention(ctx context.Context, id string, days int) (registry.Org, error)

	CreateToken(ctx context.Context, org, name string, role registry.Role) (registry.Token, error)
	ListTokens(ctx context.Context, org string) ([]registry.Token, error)
	DeleteToken(ctx context.Context, org, id string) error

	CreateSite(ctx context.Context, org string, s registry.Site) (registry.Site, error)
	GetSite(ctx context.Context, org, id string) (registry.Site, error)
	ListSites(ctx context.Context, org string) ([]registry.Site, error)
	DeleteSite(ctx context.Context, org, id string) error

	CreateDevice(ctx context.Context, org string, d registry.Device) (registry.Device, error)
	GetDevice(ctx context.Context, org, id string) (registry.Device, error)
	ListDevices(ctx context.Context, org string, f registry.DeviceFilter) (items []registry.Device, next string, err error)
	UpdateDevice(ctx context.Context, org, id string, p registry.DevicePatch) (registry.Device, error)
	DeleteDevice(ctx context.Context, org, id string) error
	RegenerateKey(ctx context.Context, org, id, which string) (registry.Device, error)
	ImportCSV(ctx context.Context, org string, r io.Reader, progress func(done, total int)) (registry.ImportReport, error)

	CreateEnrollmentGroup(ctx context.Context, org string, g registry.EnrollmentGroup) (registry.EnrollmentGroup, error)
	GetEnrollmentGroup(ctx context.Context, org, id string) (registry.EnrollmentGroup, error)
	ListEnrollmentGroups(ctx context.Context, org string) ([]registry.EnrollmentGroup, error)
	DeleteEnrollmentGroup(ctx context.Context, org, id string) error

	CreateCACert(ctx context.Context, org string, c registry.CACert) (registry.CACert, error)
	ListCACerts(ctx context.Context, org string) ([]registry.CACert, error)
	DeleteCACert(ctx context.Context, org, id string) error
}

// Telemetry reads a device's time series; the hub adapts its tsdb to it.
type Telemetry interface {
	// Range returns one series per field (all fields when fields is empty),
	// aggregated with agg over buckets of step between from and to.
	Range(ctx context.Context, org, device string, fields []string, from, to time.Time, step time.Duration, agg string) ([]FieldSeries, error)
	// Latest returns the newest value of every field of the device.
	Latest(ctx context.Context, org, device string) ([]LatestValue, error)
}

// FieldSeries is one field's points.
type FieldSeries struct {
	Field  string  `json:"field"`
	Points []Point `json:"points"`
}

// Point is one sample; T is unix milliseconds.
type Point struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}

// LatestValue is a field's newest value: a number, string or boolean.
type LatestValue struct {
	Field string `json:"field"`
	T     int64  `json:"t"`
	Value any    `json:"value"`
}

// Presence tells which devices hold an MQTT connection and drops one.
type Presence interface {
	Connected(deviceID string) bool
	Disconnect(deviceID string) bool
}

// Deps are the collaborators of the API server. Registry is required; the
// rest may be nil: the telemetry routes then answer 503, devices show as not
// connected, and a nil mount is simply not served.
type Deps struct {
	Registry  Registry
	Telemetry Telemetry
	Events    Events
	Anomaly   Anomaly
	Presence  Presence
	// Usage reports cardinality limits and usage; nil answers 503.
	Usage Usage
	// Connectivity manages SIMs, device groups and slices; nil answers 503
	// on /api/v1/connectivity/.
	Connectivity Connectivity
	// Prometheus serves the Prometheus-compatible HTTP API. It is mounted at
	// /prometheus/ behind token authentication with the prefix stripped, so
	// it sees /api/v1/query; OrgFromRequest gives the tenant.
	Prometheus http.Handler
	// MQTTWebSocket is mounted at /mqtt without API authentication (the
	// MQTT CONNECT authenticates).
	MQTTWebSocket http.Handler
	// Console serves the web console: every path outside /api/,
	// /prometheus/, /mqtt, /metrics and /healthz that no route matched.
	Console http.Handler
	// Metrics serves /metrics to tokens of the operator organization (any
	// role): the metrics name every organization. When nil, /metrics
	// serves the API's own request metrics from Registerer (if it is a
	// prometheus.Gatherer) or from the registry the server creates.
	Metrics http.Handler
	// Registerer receives the request metrics; a new prometheus.Registry is
	// created when nil. The global default registry is never used.
	Registerer prometheus.Registerer
	// Ready reports whether the hub is ready; GET /healthz answers 503 while
	// it is false. Nil means always ready.
	Ready func() bool
	// RetentionChanged, when set, is told after an organization's retention
	// changed, so the time-series store applies it without a restart.
	RetentionChanged func(org string, retention time.Duration)
	// Rules, Alerts, Deliveries and Exports serve /api/v1/rules, /alerts,
	// /actions and /exports; nil answers 503.
	Rules      Rules
	Alerts     Alerts
	Deliveries Deliveries
	Exports    Exports
	// Twins serves device twins, direct methods and cloud-to-device
	// messages (twin.go); their routes answer 503 when nil.
	Twins   Twins
	Methods Methods
	// Templates and Jobs serve /api/v1/templates and /api/v1/jobs
	// (templates.go, jobs.go); nil answers 503.
	Templates Templates
	Jobs      Jobs
	// Users serves /api/v1/users, the console's user accounts (users.go);
	// nil answers 503.
	Users Users
	// Audit records every change made through the API and serves
	// /api/v1/audit (audit.go); nil records nothing and answers 503.
	Audit Audit
	// SASToken signs a device SAS token (azure.SASToken).
	SASToken func(host, deviceID, key string, expiry time.Time) (string, error)
	// MaxTokenTTL is the longest SAS token the hub's gateway accepts, so
	// the longest the token route issues; 365 days when zero.
	MaxTokenTTL time.Duration
	Logger      *slog.Logger
	// Now is the clock for token expiry and default time ranges; time.Now
	// when nil.
	Now func() time.Time
}

// Server is the hub's HTTP handler.
type Server struct {
	deps    Deps
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	routes  []*route
	mounts  []*mount
	doc     []byte // the OpenAPI document, built once in New
	metrics *httpMetrics
	handler http.Handler
	seen    seenDevices
	audits  map[*route]*auditSpec // how each changing route is audited
}

// New builds the server and its OpenAPI document.
func New(deps Deps) (*Server, error) {
	if deps.Registry == nil {
		return nil, errors.New("api: Deps.Registry is required")
	}
	s := &Server{deps: deps, log: deps.Logger, now: deps.Now, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	reg := deps.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
	}
	m, err := newHTTPMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("api: register request metrics: %w", err)
	}
	s.metrics = m
	metricsHandler := deps.Metrics
	if metricsHandler == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			metricsHandler = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
		}
	}

	s.registerRoutes()
	s.mountHandlers(metricsHandler)
	if err := s.checkRoutes(); err != nil {
		return nil, err
	}
	doc, err := s.buildOpenAPI()
	if err != nil {
		return nil, fmt.Errorf("api: build the OpenAPI document: %w", err)
	}
	s.doc = doc
	s.audits = s.auditSpecs()
	for _, rt := range s.routes {
		s.mux.Handle(rt.Method+" "+rt.Pattern, s.wrapRoute(rt))
	}
	for _, mt := range s.mounts {
		s.mux.Handle(mt.Pattern, s.wrapMount(mt))
	}
	s.mux.HandleFunc("/", s.unmatched)
	s.handler = s.observe(securityHeaders(s.mux))
	return s, nil
}

// Handler is the root handler to serve.
func (s *Server) Handler() http.Handler { return s.handler }

// OpenAPI returns the OpenAPI 3.1 document as JSON.
func (s *Server) OpenAPI() []byte { return append([]byte(nil), s.doc...) }
