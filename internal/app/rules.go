package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/rules"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

// rulesConsumer is the durable bus consumer that feeds the rules engine.
const rulesConsumer = "rules"

// ruleSet is the hub's rules, alerts and actions, wired together.
type ruleSet struct {
	svc      *rules.Service
	store    *rules.Store
	alerts   *alerts.Service
	dispatch *actions.Dispatcher
	engine   *rules.Engine
	history  tsdbHistory
	dir      *deviceDirectory
	log      *slog.Logger
	anomaly  bool // anomaly detection is on: anomaly() compiles
}

// driverName is the database/sql driver the registry store was opened with.
func (h *Hub) driverName() string {
	if h.cfg.Postgres != "" {
		return "pgx"
	}
	return "sqlite"
}

// openRules builds the rules store, the alerts service, the actions
// dispatcher and the engine on the registry database. Call it after the bus
// and the tsdb are open and before the gateway, whose connection events it
// takes.
func (h *Hub) openRules(ctx context.Context) error {
	db := h.store.DB()
	driver := h.driverName()
	rs := &ruleSet{history: tsdbHistory{h.TSDB}, dir: &deviceDirectory{reg: h.Registry}, log: h.log, anomaly: h.anomaly != nil}
	var err error
	if rs.store, err = rules.NewStore(ctx, rules.StoreConfig{DB: db, Driver: driver, Compile: rules.CompileOptions{Anomaly: h.anomaly != nil},
		Subjects: h.Bus.Subjects(), Egress: h.egress}); err != nil {
		return fmt.Errorf("open the rules store: %w", err)
	}
	// The dispatcher and the alerts service refer to each other (outcomes
	// are recorded on alerts, alert events enqueue actions): the publisher
	// list is filled once both exist.
	pubs := &alertPublishers{}
	if rs.alerts, err = alerts.New(ctx, alerts.Config{DB: db, Driver: driver, Publisher: pubs, Logger: h.log}); err != nil {
		return fmt.Errorf("open the alerts store: %w", err)
	}
	if rs.dispatch, err = actions.New(ctx, actions.Config{
		DB: db, Driver: driver, Source: rs.store, Recorder: rs.alerts,
		Bus: h.Bus.Notifier(), Subjects: h.Bus.Subjects(), Egress: h.egress, Logger: h.log,
		Devices: h.TwinDevices(),
	}); err != nil {
		return fmt.Errorf("open the actions outbox: %w", err)
	}
	pubs.ps = alerts.Publishers{rs.dispatch, alerts.NewLiveFeed(h.Bus.Notifier(), h.Bus.Subjects().Alerts)}
	if rs.engine, err = rules.NewEngine(ctx, rules.Config{
		Store: rs.store, Alerts: rs.alerts, Directory: rs.dir, History: rs.history, Logger: h.log,
		Anomaly: h.anomalyScorer(), Before: h.anomalyBefore(),
	}); err != nil {
		return fmt.Errorf("start the rules engine: %w", err)
	}
	scoreField := ""
	if rs.anomaly {
		scoreField = ScoreField // anomaly() in a dry run reads the stored score
	}
	if rs.svc, err = rules.NewService(rules.ServiceConfig{Store: rs.store, Engine: rs.engine, History: rs.history,
		Directory: rs.dir, ScoreField: scoreField, Logger: h.log}); err != nil {
		return fmt.Errorf("start the rules service: %w", err)
	}
	h.rules = rs
	return h.registerRuleMetrics()
}

// connectionChanged is the gateway's OnConnection hook.
func (h *Hub) connectionChanged(org, device string, connected bool, at time.Time) {
	if h.rules != nil {
		h.rules.engine.ConnectionChanged(org, device, connected, at)
	}
}

// runRules starts the rules consumer, the engine's timers and the
// dispatcher in g; the engine saves its state when ctx ends.
func (h *Hub) runRules(ctx context.Context, g *errgroup.Group) {
	rs := h.rules
	if rs == nil {
		return
	}
	handle := rs.engine.Handle
	if a := h.anomaly; a != nil {
		// The engine's Before hook has scored each message; store the
		// scores once the batch is evaluated.
		handle = func(ctx context.Context, batch []*bus.Telemetry) error {
			err := rs.engine.Handle(ctx, batch)
			return errors.Join(err, a.Flush(ctx))
		}
	}
	g.Go(func() error {
		err := h.Bus.Consume(ctx, rulesConsumer, bus.ConsumeOptions{FromNow: true}, handle)
		if err != nil {
			return fmt.Errorf("rules consumer: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		err := rs.engine.Run(ctx)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := rs.engine.Close(cctx); cerr != nil {
			rs.log.Warn("rules engine: final snapshot", "err", cerr)
		}
		return err
	})
	g.Go(func() error { return rs.dispatch.Run(ctx) })
}

func (h *Hub) registerRuleMetrics() error {
	eng := h.rules.engine
	stat := func(name, help string, counter bool, f func(rules.Stats) int64) prometheus.Collector {
		fn := func() float64 { return float64(f(eng.Stats())) }
		if counter {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn)
		}
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	for _, c := range []prometheus.Collector{
		stat("shopfloor_rules_messages_total", "Telemetry messages the rules engine processed.", true, func(s rules.Stats) int64 { return s.Messages }),
		stat("shopfloor_rules_evaluations_total", "Rule conditions evaluated.", true, func(s rules.Stats) int64 { return s.Evaluations }),
		stat("shopfloor_rules_errors_total", "Rule conditions that failed at run time.", true, func(s rules.Stats) int64 { return s.Errors }),
		stat("shopfloor_rules_fired_total", "Rule firings.", true, func(s rules.Stats) int64 { return s.Fired }),
		stat("shopfloor_rules_cleared_total", "Rule clears.", true, func(s rules.Stats) int64 { return s.Cleared }),
		stat("shopfloor_rules_pending_alert_calls", "Alert changes waiting for a retry.", false, func(s rules.Stats) int64 { return s.Pending }),
		stat("shopfloor_rules_active", "Enabled rules loaded by the engine.", false, func(s rules.Stats) int64 { return s.Rules }),
	} {
		if err := h.metrics.Register(c); err != nil {
			return fmt.Errorf("register rules metrics: %w", err)
		}
	}
	return nil
}

// alertPublishers forwards to a publisher list set after construction.
type alertPublishers struct{ ps alerts.Publishers }

func (p *alertPublishers) PublishAlert(ctx context.Context, ev alerts.AlertEvent) error {
	return p.ps.PublishAlert(ctx, ev)
}

// deviceDirectory gives the rules engine a device's site, template and tags
// from the registry. Props is the seam for reported properties from the
// twin; nil leaves props.* unknown.
type deviceDirectory struct {
	reg   *registry.Service
	Props func(ctx context.Context, org, device string) (map[string]any, error)
}

func (d *deviceDirectory) DeviceInfo(ctx context.Context, org, device string) (rules.DeviceInfo, error) {
	dev, err := d.reg.GetDevice(ctx, org, device)
	if errors.Is(err, registry.ErrNotFound) {
		return rules.DeviceInfo{}, fmt.Errorf("device %s: %w", device, rules.ErrNotFound)
	}
	if err != nil {
		return rules.DeviceInfo{}, err
	}
	info := rules.DeviceInfo{Site: dev.Site, Template: dev.Template, Tags: dev.Tags}
	if d.Props != nil {
		if info.Props, err = d.Props(ctx, org, device); err != nil {
			return rules.DeviceInfo{}, err
		}
	}
	return info, nil
}

// tsdbHistory reads stored telemetry for dry runs and for rebuilding
// windows after a restart.
type tsdbHistory struct{ db *tsdb.DB }

func (t tsdbHistory) Devices(ctx context.Context, org string, from, to time.Time) ([]string, error) {
	q, err := t.db.Queryable(org).Querier(from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer q.Close()
	vals, _, err := q.LabelValues(ctx, tsdb.LabelDevice, nil)
	return vals, err
}

// Scan merges the device's numeric series (and the string fields asked for
// by name) into one record per timestamp.
func (t tsdbHistory) Scan(ctx context.Context, org, device string, fields []string, from, to time.Time, fn func(*bus.Telemetry) error) error {
	// Range includes its end; History's end is exclusive.
	end := to.Add(-time.Millisecond)
	if end.Before(from) {
		return nil
	}
	series, err := t.db.Range(ctx, org, device, fields, from, end, 0, "")
	if err != nil {
		return err
	}
	byTS := map[int64]*bus.Telemetry{}
	rec := func(ts int64) *bus.Telemetry {
		m := byTS[ts]
		if m == nil {
			m = &bus.Telemetry{Org: org, Device: device, TS: ts, Received: ts}
			byTS[ts] = m
		}
		return m
	}
	numeric := map[string]bool{}
	for _, s := range series {
		if len(s.Points) > 0 {
			numeric[s.Field] = true
		}
		for _, p := range s.Points {
			m := rec(p.T)
			if m.Num == nil {
				m.Num = map[string]float64{}
			}
			m.Num[s.Field] = p.V
		}
	}
	for _, f := range fields {
		if numeric[f] {
			continue
		}
		evs, err := t.db.StringEvents(ctx, org, device, f, from, end)
		if err != nil {
			continue // not a string field either
		}
		for _, e := range evs {
			m := rec(e.T)
			if m.Str == nil {
				m.Str = map[string]string{}
			}
			m.Str[f] = e.Value
		}
	}
	keys := make([]int64, 0, len(byTS))
	for k := range byTS {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(byTS[k]); err != nil {
			return err
		}
	}
	return nil
}
