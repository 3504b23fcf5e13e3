package export

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/sqldb"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/egress"
)

// Config builds a Manager.
type Config struct {
	DB     *sql.DB
	Driver string // "sqlite" or "pgx"
	Bus    Consumer
	// NATS is the connection NATS destinations publish on; SubjectPrefix
	// (the bus prefix, e.g. "shopfloor") makes their subjects the
	// organization's subject space, <prefix>.exports.<org>.<subject>
	// (bus.Subjects), so an organization cannot publish into another's or
	// the hub's subjects.
	NATS          *nats.Conn
	SubjectPrefix string
	// Dir is where file destinations write: <Dir>/<org>/<name>/.
	Dir       string
	Directory Directory // optional: tag filters and enrichment need it
	// Egress is the policy every webhook and remote-write connection is
	// checked against; nil refuses internal addresses and allows the rest.
	Egress     *egress.Policy
	Logger     *slog.Logger
	Registerer prometheus.Registerer // optional: per-destination lag and counters
	// PollEvery is how often stored destinations are reconciled with the
	// running ones; default 2s.
	PollEvery time.Duration
	// InfoTTL is how long device info is cached; default 1m.
	InfoTTL time.Duration
}

// Manager stores destinations and runs one durable bus consumer per
// enabled destination.
type Manager struct {
	cfg      Config
	db       *sql.DB
	pg       bool
	log      *slog.Logger
	client   *http.Client
	subjects bus.Subjects

	mu      sync.Mutex
	running map[string]*runner // by destination id
	wake    chan struct{}

	infoMu sync.Mutex
	info   map[[2]string]cachedInfo

	lag       *prometheus.GaugeVec
	delivered *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

type cachedInfo struct {
	info DeviceInfo
	at   time.Time
}

type runner struct {
	d      Destination
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	delivered int64
	lastErr   string
	lastAt    time.Time
}

// consumerName is the durable bus consumer of a destination.
func consumerName(id string) string { return "export_" + id }

// New creates the export_destinations table if it does not exist.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("export: a database and a bus are required")
	}
	m := &Manager{cfg: cfg, db: cfg.DB, log: cfg.Logger, running: map[string]*runner{}, wake: make(chan struct{}, 1),
		info: map[[2]string]cachedInfo{}, client: cfg.Egress.Client(), subjects: bus.NewSubjects(cfg.SubjectPrefix)}
	switch cfg.Driver {
	case "sqlite":
	case "pgx", "postgres":
		m.pg = true
	default:
		return nil, fmt.Errorf("export: database driver %q is not supported; use sqlite or pgx", cfg.Driver)
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.cfg.PollEvery <= 0 {
		m.cfg.PollEvery = 2 * time.Second
	}
	if m.cfg.InfoTTL <= 0 {
		m.cfg.InfoTTL = time.Minute
	}
	if _, err := m.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS export_destinations (
		id TEXT PRIMARY KEY,
		org TEXT NOT NULL,
		name TEXT NOT NULL,
		def TEXT NOT NULL,
		created_at BIGINT NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("export: create table: %w", err)
	}
	if _, err := m.db.ExecContext(ctx, `CREATE UNIQUE INDEX IF NOT EXISTS export_destinations_org_name ON export_destinations (org, name)`); err != nil {
		return nil, fmt.Errorf("export: create index: %w", err)
	}
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shopfloor_export_lag_messages",
		Help: "Bus messages an export destination has not delivered yet."}, []string{"org", "export"})
	m.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shopfloor_export_records_total",
		Help: "Telemetry records delivered to an export destination."}, []string{"org", "export"})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shopfloor_export_failures_total",
		Help: "Failed delivery attempts to an export destination (each is retried)."}, []string{"org", "export"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.lag, m.delivered, m.failures} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("export: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *Manager) q(query string) string {
	return sqldb.Rebind(m.pg, query)
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "x-" + hex.EncodeToString(b)
}

// Create stores a destination; it starts within PollEvery (at once when
// Run is running).
func (m *Manager) Create(ctx context.Context, d Destination) (Destination, error) {
	if d.Org == "" {
		return Destination{}, fmt.Errorf("%w: an export belongs to an organization", ErrInvalid)
	}
	if err := d.validate(); err != nil {
		return Destination{}, err
	}
	if err := m.checkTarget(d); err != nil {
		return Destination{}, fmt.Errorf("%w: export %q: %w", ErrInvalid, d.Name, err)
	}
	d.ID, d.Created = newID(), time.Now().UTC().Truncate(time.Millisecond)
	def, err := encodeDef(d)
	if err != nil {
		return Destination{}, err
	}
	_, err = m.db.ExecContext(ctx, m.q(`INSERT INTO export_destinations (id, org, name, def, created_at) VALUES (?, ?, ?, ?, ?)`),
		d.ID, d.Org, d.Name, def, d.Created.UnixMilli())
	if err != nil {
		if s := strings.ToLower(err.Error()); strings.Contains(s, "unique") || strings.Contains(s, "duplicate") {
			return Destination{}, fmt.Errorf("%w: an export named %q exists in this organization; choose another name", ErrConflict, d.Name)
		}
		return Destination{}, fmt.Errorf("export: store %s: %w", d.Name, err)
	}
	m.poke()
	return d, nil
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) get(ctx context.Context, org, id string) (Destination, error) {
	var def string
	err := m.db.QueryRowContext(ctx, m.q(`SELECT def FROM export_destinations WHERE org = ? AND id = ?`), org, id).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return Destination{}, fmt.Errorf("%w: export %s", ErrNotFound, id)
	}
	if err != nil {
		return Destination{}, fmt.Errorf("export: get %s: %w", id, err)
	}
	var d Destination
	if err := json.Unmarshal([]byte(def), &d); err != nil {
		return Destination{}, fmt.Errorf("export: decode %s: %w", id, err)
	}
	return d, nil
}

// Get returns a destination with its delivery state.
func (m *Manager) Get(ctx context.Context, org, id string) (Status, error) {
	d, err := m.get(ctx, org, id)
	if err != nil {
		return Status{}, err
	}
	return m.status(ctx, d), nil
}

func (m *Manager) status(ctx context.Context, d Destination) Status {
	st := Status{Destination: d}
	if n, err := m.cfg.Bus.Pending(ctx, consumerName(d.ID)); err == nil {
		st.Lag = n
		m.lag.WithLabelValues(d.Org, d.Name).Set(float64(n))
	}
	m.mu.Lock()
	r := m.running[d.ID]
	m.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		st.Delivered, st.LastError = r.delivered, r.lastErr
		if !r.lastAt.IsZero() {
			t := r.lastAt
			st.LastAt = &t
		}
		r.mu.Unlock()
	}
	return st
}

// List returns the organization's destinations, by name.
func (m *Manager) List(ctx context.Context, org string) ([]Status, error) {
	ds, err := m.load(ctx, org)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(ds))
	for _, d := range ds {
		out = append(out, m.status(ctx, d))
	}
	return out, nil
}

// load reads the destinations of org, or of every organization when org
// is empty.
func (m *Manager) load(ctx context.Context, org string) ([]Destination, error) {
	query, args := `SELECT def FROM export_destinations ORDER BY org, name`, []any{}
	if org != "" {
		query, args = `SELECT def FROM export_destinations WHERE org = ? ORDER BY name`, []any{org}
	}
	rows, err := m.db.QueryContext(ctx, m.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("export: list: %w", err)
	}
	defer rows.Close()
	var out []Destination
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			return nil, fmt.Errorf("export: list: %w", err)
		}
		var d Destination
		if err := json.Unmarshal([]byte(def), &d); err != nil {
			m.log.Warn("export: skipping an unreadable destination", "err", err)
			continue
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Delete removes a destination, stops it and deletes its bus consumer.
func (m *Manager) Delete(ctx context.Context, org, id string) error {
	res, err := m.db.ExecContext(ctx, m.q(`DELETE FROM export_destinations WHERE org = ? AND id = ?`), org, id)
	if err != nil {
		return fmt.Errorf("export: delete %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: export %s", ErrNotFound, id)
	}
	m.mu.Lock()
	r := m.running[id]
	delete(m.running, id)
	m.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
		m.lag.DeleteLabelValues(r.d.Org, r.d.Name)
	}
	if err := m.cfg.Bus.Delete(ctx, consumerName(id)); err != nil {
		m.log.Warn("export: delete the bus consumer", "export", id, "err", err)
	}
	return nil
}

// Run reconciles the running destinations with the stored ones until ctx
// ends, then stops them all.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.PollEvery)
	defer t.Stop()
	defer m.stopAll()
	for {
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("export: reconcile destinations", "err", err)
		}
		m.refreshLag(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.wake:
		}
	}
}

func (m *Manager) refreshLag(ctx context.Context) {
	m.mu.Lock()
	rs := make([]*runner, 0, len(m.running))
	for _, r := range m.running {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	for _, r := range rs {
		if n, err := m.cfg.Bus.Pending(ctx, consumerName(r.d.ID)); err == nil {
			m.lag.WithLabelValues(r.d.Org, r.d.Name).Set(float64(n))
		}
	}
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	rs := m.running
	m.running = map[string]*runner{}
	m.mu.Unlock()
	for _, r := range rs {
		r.cancel()
		<-r.done
	}
}

func (m *Manager) reconcile(ctx context.Context) error {
	ds, err := m.load(ctx, "")
	if err != nil {
		return err
	}
	want := map[string]Destination{}
	for _, d := range ds {
		if !d.Disabled {
			want[d.ID] = d
		}
	}
	m.mu.Lock()
	var stop []*runner
	for id, r := range m.running {
		if _, ok := want[id]; !ok {
			stop = append(stop, r)
			delete(m.running, id)
		}
	}
	var start []Destination
	for id, d := range want {
		if _, ok := m.running[id]; !ok {
			start = append(start, d)
		}
	}
	m.mu.Unlock()
	for _, r := range stop {
		r.cancel()
		<-r.done
	}
	for _, d := range start {
		if err := m.start(ctx, d); err != nil {
			m.log.Warn("export: cannot start destination", "org", d.Org, "export", d.Name, "err", err)
		}
	}
	return nil
}

func (m *Manager) sinkFor(d Destination) (sink, error) {
	switch d.Type {
	case TypeWebhook:
		return &webhookSink{d: d, client: m.client}, nil
	case TypeRemoteWrite:
		return &remoteWriteSink{d: d, client: m.client}, nil
	case TypeNATS:
		if m.cfg.NATS == nil {
			return nil, errors.New("no NATS connection for NATS exports")
		}
		// Checked again before publishing anything: a destination stored
		// by other means must not reach past its organization either.
		if err := m.checkTarget(d); err != nil {
			return nil, err
		}
		s := &natsSink{nc: m.cfg.NATS, subject: m.Subject(d.Org, d.Subject)}
		if d.JetStream {
			js, err := jetstream.New(m.cfg.NATS)
			if err != nil {
				return nil, err
			}
			s.js = js
		}
		return s, nil
	case TypeFile:
		if m.cfg.Dir == "" {
			return nil, errors.New("no directory for file exports")
		}
		return newFileSink(filepath.Join(m.cfg.Dir, d.Org, d.Name), d)
	}
	return nil, fmt.Errorf("%w: export type %q", ErrInvalid, d.Type)
}

// Subject is the NATS subject a destination of org with subject s
// publishes on: s in the organization's subject space.
func (m *Manager) Subject(org, s string) string {
	return m.subjects.OrgSpace(org) + "." + s
}

// checkTarget refuses what a destination would reach past its
// organization: a NATS subject outside the organization's subject space,
// an http(s) address that is an IP address the egress policy refuses (a
// host name is checked on every connection).
func (m *Manager) checkTarget(d Destination) error {
	switch d.Type {
	case TypeNATS:
		return m.subjects.CheckOrgSubject(d.Org, m.Subject(d.Org, d.Subject))
	case TypeWebhook, TypeRemoteWrite:
		if err := m.cfg.Egress.CheckURL(d.URL); err != nil {
			return fmt.Errorf("url %q: %w; use a public address, or ask the hub's operator to allow this one", d.URL, err)
		}
	}
	return nil
}

// FileDir is where a file destination of org named name writes.
func (m *Manager) FileDir(org, name string) string { return filepath.Join(m.cfg.Dir, org, name) }

func (m *Manager) start(ctx context.Context, d Destination) error {
	sk, err := m.sinkFor(d)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &runner{d: d, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.running[d.ID] = r
	m.mu.Unlock()
	delivered := m.delivered.WithLabelValues(d.Org, d.Name)
	failures := m.failures.WithLabelValues(d.Org, d.Name)
	go func() {
		defer close(r.done)
		defer sk.Close()
		recs := make([]Record, 0, 256)
		err := m.cfg.Bus.Consume(rctx, consumerName(d.ID), func(ctx context.Context, batch []*bus.Telemetry) error {
			recs = recs[:0]
			for _, msg := range batch {
				if msg.Org != d.Org {
					continue
				}
				var info DeviceInfo
				if d.Enrich || len(d.Filter.Tags) > 0 || (msg.Site == "" && d.Filter.Site != "") || (msg.Template == "" && d.Filter.Template != "") {
					info = m.deviceInfo(ctx, msg.Org, msg.Device)
				}
				if !d.Filter.matches(msg, info) {
					continue
				}
				if rec, ok := d.Filter.record(msg, info, d.Enrich); ok {
					recs = append(recs, rec)
				}
			}
			if len(recs) == 0 {
				return nil
			}
			if err := sk.Write(ctx, recs); err != nil {
				failures.Inc()
				r.mu.Lock()
				r.lastErr = err.Error()
				r.mu.Unlock()
				return err
			}
			delivered.Add(float64(len(recs)))
			r.mu.Lock()
			r.delivered += int64(len(recs))
			r.lastErr, r.lastAt = "", time.Now().UTC()
			r.mu.Unlock()
			return nil
		})
		if err != nil && rctx.Err() == nil {
			m.log.Warn("export: consumer stopped", "org", d.Org, "export", d.Name, "err", err)
			// Let the next reconcile start it again.
			m.mu.Lock()
			if m.running[d.ID] == r {
				delete(m.running, d.ID)
			}
			m.mu.Unlock()
		}
	}()
	return nil
}

func (m *Manager) deviceInfo(ctx context.Context, org, device string) DeviceInfo {
	if m.cfg.Directory == nil {
		return DeviceInfo{}
	}
	k := [2]string{org, device}
	m.infoMu.Lock()
	c, ok := m.info[k]
	m.infoMu.Unlock()
	if ok && time.Since(c.at) < m.cfg.InfoTTL {
		return c.info
	}
	info, err := m.cfg.Directory.DeviceInfo(ctx, org, device)
	if err != nil && ok {
		return c.info // keep the stale info over none
	}
	m.infoMu.Lock()
	if len(m.info) > 100000 {
		clear(m.info) // bounded: a fleet this large re-reads after a flush
	}
	m.info[k] = cachedInfo{info: info, at: time.Now()}
	m.infoMu.Unlock()
	return info
}
