package promapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// Options bounds query execution. Zero values take the defaults.
type Options struct {
	// MaxSamples is the most samples one query may hold in memory
	// (default 50,000,000, as Prometheus).
	MaxSamples int
	// Timeout is the longest a query may run (default 2m).
	Timeout time.Duration
	// LookbackDelta is how far back an instant selector looks (default 5m).
	LookbackDelta time.Duration
	// MaxPoints is the most points per series a range query may ask for
	// (default 11,000, as Prometheus).
	MaxPoints int
	// Version is reported by /api/v1/status/buildinfo.
	Version string
}

// Handler serves the Prometheus HTTP API subset. It is an http.Handler.
type Handler struct {
	queryable func(org string) storage.Queryable
	orgOf     func(*http.Request) (string, error)
	logger    *slog.Logger
	opts      Options
	engine    *promql.Engine
	parser    parser.Parser
}

// New returns a Handler. queryable must return a Queryable that sees only
// org's series; orgOf authenticates a request and names its organization
// (an error answers 401).
func New(queryable func(org string) storage.Queryable, orgOf func(*http.Request) (string, error), logger *slog.Logger, opts Options) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = 50_000_000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.LookbackDelta <= 0 {
		opts.LookbackDelta = 5 * time.Minute
	}
	if opts.MaxPoints <= 0 {
		opts.MaxPoints = 11_000
	}
	if opts.Version == "" {
		opts.Version = "2.53.0" // clients such as Grafana pick features by version
	}
	p := parser.NewParser(parser.Options{})
	return &Handler{
		queryable: queryable,
		orgOf:     orgOf,
		logger:    logger,
		opts:      opts,
		parser:    p,
		engine: promql.NewEngine(promql.EngineOpts{
			Logger:               logger,
			MaxSamples:           opts.MaxSamples,
			Timeout:              opts.Timeout,
			LookbackDelta:        opts.LookbackDelta,
			EnableAtModifier:     true,
			EnableNegativeOffset: true,
			Parser:               p,
		}),
	}
}

// Close releases the query engine.
func (h *Handler) Close() error { return h.engine.Close() }

// apiError is a Prometheus API error with its HTTP status.
type apiError struct {
	typ    string
	status int
	err    error
}

func badData(format string, args ...any) *apiError {
	return &apiError{"bad_data", http.StatusBadRequest, fmt.Errorf(format, args...)}
}

// ServeHTTP routes on the path after "/api/v1/", so the handler works
// mounted under any prefix, with or without http.StripPrefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, route, ok := strings.Cut(r.URL.Path, "/api/v1/")
	if !ok {
		writeError(w, &apiError{"not_found", http.StatusNotFound, fmt.Errorf("unknown path %q; this is the Prometheus API, use .../api/v1/query", r.URL.Path)})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, &apiError{"bad_data", http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; use GET or POST", r.Method)})
		return
	}
	if route == "status/buildinfo" {
		writeData(w, map[string]string{
			"version": h.opts.Version, "revision": "", "branch": "", "buildUser": "shopfloor",
			"buildDate": "", "goVersion": runtime.Version(),
		}, nil)
		return
	}
	org, err := h.orgOf(r)
	if err != nil {
		writeError(w, &apiError{"unauthorized", http.StatusUnauthorized, err})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, badData("cannot read the form parameters: %v", err))
		return
	}
	var (
		data  any
		warns annotations.Annotations
		aerr  *apiError
	)
	switch {
	case route == "query":
		data, warns, aerr = h.query(r, org)
	case route == "query_range":
		data, warns, aerr = h.queryRange(r, org)
	case route == "series":
		data, warns, aerr = h.series(r, org)
	case route == "labels":
		data, warns, aerr = h.labelNames(r, org)
	case strings.HasPrefix(route, "label/") && strings.HasSuffix(route, "/values"):
		name := strings.TrimSuffix(strings.TrimPrefix(route, "label/"), "/values")
		data, warns, aerr = h.labelValues(r, org, name)
	default:
		aerr = &apiError{"not_found", http.StatusNotFound, fmt.Errorf("unknown endpoint %q; supported: query, query_range, series, labels, label/<name>/values, status/buildinfo", route)}
	}
	if aerr != nil {
		if aerr.status >= 500 {
			h.logger.Error("prometheus API request failed", "path", r.URL.Path, "org", org, "err", aerr.err)
		}
		writeError(w, aerr)
		return
	}
	writeData(w, data, warns)
}

func (h *Handler) query(r *http.Request, org string) (any, annotations.Annotations, *apiError) {
	ts := time.Now()
	if v := r.FormValue("time"); v != "" {
		var err error
		if ts, err = parseTime(v); err != nil {
			return nil, nil, badData("invalid parameter \"time\": %v", err)
		}
	}
	ctx, cancel, aerr := h.queryContext(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer cancel()
	qs := r.FormValue("query")
	q, err := h.engine.NewInstantQuery(ctx, h.queryable(org), nil, qs, ts)
	if err != nil {
		return nil, nil, badData("invalid parameter \"query\": %v", err)
	}
	return h.exec(ctx, q)
}

func (h *Handler) queryRange(r *http.Request, org string) (any, annotations.Annotations, *apiError) {
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return nil, nil, badData("invalid parameter \"start\": %v", err)
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return nil, nil, badData("invalid parameter \"end\": %v", err)
	}
	if end.Before(start) {
		return nil, nil, badData("invalid parameter \"end\": end timestamp must not be before start time")
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return nil, nil, badData("invalid parameter \"step\": %v", err)
	}
	if step <= 0 {
		return nil, nil, badData("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer")
	}
	if end.Sub(start)/step > time.Duration(h.opts.MaxPoints) {
		return nil, nil, badData("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", h.opts.MaxPoints)
	}
	ctx, cancel, aerr := h.queryContext(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer cancel()
	q, err := h.engine.NewRangeQuery(ctx, h.queryable(org), nil, r.FormValue("query"), start, end, step)
	if err != nil {
		return nil, nil, badData("invalid parameter \"query\": %v", err)
	}
	return h.exec(ctx, q)
}

// queryContext applies the optional timeout parameter.
func (h *Handler) queryContext(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	ctx := r.Context()
	if v := r.FormValue("timeout"); v != "" {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			return nil, nil, badData("invalid parameter \"timeout\": %q is not a positive duration", v)
		}
		c, cancel := context.WithTimeout(ctx, d)
		return c, cancel, nil
	}
	return ctx, func() {}, nil
}

func (h *Handler) exec(ctx context.Context, q promql.Query) (any, annotations.Annotations, *apiError) {
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Warnings, execError(res.Err)
	}
	return queryData{ResultType: string(res.Value.Type()), Result: encodeValue(res.Value)}, res.Warnings, nil
}

func execError(err error) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		stor     promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return &apiError{"canceled", http.StatusServiceUnavailable, err}
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{"timeout", http.StatusServiceUnavailable, err}
	case errors.As(err, &stor):
		return &apiError{"internal", http.StatusInternalServerError, err}
	}
	return &apiError{"execution", http.StatusUnprocessableEntity, err}
}

// matcherSets parses match[] parameters.
func (h *Handler) matcherSets(r *http.Request) ([][]*labels.Matcher, *apiError) {
	var out [][]*labels.Matcher
	for _, s := range r.Form["match[]"] {
		ms, err := h.parser.ParseMetricSelector(s)
		if err != nil {
			return nil, badData("invalid parameter \"match[]\": %v", err)
		}
		out = append(out, ms)
	}
	return out, nil
}

var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
)

func timeRange(r *http.Request) (time.Time, time.Time, *apiError) {
	start, end := minTime, maxTime
	var err error
	if v := r.FormValue("start"); v != "" {
		if start, err = parseTime(v); err != nil {
			return start, end, badData("invalid parameter \"start\": %v", err)
		}
	}
	if v := r.FormValue("end"); v != "" {
		if end, err = parseTime(v); err != nil {
			return start, end, badData("invalid parameter \"end\": %v", err)
		}
	}
	return start, end, nil
}

func (h *Handler) querier(r *http.Request, org string) (storage.Querier, int64, int64, *apiError) {
	start, end, aerr := timeRange(r)
	if aerr != nil {
		return nil, 0, 0, aerr
	}
	q, err := h.queryable(org).Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		return nil, 0, 0, &apiError{"internal", http.StatusInternalServerError, err}
	}
	return q, start.UnixMilli(), end.UnixMilli(), nil
}

func (h *Handler) series(r *http.Request, org string) (any, annotations.Annotations, *apiError) {
	sets, aerr := h.matcherSets(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	if len(sets) == 0 {
		return nil, nil, badData("no match[] parameter provided")
	}
	q, mint, maxt, aerr := h.querier(r, org)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer q.Close()
	seen := map[string]labels.Labels{}
	var warns annotations.Annotations
	for _, ms := range sets {
		ss := q.Select(r.Context(), false, &storage.SelectHints{Start: mint, End: maxt, Func: "series"}, ms...)
		for ss.Next() {
			l := ss.At().Labels()
			seen[l.String()] = l
		}
		warns.Merge(ss.Warnings())
		if err := ss.Err(); err != nil {
			return nil, warns, &apiError{"internal", http.StatusInternalServerError, err}
		}
	}
	out := make([]labels.Labels, 0, len(seen))
	for _, l := range seen {
		out = append(out, l)
	}
	slices.SortFunc(out, labels.Compare)
	if lim, _ := strconv.Atoi(r.FormValue("limit")); lim > 0 && len(out) > lim {
		out = out[:lim]
	}
	return out, warns, nil
}

func (h *Handler) labelNames(r *http.Request, org string) (any, annotations.Annotations, *apiError) {
	return h.labelQuery(r, org, func(ctx context.Context, q storage.Querier, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(ctx, nil, ms...)
	})
}

func (h *Handler) labelValues(r *http.Request, org, name string) (any, annotations.Annotations, *apiError) {
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if name == "" || strings.Contains(name, "/") {
		return nil, nil, badData("invalid label name: %q", name)
	}
	return h.labelQuery(r, org, func(ctx context.Context, q storage.Querier, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(ctx, name, nil, ms...)
	})
}

func (h *Handler) labelQuery(r *http.Request, org string, fn func(context.Context, storage.Querier, []*labels.Matcher) ([]string, annotations.Annotations, error)) (any, annotations.Annotations, *apiError) {
	sets, aerr := h.matcherSets(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	q, _, _, aerr := h.querier(r, org)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer q.Close()
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	seen := map[string]struct{}{}
	var warns annotations.Annotations
	for _, ms := range sets {
		vals, w, err := fn(r.Context(), q, ms)
		warns.Merge(w)
		if err != nil {
			return nil, warns, &apiError{"internal", http.StatusInternalServerError, err}
		}
		for _, v := range vals {
			seen[v] = struct{}{}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	if lim, _ := strconv.Atoi(r.FormValue("limit")); lim > 0 && len(out) > lim {
		out = out[:lim]
	}
	return out, warns, nil
}

// parseTime accepts unix seconds (with fraction) or RFC 3339, as Prometheus.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing; give unix seconds or an RFC 3339 time")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp; give unix seconds or an RFC 3339 time", s)
}

// parseDuration accepts seconds (with fraction) or a Prometheus duration.
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if ts > float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration; give seconds or a duration such as 30s or 5m", s)
}

// Response encoding, in the Prometheus JSON shapes.

type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

type queryData struct {
	ResultType string `json:"resultType"`
	Result     any    `json:"result"`
}

func writeData(w http.ResponseWriter, data any, warns annotations.Annotations) {
	resp := response{Status: "success", Data: data}
	if len(warns) > 0 {
		resp.Warnings, resp.Infos = warns.AsStrings("", 10, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, response{Status: "error", ErrorType: e.typ, Error: e.err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// point is [unix seconds, "value"].
type point struct {
	t int64
	v float64
}

func (p point) MarshalJSON() ([]byte, error) {
	b := []byte{'['}
	b = strconv.AppendFloat(b, float64(p.t)/1000, 'f', -1, 64)
	b = append(b, ',', '"')
	b = appendValue(b, p.v)
	return append(b, '"', ']'), nil
}

func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

type vectorSample struct {
	Metric labels.Labels `json:"metric"`
	Value  point         `json:"value"`
}

type matrixSeries struct {
	Metric labels.Labels `json:"metric"`
	Values []point       `json:"values"`
}

type stringPoint struct {
	t int64
	s string
}

func (p stringPoint) MarshalJSON() ([]byte, error) {
	s, err := json.Marshal(p.s)
	if err != nil {
		return nil, err
	}
	b := []byte{'['}
	b = strconv.AppendFloat(b, float64(p.t)/1000, 'f', -1, 64)
	b = append(b, ',')
	b = append(b, s...)
	return append(b, ']'), nil
}

// encodeValue converts a PromQL result; native histograms never occur in
// this store and are left out.
func encodeValue(v parser.Value) any {
	switch x := v.(type) {
	case promql.Vector:
		out := make([]vectorSample, 0, len(x))
		for _, s := range x {
			if s.H == nil {
				out = append(out, vectorSample{Metric: s.Metric, Value: point{s.T, s.F}})
			}
		}
		return out
	case promql.Matrix:
		out := make([]matrixSeries, 0, len(x))
		for _, s := range x {
			ms := matrixSeries{Metric: s.Metric, Values: make([]point, len(s.Floats))}
			for i, f := range s.Floats {
				ms.Values[i] = point{f.T, f.F}
			}
			out = append(out, ms)
		}
		return out
	case promql.Scalar:
		return point{x.T, x.V}
	case promql.String:
		return stringPoint{x.T, x.V}
	}
	return nil
}

// ErrQuery marks an expression that does not parse, fails or does not
// return series; its message says why.
var ErrQuery = errors.New("PromQL query failed")

// QueryRange evaluates expr over org's series with the same engine and
// limits as the HTTP API: the console's dashboard tiles use it, so a tile
// and /prometheus/ agree.
func (h *Handler) QueryRange(ctx context.Context, org, expr string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	q, err := h.engine.NewRangeQuery(ctx, h.queryable(org), nil, expr, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuery, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuery, res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, fmt.Errorf("%w: the expression must return series (a range vector result)", ErrQuery)
	}
	return m, nil
}
