package promapi_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/promapi"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

// newStore opens a real store with one device's "motor/rpm" field in orgs a
// (values 0..599) and b (10000..10599), one sample a second for the 10
// minutes before end.
func newStore(t *testing.T, end time.Time) *tsdb.DB {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	sqlDB, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "r.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	st, err := tsdb.NewSQLiteChunkStore(ctx, sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	db, err := tsdb.Open(ctx, tsdb.Options{Dir: filepath.Join(dir, "tsdb")}, st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, org := range []string{"a", "b"} {
		var batch []tsdb.Sample
		for i := range 600 {
			v := float64(i)
			if org == "b" {
				v += 10000
			}
			batch = append(batch, tsdb.Sample{
				Labels: tsdb.TelemetryLabels(org, "hall-1", "press-1", "press", "motor/rpm"),
				T:      end.Add(-time.Duration(600-i) * time.Second).UnixMilli(),
				V:      v,
			})
		}
		if err := db.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func orgFromHeader(r *http.Request) (string, error) {
	if org := r.Header.Get("X-Org"); org != "" {
		return org, nil
	}
	return "", errors.New("no X-Org header; send a token")
}

func newServer(t *testing.T, db *tsdb.DB, orgOf func(*http.Request) (string, error)) *httptest.Server {
	t.Helper()
	h := promapi.New(db.Queryable, orgOf, slog.New(slog.DiscardHandler), promapi.Options{})
	t.Cleanup(func() { h.Close() })
	mux := http.NewServeMux()
	mux.Handle("/prometheus/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

func call(t *testing.T, srv *httptest.Server, org, method, path string, params url.Values) (int, apiResponse) {
	t.Helper()
	var req *http.Request
	var err error
	if method == http.MethodPost {
		req, err = http.NewRequest(method, srv.URL+path, strings.NewReader(params.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequest(method, srv.URL+path+"?"+params.Encode(), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if org != "" {
		req.Header.Set("X-Org", org)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out apiResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("%s %s: response is not JSON: %s", method, path, body)
	}
	return resp.StatusCode, out
}

type vectorResult struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	} `json:"result"`
}

func TestOrgIsolation(t *testing.T) {
	end := time.Now().Truncate(time.Second)
	srv := newServer(t, newStore(t, end), orgFromHeader)
	at := strconv.FormatInt(end.Add(-time.Second).Unix(), 10)

	for _, tc := range []struct {
		org  string
		want string
	}{{"a", "599"}, {"b", "10599"}} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			code, resp := call(t, srv, tc.org, method, "/prometheus/api/v1/query", url.Values{"query": {"motor_rpm"}, "time": {at}})
			if code != 200 || resp.Status != "success" {
				t.Fatalf("%s %s: %d %+v", tc.org, method, code, resp)
			}
			var v vectorResult
			if err := json.Unmarshal(resp.Data, &v); err != nil {
				t.Fatal(err)
			}
			if v.ResultType != "vector" || len(v.Result) != 1 || v.Result[0].Value[1] != tc.want {
				t.Fatalf("org %s sees %s", tc.org, resp.Data)
			}
			if _, ok := v.Result[0].Metric["org"]; ok || v.Result[0].Metric["device"] != "press-1" {
				t.Fatalf("org %s: labels %v", tc.org, v.Result[0].Metric)
			}
		}
	}
	// Naming the other tenant in a matcher finds nothing.
	_, resp := call(t, srv, "a", http.MethodGet, "/prometheus/api/v1/query", url.Values{"query": {`motor_rpm{org="b"}`}, "time": {at}})
	if !strings.Contains(string(resp.Data), `"result":[]`) {
		t.Fatalf("org matcher crossed tenants: %s", resp.Data)
	}
	_, resp = call(t, srv, "a", http.MethodGet, "/prometheus/api/v1/series", url.Values{"match[]": {`{__name__=~".+"}`}})
	var series []map[string]string
	if err := json.Unmarshal(resp.Data, &series); err != nil || len(series) != 1 || series[0]["__name__"] != "motor_rpm" || series[0]["org"] != "" {
		t.Fatalf("series: %s (%v)", resp.Data, err)
	}
	_, resp = call(t, srv, "a", http.MethodGet, "/prometheus/api/v1/labels", nil)
	if string(resp.Data) != `["__name__","device","field","site","template"]` {
		t.Fatalf("labels: %s", resp.Data)
	}
	_, resp = call(t, srv, "a", http.MethodPost, "/prometheus/api/v1/label/org/values", nil)
	if string(resp.Data) != `[]` {
		t.Fatalf("org label values leak: %s", resp.Data)
	}
	_, resp = call(t, srv, "b", http.MethodGet, "/prometheus/api/v1/label/device/values", url.Values{"match[]": {"motor_rpm"}})
	if string(resp.Data) != `["press-1"]` {
		t.Fatalf("device values: %s", resp.Data)
	}
	// An org without data sees nothing at all.
	_, resp = call(t, srv, "c", http.MethodGet, "/prometheus/api/v1/label/__name__/values", nil)
	if string(resp.Data) != `[]` {
		t.Fatalf("org c sees %s", resp.Data)
	}
}

func TestErrors(t *testing.T) {
	end := time.Now().Truncate(time.Second)
	srv := newServer(t, newStore(t, end), orgFromHeader)
	for _, tc := range []struct {
		name, org, path string
		params          url.Values
		code            int
		typ             string
	}{
		{"no org", "", "/prometheus/api/v1/query", url.Values{"query": {"up"}}, 401, "unauthorized"},
		{"bad query", "a", "/prometheus/api/v1/query", url.Values{"query": {"sum(("}}, 400, "bad_data"},
		{"bad time", "a", "/prometheus/api/v1/query", url.Values{"query": {"up"}, "time": {"yesterday"}}, 400, "bad_data"},
		{"zero step", "a", "/prometheus/api/v1/query_range", url.Values{"query": {"up"}, "start": {"1"}, "end": {"2"}, "step": {"0"}}, 400, "bad_data"},
		{"too many points", "a", "/prometheus/api/v1/query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"100000"}, "step": {"1"}}, 400, "bad_data"},
		{"no match", "a", "/prometheus/api/v1/series", nil, 400, "bad_data"},
		{"unknown endpoint", "a", "/prometheus/api/v1/targets", nil, 404, "not_found"},
	} {
		code, resp := call(t, srv, tc.org, http.MethodGet, tc.path, tc.params)
		if code != tc.code || resp.Status != "error" || resp.ErrorType != tc.typ || resp.Error == "" {
			t.Errorf("%s: got %d %+v, want %d %s", tc.name, code, resp, tc.code, tc.typ)
		}
	}
	code, resp := call(t, srv, "", http.MethodGet, "/prometheus/api/v1/status/buildinfo", nil)
	if code != 200 || !strings.Contains(string(resp.Data), `"version"`) {
		t.Fatalf("buildinfo: %d %s", code, resp.Data)
	}
}

func TestQueryRangeMatrix(t *testing.T) {
	end := time.Now().Truncate(time.Second)
	srv := newServer(t, newStore(t, end), orgFromHeader)
	start := end.Add(-5 * time.Minute)
	_, resp := call(t, srv, "a", http.MethodPost, "/prometheus/api/v1/query_range", url.Values{
		"query": {"max_over_time(motor_rpm[1m])"},
		"start": {start.Format(time.RFC3339)}, "end": {strconv.FormatInt(end.Add(-time.Second).Unix(), 10)}, "step": {"1m"},
	})
	var m struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(resp.Data, &m); err != nil || m.ResultType != "matrix" || len(m.Result) != 1 || len(m.Result[0].Values) != 5 {
		t.Fatalf("query_range: %s (%v)", resp.Data, err)
	}
	for i, p := range m.Result[0].Values {
		if p[0] != float64(start.Add(time.Duration(i)*time.Minute).Unix()) || p[1] != strconv.Itoa(300+60*i) {
			t.Fatalf("point %d: %v", i, p)
		}
	}
}

// TestPromtoolQueryRange runs the real promtool against the handler.
func TestPromtoolQueryRange(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/promtool"); serr != nil {
			t.Skip("SKIPPING promtool interoperability test: promtool is not installed; run `apt-get install -y prometheus` (Debian) to enable it")
		}
		promtool = "/usr/bin/promtool"
	}
	end := time.Now().Truncate(time.Second)
	srv := newServer(t, newStore(t, end), func(*http.Request) (string, error) { return "a", nil })
	start := end.Add(-5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "query", "range",
		"--start", strconv.FormatInt(start.Unix(), 10),
		"--end", strconv.FormatInt(end.Add(-time.Second).Unix(), 10),
		"--step", "1m",
		srv.URL+"/prometheus", "max_over_time(motor_rpm[1m])")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`(?m)^(\S+) @\[(\S+)\]$`)
	got := re.FindAllStringSubmatch(string(out), -1)
	if len(got) != 5 || !strings.Contains(string(out), `device="press-1"`) || strings.Contains(string(out), "org=") {
		t.Fatalf("promtool output:\n%s", out)
	}
	for i, m := range got {
		wantV, wantT := strconv.Itoa(300+60*i), fmt.Sprint(start.Add(time.Duration(i)*time.Minute).Unix())
		if m[1] != wantV || m[2] != wantT {
			t.Fatalf("promtool point %d: %s @[%s], want %s @[%s]\n%s", i, m[1], m[2], wantV, wantT, out)
		}
	}
}

// The console's tiles evaluate PromQL through the same engine, with the
// same tenancy: org a sees its series only, and a bad expression is
// ErrQuery.
func TestQueryRangeForConsole(t *testing.T) {
	end := time.Now().Truncate(time.Second)
	db := newStore(t, end)
	h := promapi.New(db.Queryable, orgFromHeader, slog.New(slog.DiscardHandler), promapi.Options{})
	t.Cleanup(func() { h.Close() })
	m, err := h.QueryRange(context.Background(), "a", `motor_rpm`, end.Add(-5*time.Minute), end, time.Minute)
	if err != nil || len(m) != 1 {
		t.Fatalf("matrix %v, %v", m, err)
	}
	for _, f := range m[0].Floats {
		if f.F >= 10000 {
			t.Fatalf("org a's query saw org b's value %v", f.F)
		}
	}
	if _, err := h.QueryRange(context.Background(), "a", `sum(`, end.Add(-time.Minute), end, time.Minute); !errors.Is(err, promapi.ErrQuery) {
		t.Fatalf("bad expression: %v", err)
	}
}
