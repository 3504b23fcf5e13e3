package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Telemetry routes read a device's series; the service checks the device
// belongs to the organization before the store is asked.

const (
	defaultRange  = time.Hour
	targetPoints  = 250   // default step aims at about this many points
	maxPoints     = 11000 // per field, as Prometheus limits query_range
	defaultAgg    = "avg"
	rawAgg        = "raw" // no aggregation: every stored point
	telemetryHelp = "an RFC 3339 time (2026-03-02T08:30:00Z) or unix milliseconds"
)

var aggs = map[string]bool{"avg": true, "min": true, "max": true, "sum": true, "count": true, "last": true}

type telemetryBody struct {
	Device string        `json:"device"`
	From   int64         `json:"from"`
	To     int64         `json:"to"`
	Step   int64         `json:"step"`
	Agg    string        `json:"agg"`
	Series []FieldSeries `json:"series"`
}

type latestBody struct {
	Device string        `json:"device"`
	Values []LatestValue `json:"values"`
}

func (s *Server) telemetryRoutes() {
	idOnly := map[string]string{"id": "device id"}
	from := exampleTime.Add(-time.Hour)
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/telemetry", ID: "deviceTelemetry", Tag: "telemetry", Role: registry.RoleViewer,
		Summary: "A device's numeric fields over a time range, aggregated per step", PathParams: idOnly,
		Query: []param{
			{Name: "names", Description: "comma-separated fields (default: all)", Schema: schema{"type": "string"}, Example: "temperature,pressure"},
			{Name: "from", Description: "start: " + telemetryHelp + " (default: an hour before to)", Schema: schema{"type": "string"}},
			{Name: "to", Description: "end: " + telemetryHelp + " (default: now)", Schema: schema{"type": "string"}},
			{Name: "step", Description: "bucket width: a Go duration (30s, 5m) or seconds (default: the range / 250 rounded up to whole seconds, at least 1s)", Schema: schema{"type": "string"}},
			{Name: "agg", Description: "aggregation in each bucket (default avg); raw returns every stored point, at most 11000 per field", Schema: strEnum("", "avg", "min", "max", "sum", "count", "last", "raw")},
		},
		Responses: []response{{Status: 200, Description: "one series per field", Body: &content{Schema: ref("Telemetry"), Example: telemetryBody{
			Device: "press-7", From: from.UnixMilli(), To: exampleTime.UnixMilli(), Step: 15000, Agg: "avg",
			Series: []FieldSeries{{Field: "temperature", Points: []Point{{T: from.UnixMilli(), V: 71.5}, {T: from.UnixMilli() + 15000, V: 71.9}}}},
		}}}},
		Errors: []int{503}, handle: s.telemetry})
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/latest", ID: "deviceLatest", Tag: "telemetry", Role: registry.RoleViewer,
		Summary: "The newest value of each of a device's fields", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "newest values", Body: &content{Schema: ref("Latest"), Example: latestBody{
			Device: "press-7", Values: []LatestValue{
				{Field: "temperature", T: exampleTime.UnixMilli(), Value: 71.9},
				{Field: "mode", T: exampleTime.UnixMilli(), Value: "auto"},
				{Field: "door_open", T: exampleTime.UnixMilli(), Value: false},
			},
		}}}},
		Errors: []int{503}, handle: s.latest})
}

func (s *Server) telemetryStore() (Telemetry, error) {
	if s.deps.Telemetry == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the time-series store is not running on this hub"}
	}
	return s.deps.Telemetry, nil
}

func (s *Server) telemetry(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var names []string
	for _, n := range strings.Split(q.Get("names"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	now := s.now()
	to, err := parseTime("to", q.Get("to"), now)
	if err != nil {
		return err
	}
	from, err := parseTime("from", q.Get("from"), to.Add(-defaultRange))
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return invalid("parameter \"from\" (%s) must be before \"to\" (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	agg := q.Get("agg")
	if agg == "" {
		agg = defaultAgg
	}
	if !aggs[agg] && agg != rawAgg {
		return invalid("parameter \"agg\" must be avg, min, max, sum, count, last or raw, not %q", agg)
	}
	span := to.Sub(from)
	step := span / targetPoints
	if step%time.Second != 0 {
		step = step.Truncate(time.Second) + time.Second
	}
	step = max(time.Second, step)
	if v := q.Get("step"); v != "" {
		step, err = parseDuration(v)
		if err != nil || step <= 0 {
			return invalid("parameter \"step\" must be a positive duration (30s, 5m) or seconds, not %q", v)
		}
	}
	if agg == rawAgg {
		step = 0 // every stored point; the count is checked after the read
	} else if n := span / step; n > maxPoints {
		least := (span/maxPoints + time.Second).Truncate(time.Second)
		return invalid("a step of %s over %s gives %d points per field, more than %d; use a step of at least %s", step, span, int64(n), maxPoints, least)
	}
	store, err := s.telemetryStore()
	if err != nil {
		return err
	}
	org, id := orgOf(r), r.PathValue("id")
	if _, err := s.deps.Registry.GetDevice(r.Context(), org, id); err != nil {
		return err
	}
	series, err := store.Range(r.Context(), org, id, names, from, to, step, agg)
	if err != nil {
		return fmt.Errorf("read telemetry of %q: %w", id, err)
	}
	// JSON has no NaN or infinity; a bucket without a finite value is left out.
	out := make([]FieldSeries, 0, len(series))
	for _, fs := range series {
		pts := make([]Point, 0, len(fs.Points))
		for _, p := range fs.Points {
			if !math.IsNaN(p.V) && !math.IsInf(p.V, 0) {
				pts = append(pts, p)
			}
		}
		if agg == rawAgg && len(pts) > maxPoints {
			return invalid("field %q has more than %d points between from and to; narrow the range or aggregate with step and agg", fs.Field, maxPoints)
		}
		out = append(out, FieldSeries{Field: fs.Field, Points: pts})
	}
	writeJSON(w, http.StatusOK, telemetryBody{Device: id, From: from.UnixMilli(), To: to.UnixMilli(), Step: step.Milliseconds(), Agg: agg, Series: out})
	return nil
}

func (s *Server) latest(w http.ResponseWriter, r *http.Request) error {
	store, err := s.telemetryStore()
	if err != nil {
		return err
	}
	org, id := orgOf(r), r.PathValue("id")
	if _, err := s.deps.Registry.GetDevice(r.Context(), org, id); err != nil {
		return err
	}
	vals, err := store.Latest(r.Context(), org, id)
	if err != nil {
		return fmt.Errorf("read latest values of %q: %w", id, err)
	}
	out := make([]LatestValue, 0, len(vals))
	for _, v := range vals {
		if f, ok := v.Value.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			continue
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, latestBody{Device: id, Values: out})
	return nil
}

// parseTime reads an RFC 3339 time or unix milliseconds; empty gives def.
func parseTime(name, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, invalid("parameter %q must be %s, not %q", name, telemetryHelp, v)
	}
	return t, nil
}
