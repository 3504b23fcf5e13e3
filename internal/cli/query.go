package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

type fieldSeries struct {
	Field  string `json:"field"`
	Points []struct {
		T int64   `json:"t"`
		V float64 `json:"v"`
	} `json:"points"`
}

type telemetryResult struct {
	Device string        `json:"device"`
	From   int64         `json:"from"`
	To     int64         `json:"to"`
	Step   int64         `json:"step"`
	Agg    string        `json:"agg"`
	Series []fieldSeries `json:"series"`
}

type latestResult struct {
	Device string `json:"device"`
	Values []struct {
		Field string `json:"field"`
		T     int64  `json:"t"`
		Value any    `json:"value"`
	} `json:"values"`
}

func queryCommand() *cobra.Command {
	q := &cobra.Command{Use: "query", Short: "Read telemetry: a device's series, its latest values, or PromQL"}
	q.AddCommand(queryTelemetry(), queryLatest(), queryPromQL())
	return q
}

const whenHelp = "a time (2026-03-02T08:00:00Z), a duration ago (2h, 30m), \"now\" or unix seconds"

func queryTelemetry() *cobra.Command {
	var names, from, to, step, agg string
	c := &cobra.Command{
		Use:   "telemetry DEVICE",
		Short: "A device's fields over a time range, aggregated per step",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			q := url.Values{}
			if names != "" {
				q.Set("names", names)
			}
			for flag, v := range map[string]string{"from": from, "to": to} {
				if v == "" {
					continue
				}
				t, err := parseWhen(v, now)
				if err != nil {
					return fmt.Errorf("--%s must be %s, not %q", flag, whenHelp, v)
				}
				q.Set(flag, strconv.FormatInt(t.UnixMilli(), 10))
			}
			if step != "" {
				q.Set("step", step)
			}
			if agg != "" {
				q.Set("agg", agg)
			}
			path := pathID("/api/v1/devices", args[0]) + "/telemetry"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var res telemetryResult
			if err := call(cmd, "GET", path, nil, &res); err != nil {
				return err
			}
			return render(cmd, res, func(w io.Writer) {
				row(w, "TIME", "FIELD", "VALUE")
				for _, s := range res.Series {
					for _, p := range s.Points {
						row(w, time.UnixMilli(p.T), s.Field, strconv.FormatFloat(p.V, 'g', -1, 64))
					}
				}
			})
		},
	}
	f := c.Flags()
	f.StringVar(&names, "names", "", "comma-separated fields (default: all)")
	f.StringVar(&from, "from", "", "start: "+whenHelp+" (default: an hour before --to)")
	f.StringVar(&to, "to", "", "end: "+whenHelp+" (default: now)")
	f.StringVar(&step, "step", "", "bucket width, e.g. 30s or 5m (default: the range / 250)")
	f.StringVar(&agg, "agg", "", "avg (default), min, max, sum, count or last")
	_ = c.RegisterFlagCompletionFunc("agg", fixedCompletion("avg", "min", "max", "sum", "count", "last"))
	return c
}

func queryLatest() *cobra.Command {
	return &cobra.Command{
		Use:   "latest DEVICE",
		Short: "The newest value of each of a device's fields",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res latestResult
			if err := call(cmd, "GET", pathID("/api/v1/devices", args[0])+"/latest", nil, &res); err != nil {
				return err
			}
			return render(cmd, res, func(w io.Writer) {
				row(w, "FIELD", "VALUE", "TIME")
				for _, v := range res.Values {
					val := v.Value
					if f, ok := val.(float64); ok {
						val = strconv.FormatFloat(f, 'g', -1, 64)
					}
					row(w, v.Field, val, time.UnixMilli(v.T))
				}
			})
		},
	}
}

// promResponse is the Prometheus HTTP API envelope.
type promResponse struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
	Warnings []string `json:"warnings,omitempty"`
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

func queryPromQL() *cobra.Command {
	var at, start, end, step string
	c := &cobra.Command{
		Use:   "promql EXPR",
		Short: "Evaluate a PromQL expression over your telemetry (a range query with --start)",
		Example: `  shopfloor query promql 'avg by (device) (temperature{site="plant-north"})'
  shopfloor query promql 'max_over_time(pressure[5m])' --start 6h --step 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			q := url.Values{"query": {args[0]}}
			path := "/prometheus/api/v1/query"
			if start != "" {
				s, err := parseWhen(start, now)
				if err != nil {
					return fmt.Errorf("--start must be %s, not %q", whenHelp, start)
				}
				e := now
				if end != "" {
					if e, err = parseWhen(end, now); err != nil {
						return fmt.Errorf("--end must be %s, not %q", whenHelp, end)
					}
				}
				if !s.Before(e) {
					return fmt.Errorf("--start (%s) must be before --end (%s)", s.Format(time.RFC3339), e.Format(time.RFC3339))
				}
				st := step
				if st == "" {
					d := e.Sub(s) / 250
					st = strconv.FormatFloat(max(1, (d+time.Second-1).Truncate(time.Second).Seconds()), 'f', -1, 64)
				}
				path = "/prometheus/api/v1/query_range"
				q.Set("start", unixSeconds(s))
				q.Set("end", unixSeconds(e))
				q.Set("step", st)
			} else if end != "" || step != "" {
				return fmt.Errorf("--end and --step need --start (a range query)")
			} else if at != "" {
				t, err := parseWhen(at, now)
				if err != nil {
					return fmt.Errorf("--time must be %s, not %q", whenHelp, at)
				}
				q.Set("time", unixSeconds(t))
			}
			var raw []byte
			if err := call(cmd, "GET", path+"?"+q.Encode(), nil, &raw); err != nil {
				return err
			}
			var res promResponse
			if err := json.Unmarshal(raw, &res); err != nil {
				return fmt.Errorf("the hub's Prometheus API answered something that is not its JSON: %w", err)
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			var all any
			_ = json.Unmarshal(raw, &all)
			var tableErr error
			err := render(cmd, all, func(w io.Writer) { tableErr = promTable(w, res) })
			if err != nil {
				return err
			}
			return tableErr
		},
	}
	f := c.Flags()
	f.StringVar(&at, "time", "", "evaluation time of an instant query: "+whenHelp+" (default now)")
	f.StringVar(&start, "start", "", "start of a range query: "+whenHelp)
	f.StringVar(&end, "end", "", "end of a range query (default now)")
	f.StringVar(&step, "step", "", "range query resolution, e.g. 15s (default: the range / 250)")
	return c
}

func promTable(w io.Writer, res promResponse) error {
	switch res.Data.ResultType {
	case "vector", "matrix":
		var samples []promSample
		if err := json.Unmarshal(res.Data.Result, &samples); err != nil {
			return fmt.Errorf("read the %s result: %w", res.Data.ResultType, err)
		}
		if res.Data.ResultType == "vector" {
			row(w, "SERIES", "VALUE", "TIME")
			for _, s := range samples {
				row(w, seriesName(s.Metric), s.Value[1], promTime(s.Value[0]))
			}
			return nil
		}
		row(w, "SERIES", "TIME", "VALUE")
		for _, s := range samples {
			name := seriesName(s.Metric)
			for _, p := range s.Values {
				row(w, name, promTime(p[0]), p[1])
			}
		}
	case "scalar", "string":
		var v [2]any
		if err := json.Unmarshal(res.Data.Result, &v); err != nil {
			return fmt.Errorf("read the %s result: %w", res.Data.ResultType, err)
		}
		row(w, "VALUE", "TIME")
		row(w, v[1], promTime(v[0]))
	default:
		return fmt.Errorf("the hub answered a result of unknown type %q", res.Data.ResultType)
	}
	return nil
}

func seriesName(m map[string]string) string {
	name := m["__name__"]
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(m[k])
	}
	return name + "{" + strings.Join(parts, ", ") + "}"
}

func promTime(v any) any {
	f, ok := v.(float64)
	if !ok {
		return v
	}
	return time.UnixMilli(int64(f * 1000))
}

func unixSeconds(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}

// parseWhen reads a time for the command line: "now", a duration ago (2h
// or -2h), RFC 3339, a date, or unix seconds (milliseconds when the number
// is that large).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil {
		return now.Add(-d), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > 1e11 {
			return time.UnixMilli(n), nil
		}
		return time.Unix(n, 0), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a time: %q", s)
}
