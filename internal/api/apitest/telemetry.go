package apitest

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/api"
)

// Telemetry is an in-memory api.Telemetry: samples per organization, device
// and field, aggregated per step on read.
type Telemetry struct {
	mu      sync.Mutex
	samples map[string]map[string][]sample // org/device -> field -> samples by time
	// LastRange is the arguments of the last Range call.
	LastRange RangeCall
}

// RangeCall records what the API asked the store for.
type RangeCall struct {
	Org, Device string
	Fields      []string
	From, To    time.Time
	Step        time.Duration
	Agg         string
}

type sample struct {
	t int64
	v any
}

// NewTelemetry returns an empty store.
func NewTelemetry() *Telemetry {
	return &Telemetry{samples: map[string]map[string][]sample{}}
}

// Add stores one sample; v is a float64, string or bool.
func (t *Telemetry) Add(org, device, field string, at time.Time, v any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := key(org, device)
	if t.samples[k] == nil {
		t.samples[k] = map[string][]sample{}
	}
	s := append(t.samples[k][field], sample{t: at.UnixMilli(), v: v})
	sort.SliceStable(s, func(i, j int) bool { return s[i].t < s[j].t })
	t.samples[k][field] = s
}

// Range aggregates numeric samples in [from, to) into buckets of step that
// start at from; a point's time is its bucket's start. Fields without a
// numeric sample in the range are left out.
func (t *Telemetry) Range(ctx context.Context, org, device string, fields []string, from, to time.Time, step time.Duration, agg string) ([]api.FieldSeries, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.LastRange = RangeCall{Org: org, Device: device, Fields: append([]string(nil), fields...), From: from, To: to, Step: step, Agg: agg}
	byField := t.samples[key(org, device)]
	if len(fields) == 0 {
		for f := range byField {
			fields = append(fields, f)
		}
		sort.Strings(fields)
	}
	var out []api.FieldSeries
	for _, f := range fields {
		ss, ok := byField[f]
		if !ok {
			continue
		}
		fs := api.FieldSeries{Field: f, Points: []api.Point{}}
		var (
			bucket = int64(-1)
			vals   []float64
		)
		flush := func() {
			if len(vals) > 0 {
				fs.Points = append(fs.Points, api.Point{T: from.UnixMilli() + bucket*step.Milliseconds(), V: aggregate(agg, vals)})
			}
			vals = vals[:0]
		}
		for _, s := range ss {
			v, ok := s.v.(float64)
			if !ok || s.t < from.UnixMilli() || s.t >= to.UnixMilli() {
				continue
			}
			b := (s.t - from.UnixMilli()) / step.Milliseconds()
			if b != bucket {
				flush()
				bucket = b
			}
			vals = append(vals, v)
		}
		flush()
		if len(fs.Points) > 0 { // as a range query, no empty series
			out = append(out, fs)
		}
	}
	return out, nil
}

func aggregate(agg string, vals []float64) float64 {
	switch agg {
	case "min":
		m := math.Inf(1)
		for _, v := range vals {
			m = math.Min(m, v)
		}
		return m
	case "max":
		m := math.Inf(-1)
		for _, v := range vals {
			m = math.Max(m, v)
		}
		return m
	case "sum", "avg":
		var s float64
		for _, v := range vals {
			s += v
		}
		if agg == "avg" {
			return s / float64(len(vals))
		}
		return s
	case "count":
		return float64(len(vals))
	case "last":
		return vals[len(vals)-1]
	}
	return math.NaN()
}

// Latest returns each field's newest sample, fields in name order.
func (t *Telemetry) Latest(ctx context.Context, org, device string) ([]api.LatestValue, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	byField := t.samples[key(org, device)]
	var out []api.LatestValue
	for f, ss := range byField {
		last := ss[len(ss)-1]
		out = append(out, api.LatestValue{Field: f, T: last.t, Value: last.v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out, nil
}

// Presence is an in-memory api.Presence.
type Presence struct {
	mu        sync.Mutex
	connected map[string]bool
	dropped   []string
}

// NewPresence returns presence with no device connected.
func NewPresence() *Presence { return &Presence{connected: map[string]bool{}} }

// Connect marks a device connected.
func (p *Presence) Connect(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.connected[id] = true
}

func (p *Presence) Connected(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connected[id]
}

// Disconnect drops a connected device and reports whether it was connected.
func (p *Presence) Disconnect(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.connected[id]
	delete(p.connected, id)
	if was {
		p.dropped = append(p.dropped, id)
	}
	return was
}

// Dropped lists the devices Disconnect dropped, in order.
func (p *Presence) Dropped() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.dropped...)
}
