package app

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/anomaly"
	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/egress"
	"github.com/shopfloor/shopfloor/internal/export"
	"github.com/shopfloor/shopfloor/internal/gateway"
	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/ingest"
	"github.com/shopfloor/shopfloor/internal/pki"
	"github.com/shopfloor/shopfloor/internal/promapi"
	"github.com/shopfloor/shopfloor/internal/quota"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/postgres"
	"github.com/shopfloor/shopfloor/internal/store/sqlite"
	"github.com/shopfloor/shopfloor/internal/tsdb"
	"github.com/shopfloor/shopfloor/internal/users"
	"github.com/shopfloor/shopfloor/internal/web"
)

// ErrStart wraps every start-up failure.
var ErrStart = errors.New("hub did not start")

// closer is the part of a registry store the hub needs besides registry.Store.
type dbStore interface {
	registry.Store
	Close() error
	DB() *sql.DB // rules, alerts, actions and exports keep their tables here
}

// Hub is one running hub process.
type Hub struct {
	cfg config.Config
	log *slog.Logger

	store      dbStore
	Registry   *registry.Service
	TSDB       *tsdb.DB
	Quota      *quota.Tracker
	Bus        *bus.Bus
	Gateway    *gateway.Gateway
	writer     *ingest.Writer
	httpLn     net.Listener
	httpSrv    *http.Server
	ready      atomic.Bool
	metrics    *prometheus.Registry
	tls        *tls.Config
	twins      *twinSet // twins.go
	httpsLn    net.Listener
	httpsSrv   *http.Server
	rules      *ruleSet              // rules.go
	anomaly    *anomaly.Service      // anomaly.go
	console    *web.Server           // web.go
	dashboards web.DashboardStore    // web.go
	exports    *export.Manager       // exports.go
	egress     *egress.Policy        // what webhooks and exports may reach
	conn       *connectivity.Service // connectivity.go
	tmpl       *templateSet          // templates.go
	users      *users.Service        // web.go: console users and sessions
	metricsLn  net.Listener          // metrics.go: --metrics-listen
	metricsSrv *http.Server
	audit      *audit.Service // the audit log of API and console changes

	// AdminSecret is the bootstrap admin token, set only on the first start.
	AdminSecret string
	// OperatorOrg is the operator organization's id.
	OperatorOrg string
}

// NewHub opens every module; Run serves.
func NewHub(ctx context.Context, cfg config.Config, logger *slog.Logger) (_ *Hub, err error) {
	h := &Hub{cfg: cfg, log: logger, metrics: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	h.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w: %v", cfg.Data, ErrStart, err)
	}

	var chunks tsdb.ChunkStore
	if cfg.Postgres != "" {
		st, err := postgres.Open(ctx, cfg.Postgres, logger)
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL registry: %w", err)
		}
		h.store = st
		if chunks, err = tsdb.NewPostgresChunkStore(ctx, st.DB()); err != nil {
			return nil, fmt.Errorf("open PostgreSQL chunk store: %w", err)
		}
	} else {
		st, err := sqlite.OpenWith(ctx, filepath.Join(cfg.Data, "shopfloor.db"), sqlite.Options{Fsync: cfg.Fsync}, logger)
		if err != nil {
			return nil, fmt.Errorf("open SQLite registry: %w", err)
		}
		h.store = st
		if chunks, err = tsdb.NewSQLiteChunkStore(ctx, st.DB()); err != nil {
			return nil, fmt.Errorf("open SQLite chunk store: %w", err)
		}
	}
	h.Registry = registry.New(h.store, logger)
	op, secret, err := h.Registry.Bootstrap(ctx, cfg.AdminToken)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	h.AdminSecret, h.OperatorOrg = secret, op.ID

	h.TSDB, err = tsdb.Open(ctx, tsdb.Options{Dir: filepath.Join(cfg.Data, "tsdb"), Retention: cfg.Retention}, chunks, logger)
	if err != nil {
		return nil, fmt.Errorf("open time-series store: %w", err)
	}
	if err := h.applyRetention(ctx); err != nil {
		return nil, err
	}
	h.Quota = quota.New(quota.Limits{FieldsPerDevice: cfg.MaxDeviceFields, SeriesPerOrg: cfg.MaxOrgSeries, FieldNameLength: cfg.MaxFieldName})
	h.TSDB.EachField(h.Quota.Seed)

	h.Bus, err = bus.New(ctx, bus.Config{URL: cfg.NATS, Dir: filepath.Join(cfg.Data, "bus"), Prefix: cfg.BusPrefix, MaxBytes: int64(cfg.StreamMB) << 20, Fsync: cfg.Fsync}, logger)
	if err != nil {
		return nil, fmt.Errorf("start the bus: %w", err)
	}
	h.writer = ingest.New(h.Bus, h.TSDB, h.Registry, h.metrics, logger)
	// Anomaly scores feed the rules' anomaly(...).
	if err := h.openAnomaly(); err != nil {
		return nil, err
	}
	allow, err := cfg.EgressAllowList()
	if err != nil {
		return nil, err
	}
	h.egress = egress.New(allow, logger)
	// Templates before twins (patches and payloads are checked against
	// them), twins before rules (rule actions reach devices through them).
	if err := h.openTemplates(ctx); err != nil {
		return nil, err
	}
	if err := h.openTwins(ctx); err != nil {
		return nil, err
	}
	if err := h.openRules(ctx); err != nil {
		return nil, err
	}
	if err := h.openExports(ctx); err != nil {
		return nil, err
	}

	var extra []string
	if cfg.Hostname != "" {
		extra = append(extra, cfg.Hostname)
	}
	h.tls, err = pki.EnsureServerCert(logger, filepath.Join(cfg.Data, "pki"), cfg.TLSCert, cfg.TLSKey, extra)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	h.Gateway, err = gateway.New(gateway.Config{
		MQTTAddr: cfg.MQTT, MQTTSAddr: cfg.MQTTS, TLS: h.tls, MaxPayload: cfg.MaxPayload,
		OnConnection: h.connectionChanged,
		Admit:        h.admit,
		Meter:        h.meter,
		Priority:     h.priority,
		MaxInflight:  cfg.IngestInflight,
		MaxTokenTTL:  cfg.MaxTokenTTL,
		Cloud:        templateCloud{twinCloud{h.twins}, h},
		Limits:       h.Quota,
		LastStamp:    h.TSDB.LastTime,
	}, h.Registry, h.Bus, logger)
	if err != nil {
		return nil, fmt.Errorf("MQTT gateway: %w", err)
	}
	if err := h.twins.router.SetDevices(h.Gateway); err != nil {
		return nil, err
	}
	h.Registry.OnDeviceChanged(h.credentialsChanged)
	h.Registry.CheckTemplatesWith(h.templateExists)
	if err := h.openConnectivity(ctx); err != nil {
		return nil, err
	}
	if err := h.Gateway.RegisterMetrics(h.metrics); err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}

	if h.audit, err = audit.New(ctx, audit.Config{DB: h.store.DB(), Driver: h.driverName(), Logger: logger.With("module", "audit")}); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	prom := promapi.New(h.TSDB.Queryable, api.OrgFromRequest, logger, promapi.Options{})
	console, err := h.newConsole(prom)
	if err != nil {
		return nil, err
	}
	srv, err := api.New(api.Deps{
		Console:       console,
		Registry:      apiRegistry{h.Registry, h},
		Telemetry:     telemetry{h.TSDB},
		Events:        telemetry{h.TSDB},
		Anomaly:       h.anomaly,
		Usage:         h.Quota,
		Presence:      h.Gateway,
		Prometheus:    prom,
		MQTTWebSocket: h.Gateway.WebSocketHandler(),
		Metrics:       promhttp.HandlerFor(h.metrics, promhttp.HandlerOpts{}),
		Ready:         h.ready.Load,
		SASToken:      azure.SASToken,
		MaxTokenTTL:   cfg.MaxTokenTTL,
		Twins:         h.twins.svc,
		Methods:       h.twins.router,
		Templates:     h.tmpl.svc,
		Jobs:          h.tmpl.jobs,
		Users:         usersAPI{h.users},
		Audit:         h.audit,
		Rules:         h.rules.svc,
		Alerts:        h.rules.alerts,
		Deliveries:    h.rules.dispatch,
		Exports:       h.exportsAPI(),
		Connectivity:  h.connAPI(),
		Registerer:    h.metrics,
		RetentionChanged: func(org string, d time.Duration) {
			h.TSDB.SetRetention(org, d)
		},
		Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("REST API: %w", err)
	}
	h.httpLn, err = net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s: %w: %v", cfg.HTTP, ErrStart, err)
	}
	h.httpSrv = api.NewHTTPServer(srv.Handler(), h.connLimits(), logger)
	if err := h.listenHTTPS(srv.Handler()); err != nil {
		return nil, err
	}
	if err := h.listenMetrics(); err != nil {
		return nil, err
	}
	return h, nil
}

// applyRetention loads every organization's retention into the tsdb.
func (h *Hub) applyRetention(ctx context.Context) error {
	orgs, err := h.Registry.ListOrgs(ctx, h.OperatorOrg)
	if err != nil {
		return fmt.Errorf("list organizations: %w", err)
	}
	op, err := h.Registry.GetOrg(ctx, h.OperatorOrg)
	if err != nil {
		return fmt.Errorf("operator organization: %w", err)
	}
	for _, o := range append(orgs, op) {
		if o.RetentionDays > 0 {
			h.TSDB.SetRetention(o.ID, time.Duration(o.RetentionDays)*24*time.Hour)
		}
	}
	return nil
}

// Run serves until ctx ends, then shuts everything down.
func (h *Hub) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return h.TSDB.Run(ctx) })
	g.Go(func() error { return h.writer.Run(ctx) })
	g.Go(func() error { return h.Gateway.Run(ctx) })
	h.runTwins(ctx, g)
	h.runHTTPS(ctx, g)
	h.runMetrics(ctx, g)
	h.runRules(ctx, g)
	h.runAnomaly(ctx, g)
	h.runExports(ctx, g)
	h.runConnectivity(ctx, g)
	h.runTemplates(ctx, g)
	h.runSessionSweep(ctx, g)
	g.Go(func() error {
		err := h.httpSrv.Serve(h.httpLn)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		if err := h.waitGateway(ctx); err != nil {
			return err
		}
		h.ready.Store(true)
		h.log.Info("hub ready", "http", h.HTTPAddr(), "mqtt", h.MQTTAddr(), "mqtts", h.MQTTSAddr())
		<-ctx.Done()
		h.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return h.httpSrv.Shutdown(sctx)
	})
	err := g.Wait()
	h.Close()
	return err
}

func (h *Hub) waitGateway(ctx context.Context) error {
	for !h.Gateway.Serving() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// HTTPAddr is the bound HTTP address.
func (h *Hub) HTTPAddr() string { return h.httpLn.Addr().String() }

// MQTTAddr is the bound MQTT address, or "" when disabled.
func (h *Hub) MQTTAddr() string { return addrString(h.Gateway.Addr()) }

// MQTTSAddr is the bound MQTT-over-TLS address, or "" when disabled.
func (h *Hub) MQTTSAddr() string { return addrString(h.Gateway.TLSAddr()) }

// CAFile is the generated CA certificate devices should trust.
func (h *Hub) CAFile() string { return filepath.Join(h.cfg.Data, "pki", "ca.pem") }

// Ready reports whether the hub accepts devices.
func (h *Hub) Ready() bool { return h.ready.Load() }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// exportsAPI is the export manager, or nil (the API answers 503) without.
func (h *Hub) exportsAPI() api.Exports {
	if h.exports == nil {
		return nil
	}
	return h.exports
}

func (h *Hub) connLimits() api.ConnLimits {
	return api.ConnLimits{Total: h.cfg.HTTPMaxConns, PerAddr: h.cfg.HTTPMaxConnsPerAddr}
}

// Close releases everything NewHub opened; safe to call twice.
func (h *Hub) Close() {
	h.closeConnectivity()
	if h.Gateway != nil {
		_ = h.Gateway.Close()
	}
	if h.httpLn != nil {
		_ = h.httpLn.Close()
	}
	h.closeHTTPS()
	if h.metricsLn != nil {
		_ = h.metricsLn.Close()
	}
	if h.Bus != nil {
		_ = h.Bus.Close()
		h.Bus = nil
	}
	if h.TSDB != nil {
		if err := h.TSDB.Close(); err != nil {
			h.log.Error("close time-series store", "err", err)
		}
		h.TSDB = nil
	}
	if h.store != nil {
		_ = h.store.Close()
		h.store = nil
	}
}
