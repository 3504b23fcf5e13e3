package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
)

// Config builds an Engine.
type Config struct {
	Store  *Store  // rule definitions and state snapshots (required)
	Alerts Alerter // where firings go, normally *alerts.Service (required)

	Directory DeviceDirectory // optional: tags, properties, time zone, site
	Anomaly   AnomalyScorer   // optional: enables anomaly(...)
	// Before, when set, runs for each message just before it is
	// evaluated: the hub scores anomalies there, so anomaly() reads the
	// score of the message being evaluated rather than whatever another
	// consumer last stored.
	Before  func(ctx context.Context, m *bus.Telemetry)
	History History // optional: rebuilds windows after a restart
	Logger  *slog.Logger
	Now     func() time.Time // wall clock; for tests

	SweepEvery       time.Duration // absence timer; default 10s
	SnapshotEvery    time.Duration // window state persistence; default 1m
	ReloadEvery      time.Duration // rule change polling; default 5s
	InfoTTL          time.Duration // device info cache; default 1m
	WindowBuckets    int           // buckets per sliding window; default 30
	AlertConcurrency int           // parallel alert calls (they share transactions); default 64
}

// Engine evaluates the rules of every organization against telemetry and
// raises and clears alerts. Handle is a bus.Handler; Run drives the timers.
type Engine struct {
	cfg    Config
	store  *Store
	alerts Alerter
	log    *slog.Logger
	now    func() time.Time
	opts   CompileOptions

	mu      sync.Mutex // guards everything below
	ev      *evaluator
	pending []intent // alert calls decided but not yet done, in order
	changes int64
	gone    [][2]string

	connMu sync.Mutex
	conns  []connEvent

	pendingN atomic.Int64
	rulesN   atomic.Int64
}

type connEvent struct {
	org, device string
	connected   bool
	at          int64
}

// Stats are the engine's counters since start.
type Stats struct {
	Messages    int64 `json:"messages"`
	Duplicates  int64 `json:"duplicates"`  // skipped as already evaluated (redelivery, old data)
	Evaluations int64 `json:"evaluations"` // conditions evaluated to true or false
	Skipped     int64 `json:"skipped"`     // not evaluable yet (unknown field, empty window)
	Errors      int64 `json:"errors"`      // conditions that failed at run time
	Fired       int64 `json:"fired"`
	Cleared     int64 `json:"cleared"`
	Pending     int64 `json:"pending"` // alert calls waiting for a retry
	Rules       int64 `json:"rules"`
}

// NewEngine loads the enabled rules and the last state snapshot.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Alerts == nil {
		return nil, errors.New("rules: the engine needs a Store and an Alerter")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 10 * time.Second
	}
	if cfg.SnapshotEvery <= 0 {
		cfg.SnapshotEvery = time.Minute
	}
	if cfg.ReloadEvery <= 0 {
		cfg.ReloadEvery = 5 * time.Second
	}
	if cfg.InfoTTL <= 0 {
		cfg.InfoTTL = time.Minute
	}
	if cfg.AlertConcurrency <= 0 {
		cfg.AlertConcurrency = 64
	}
	e := &Engine{cfg: cfg, store: cfg.Store, alerts: cfg.Alerts, log: cfg.Logger, now: cfg.Now,
		opts: CompileOptions{Anomaly: cfg.Anomaly != nil}}
	e.ev = newEvaluator(cfg.WindowBuckets, cfg.Logger)
	e.ev.dir, e.ev.anomaly, e.ev.history = cfg.Directory, cfg.Anomaly, cfg.History
	e.ev.infoTTL = cfg.InfoTTL.Milliseconds()
	if err := e.store.loadStates(ctx, func(org, device string, data []byte) error {
		var s devSnap
		if err := json.Unmarshal(data, &s); err != nil {
			e.log.Warn("rules: ignoring an unreadable state snapshot", "org", org, "device", device, "err", err)
			return nil
		}
		e.ev.org(org).devices[device] = restoreDevice(device, s)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload reads the enabled rules from the store. Rules that no longer
// compile (say, anomaly detection was switched off) are logged and skipped.
func (e *Engine) Reload(ctx context.Context) error {
	changes, err := e.store.Changes(ctx)
	if err != nil {
		return err
	}
	rs, err := e.store.Enabled(ctx)
	if err != nil {
		return err
	}
	var cs []*compiled
	for _, r := range rs {
		c, err := compileRule(r, e.opts)
		if err != nil {
			e.log.Error("rules: rule does not compile; it is not evaluated", "org", r.Org, "rule", r.ID, "name", r.Name, "err", err)
			continue
		}
		cs = append(cs, c)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev.setRules(cs)
	e.changes = changes
	e.rulesN.Store(int64(len(cs)))
	return nil
}

func (e *Engine) reloadIfChanged(ctx context.Context) error {
	changes, err := e.store.Changes(ctx)
	if err != nil {
		return err
	}
	e.mu.Lock()
	same := changes == e.changes
	e.mu.Unlock()
	if same {
		return nil
	}
	return e.Reload(ctx)
}

// Handle evaluates a batch of telemetry; it is a bus.Handler. It returns
// nil only when every alert the batch raised or cleared is stored, so the
// bus redelivers otherwise; messages already evaluated are recognised by
// time and skipped, so redelivery does not count anything twice.
func (e *Engine) Handle(ctx context.Context, batch []*bus.Telemetry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.flush(ctx); err != nil {
		return err
	}
	wall := e.now().UnixMilli()
	e.applyConns(ctx, wall)
	for i, m := range batch {
		if m != nil {
			if e.cfg.Before != nil {
				e.cfg.Before(ctx, m)
			}
			e.ev.process(ctx, m, wall, &e.pending, true)
		}
		// An alert decided early in a large batch is stored now rather than
		// after the whole batch: it bounds publish-to-alert latency.
		if (i+1)%flushEvery == 0 && len(e.pending) > 0 {
			if err := e.flush(ctx); err != nil {
				return err
			}
		}
	}
	return e.flush(ctx)
}

// flushEvery is how many messages Handle evaluates before storing the
// alert changes they decided.
const flushEvery = 128

var _ bus.Handler = (*Engine)(nil).Handle

// Sweep evaluates the absence rules (nodata, disconnected) now.
func (e *Engine) Sweep(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.flush(ctx); err != nil {
		return err
	}
	wall := e.now().UnixMilli()
	e.applyConns(ctx, wall)
	e.ev.sweep(wall, &e.pending)
	return e.flush(ctx)
}

// ConnectionChanged tells the engine that a device connected or
// disconnected; the gateway calls it. It does not block on evaluation.
func (e *Engine) ConnectionChanged(org, device string, connected bool, at time.Time) {
	e.connMu.Lock()
	e.conns = append(e.conns, connEvent{org: org, device: device, connected: connected, at: at.UnixMilli()})
	e.connMu.Unlock()
}

func (e *Engine) applyConns(ctx context.Context, wall int64) {
	e.connMu.Lock()
	conns := e.conns
	e.conns = nil
	e.connMu.Unlock()
	for _, c := range conns {
		o := e.ev.orgs[c.org]
		if o == nil || len(o.rules) == 0 {
			continue
		}
		d := o.device(c.device, wall)
		if d.connKnown && c.at < d.connAt {
			continue // out of order
		}
		d.connKnown, d.connected, d.connAt, d.dirty = true, c.connected, c.at, true
		e.ev.refreshInfo(ctx, c.org, d, wall)
	}
}

// ForgetDevice drops a device's state (it was deleted or moved to another
// organization) and makes the engine look its info up again.
func (e *Engine) ForgetDevice(org, device string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if o := e.ev.orgs[org]; o != nil {
		delete(o.devices, device)
	}
	e.gone = append(e.gone, [2]string{org, device})
}

// flush performs the pending alert calls: in parallel across (rule,
// device) keys, in order within a key. Calls that fail stay pending, with
// every later call of their key, and the first error is returned.
func (e *Engine) flush(ctx context.Context) error {
	if len(e.pending) == 0 {
		return nil
	}
	groups := map[string][]int{}
	var order []string
	for i := range e.pending {
		k := e.pending[i].key()
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	done := make([]bool, len(e.pending))
	var firstErr error
	var errMu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.AlertConcurrency)
	for _, k := range order {
		idx := groups[k]
		g.Go(func() error {
			for _, i := range idx {
				if err := e.exec(gctx, &e.pending[i]); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					return nil
				}
				done[i] = true
			}
			return nil
		})
	}
	_ = g.Wait()
	rest := e.pending[:0]
	for i, in := range e.pending {
		if !done[i] {
			rest = append(rest, in)
		}
	}
	clear(e.pending[len(rest):])
	e.pending = rest
	e.pendingN.Store(int64(len(rest)))
	if firstErr != nil {
		return fmt.Errorf("rules: %d alert change(s) not stored yet, will retry: %w", len(rest), firstErr)
	}
	return nil
}

func (e *Engine) exec(ctx context.Context, in *intent) error {
	switch in.kind {
	case intentFire:
		_, _, err := e.alerts.Fire(ctx, alerts.FireRequest{Org: in.org, Rule: in.c.rule.ID, RuleName: in.c.rule.Name, Device: in.device,
			Severity: in.c.rule.Severity, Message: in.message, Values: in.values, At: in.at})
		if err != nil {
			return fmt.Errorf("fire rule %q on %s: %w", in.c.rule.Name, in.device, err)
		}
		e.ev.st.fired.Add(1)
	case intentClear:
		if _, _, err := e.alerts.Clear(ctx, in.org, in.c.rule.ID, in.device, in.at); err != nil {
			return fmt.Errorf("clear rule %q on %s: %w", in.c.rule.Name, in.device, err)
		}
		e.ev.st.cleared.Add(1)
	}
	return nil
}

// Snapshot persists the state of every device that changed since the last
// snapshot: windows, pending "for" timers, firing flags, last values.
func (e *Engine) Snapshot(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	// A firing not yet stored must happen again after a restart: record the
	// state from before the first pending call of each key.
	before := map[string]bool{}
	for _, in := range e.pending {
		k := in.key()
		if _, ok := before[k]; !ok {
			before[k] = in.kind == intentClear
		}
	}
	var rows []stateRow
	var written []*deviceState
	for org, o := range e.ev.orgs {
		for id, d := range o.devices {
			if !d.dirty {
				continue
			}
			s := d.snap()
			for rid, rs := range s.Rules {
				if firing, ok := before[org+"\x00"+rid+"\x00"+id]; ok {
					rs.Firing, rs.Pending = firing, false
					s.Rules[rid] = rs
				}
			}
			data, err := json.Marshal(s)
			if err != nil {
				e.log.Warn("rules: cannot encode device state", "org", org, "device", id, "err", err)
				continue
			}
			rows = append(rows, stateRow{org: org, device: id, data: data})
			written = append(written, d)
		}
	}
	if len(rows) == 0 && len(e.gone) == 0 {
		return nil
	}
	if err := e.store.saveStates(ctx, rows, e.gone); err != nil {
		return err
	}
	for _, d := range written {
		d.dirty = false
	}
	e.gone = nil
	return nil
}

// Run drives the absence sweep, the snapshots and rule reloading until ctx
// ends. Call Close afterwards for a final snapshot.
func (e *Engine) Run(ctx context.Context) error {
	sweep := time.NewTicker(e.cfg.SweepEvery)
	defer sweep.Stop()
	snap := time.NewTicker(e.cfg.SnapshotEvery)
	defer snap.Stop()
	reload := time.NewTicker(e.cfg.ReloadEvery)
	defer reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			if err := e.Sweep(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("rules: absence sweep", "err", err)
			}
		case <-snap.C:
			if err := e.Snapshot(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("rules: state snapshot", "err", err)
			}
		case <-reload.C:
			if err := e.reloadIfChanged(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("rules: reload", "err", err)
			}
		}
	}
}

// Close tries the pending alert calls once more and saves a snapshot.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	ferr := e.flush(ctx)
	e.mu.Unlock()
	if err := e.Snapshot(ctx); err != nil {
		return err
	}
	if ferr != nil {
		return fmt.Errorf("rules: closing with alert changes not stored (they are redone after restart): %w", ferr)
	}
	return nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	st := e.ev.st
	return Stats{Messages: st.messages.Load(), Duplicates: st.duplicates.Load(), Evaluations: st.evaluations.Load(),
		Skipped: st.skipped.Load(), Errors: st.errors.Load(), Fired: st.fired.Load(), Cleared: st.cleared.Load(),
		Pending: e.pendingN.Load(), Rules: e.rulesN.Load()}
}
