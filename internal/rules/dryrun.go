package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shopfloor/shopfloor/internal/bus"
)

// DryRunOptions say what history a dry run replays.
type DryRunOptions struct {
	History   History // required
	Directory DeviceDirectory
	Anomaly   AnomalyScorer
	// Before runs for each replayed message just before it is evaluated,
	// as Config.Before does.
	Before   func(ctx context.Context, m *bus.Telemetry)
	From, To time.Time
	// MaxTimes bounds the firing times returned; default 1000.
	MaxTimes int
	// SweepEvery is the simulated absence timer; default 1m.
	SweepEvery    time.Duration
	WindowBuckets int
}

// DryRunResult is how often a rule would have fired over stored history.
type DryRunResult struct {
	From        time.Time      `json:"from"`
	To          time.Time      `json:"to"`
	Devices     int            `json:"devices"`
	Evaluations int64          `json:"evaluations"`
	Firings     int            `json:"firings"`
	Clears      int            `json:"clears"`
	Times       []time.Time    `json:"times"`               // firing times, oldest first per device
	PerDevice   map[string]int `json:"perDevice,omitempty"` // firings per device
	Truncated   bool           `json:"truncated,omitempty"` // Times was cut at MaxTimes
}

// DryRun replays the history of the devices in r's scope through r, with
// the engine's own evaluation, and counts firings without raising alerts.
// Windows are warmed with the history just before From. disconnected(...)
// is never true in a dry run: connection history is not stored.
func DryRun(ctx context.Context, r Rule, opts DryRunOptions) (DryRunResult, error) {
	if opts.History == nil {
		return DryRunResult{}, errors.New("rules: a dry run needs stored history")
	}
	if !opts.To.After(opts.From) {
		return DryRunResult{}, fmt.Errorf("%w: the dry run's end must be after its start", ErrInvalid)
	}
	if r.Org == "" {
		return DryRunResult{}, fmt.Errorf("%w: a rule belongs to an organization", ErrInvalid)
	}
	if err := r.validate(); err != nil {
		return DryRunResult{}, err
	}
	if r.ID == "" {
		r.ID = "dry-run"
	}
	c, err := compileRule(r, CompileOptions{Anomaly: opts.Anomaly != nil})
	if err != nil {
		return DryRunResult{}, err
	}
	if opts.MaxTimes <= 0 {
		opts.MaxTimes = 1000
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = time.Minute
	}
	ev := newEvaluator(opts.WindowBuckets, slog.New(slog.DiscardHandler))
	ev.dir, ev.anomaly, ev.infoTTL = opts.Directory, opts.Anomaly, 1<<62
	ev.setRules([]*compiled{c})
	o := ev.orgs[r.Org]

	warm := c.prog.maxWindow
	devices := []string{r.Scope.Device}
	if r.Scope.Device == "" {
		devices, err = opts.History.Devices(ctx, r.Org, opts.From.Add(-warm), opts.To)
		if err != nil {
			return DryRunResult{}, fmt.Errorf("rules: dry run: list devices: %w", err)
		}
	}
	res := DryRunResult{From: opts.From.UTC(), To: opts.To.UTC(), Times: []time.Time{}, PerDevice: map[string]int{}}
	from, to := opts.From.UnixMilli(), opts.To.UnixMilli()
	step := opts.SweepEvery.Milliseconds()
	var out []intent
	count := func(dev string) {
		for _, in := range out {
			switch in.kind {
			case intentFire:
				res.Firings++
				res.PerDevice[dev]++
				if len(res.Times) < opts.MaxTimes {
					res.Times = append(res.Times, in.at)
				} else {
					res.Truncated = true
				}
			case intentClear:
				res.Clears++
			}
		}
		out = out[:0]
	}
	for _, dev := range devices {
		if err := ctx.Err(); err != nil {
			return DryRunResult{}, err
		}
		d := o.device(dev, from)
		ev.refreshInfo(ctx, r.Org, d, from)
		d.filled = true
		if ev.dir != nil && !c.inScope(d) {
			delete(o.devices, dev)
			continue
		}
		res.Devices++
		nextSweep := from + step
		sweepUntil := func(t int64) {
			if !c.prog.Absence() {
				return
			}
			for ; nextSweep <= t && nextSweep < to; nextSweep += step {
				ev.sweep(nextSweep, &out)
			}
		}
		before := ev.st.evaluations.Load()
		err := opts.History.Scan(ctx, r.Org, dev, nil, opts.From.Add(-warm), opts.To, func(m *bus.Telemetry) error {
			if m.Org == "" {
				m.Org = r.Org
			}
			if m.Device == "" {
				m.Device = dev
			}
			if m.Received == 0 {
				m.Received = m.TS
			}
			if opts.Before != nil {
				opts.Before(ctx, m)
			}
			if m.TS < from {
				ev.process(ctx, m, m.Received, &out, false)
				return nil
			}
			sweepUntil(m.TS)
			ev.process(ctx, m, m.Received, &out, true)
			count(dev)
			return nil
		})
		if err != nil {
			return DryRunResult{}, fmt.Errorf("rules: dry run: read history of %s: %w", dev, err)
		}
		sweepUntil(to - 1)
		count(dev)
		res.Evaluations += ev.st.evaluations.Load() - before
		delete(o.devices, dev)
	}
	return res, nil
}
