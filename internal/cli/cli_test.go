package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/api/apitest"
	"github.com/shopfloor/shopfloor/internal/cli"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/sqlite"
)

// hub is an API server on loopback over the in-memory registry.
type hub struct {
	url     string
	reg     *registry.Service
	tel     *apitest.Telemetry
	pres    *apitest.Presence
	admin   string // operator organization admin
	mu      sync.Mutex
	imports int          // POST /api/v1/devices/import requests
	prom    []url.Values // queries the Prometheus handler saw
	promOrg []string
}

// testRegistry is the real registry service on a SQLite file in t's
// temporary directory, bootstrapped; it returns the store, the service and
// the operator admin token.
func testRegistry(t *testing.T) (*sqlite.Store, *registry.Service, string) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "registry.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reg := registry.New(st, slog.New(slog.DiscardHandler))
	_, secret, err := reg.Bootstrap(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return st, reg, secret
}

func newHub(t *testing.T) *hub {
	t.Helper()
	// The real registry service on SQLite; telemetry and presence are the
	// in-memory stand-ins.
	_, reg, secret := testRegistry(t)
	h := &hub{reg: reg, tel: apitest.NewTelemetry(), pres: apitest.NewPresence(), admin: secret}
	srv, err := api.New(api.Deps{
		Registry: h.reg, Telemetry: h.tel, Presence: h.pres,
		SASToken: func(host, id, key string, exp time.Time) (string, error) {
			return fmt.Sprintf("SharedAccessSignature sr=%s&sig=x&se=%d", url.QueryEscape(host+"/devices/"+id), exp.Unix()), nil
		},
		Prometheus: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			org, _ := api.OrgFromRequest(r)
			h.mu.Lock()
			h.prom = append(h.prom, r.URL.Query())
			h.promOrg = append(h.promOrg, org)
			h.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/api/v1/query_range" {
				fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"temperature","device":"press-1"},"values":[[1772449200,"70.5"],[1772449260,"71"]]}]}}`)
				return
			}
			if r.URL.Query().Get("query") == "bad(" {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}`)
				return
			}
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"temperature","device":"press-1","site":"north"},"value":[1772449200,"70.5"]}]},"warnings":["partial data"]}`)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	handler := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/devices/import" {
			h.mu.Lock()
			h.imports++
			h.mu.Unlock()
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	h.url = ts.URL
	return h
}

// isolate clears the environment the command line reads.
func isolate(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	for _, k := range []string{"SHOPFLOOR_URL", "SHOPFLOOR_TOKEN", "SHOPFLOOR_ORG"} {
		t.Setenv(k, "")
	}
	return home
}

// run executes the command line and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := cli.NewRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

// ok runs a command that must succeed.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, err := run(t, args...)
	if err != nil {
		t.Fatalf("shopfloor %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

// okJSON runs a command with -o json and decodes its output.
func okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := ok(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("shopfloor %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// recorder is a hub stand-in that records who called it.
type recorder struct {
	mu   sync.Mutex
	auth []string
	org  []string
}

func (r *recorder) serve(t *testing.T) string {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.org = append(r.org, req.Header.Get("X-Shopfloor-Org"))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"items":[]}`)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func (r *recorder) last() (string, string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.auth) == 0 {
		return "", "", 0
	}
	return r.auth[len(r.auth)-1], r.org[len(r.org)-1], len(r.auth)
}

func TestSettingsPrecedence(t *testing.T) {
	home := isolate(t)
	var fileHub, envHub, flagHub recorder
	fileURL, envURL, flagURL := fileHub.serve(t), envHub.serve(t), flagHub.serve(t)

	dir := filepath.Join(home, ".config", "shopfloor")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("url: %s\ntoken: file-token\norg: file-org\n", fileURL)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, "site", "list")
	if a, o, n := fileHub.last(); a != "Bearer file-token" || o != "file-org" || n != 1 {
		t.Fatalf("file settings: auth %q org %q calls %d", a, o, n)
	}

	t.Setenv("SHOPFLOOR_URL", envURL)
	t.Setenv("SHOPFLOOR_TOKEN", "env-token")
	ok(t, "site", "list")
	if a, o, _ := envHub.last(); a != "Bearer env-token" || o != "file-org" {
		t.Fatalf("env settings: auth %q org %q", a, o)
	}

	t.Setenv("SHOPFLOOR_ORG", "env-org")
	ok(t, "site", "list", "--url", flagURL, "--token", "flag-token")
	if a, o, _ := flagHub.last(); a != "Bearer flag-token" || o != "env-org" {
		t.Fatalf("flag settings: auth %q org %q", a, o)
	}
	ok(t, "site", "list", "--url", flagURL, "--org", "flag-org")
	if a, o, _ := flagHub.last(); a != "Bearer env-token" || o != "flag-org" {
		t.Fatalf("flag org: auth %q org %q", a, o)
	}

	// XDG_CONFIG_HOME wins over $HOME/.config.
	xdg := t.TempDir()
	if err := os.MkdirAll(filepath.Join(xdg, "shopfloor"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(xdg, "shopfloor", "config.yaml"), []byte("token: xdg-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CONFIG_HOME", xdg)
	t.Setenv("SHOPFLOOR_TOKEN", "")
	ok(t, "site", "list")
	if a, _, _ := envHub.last(); a != "Bearer xdg-token" {
		t.Fatalf("XDG config: auth %q", a)
	}
	if cli.ConfigPath() != filepath.Join(xdg, "shopfloor", "config.yaml") {
		t.Fatalf("ConfigPath %s", cli.ConfigPath())
	}

	// A misspelt key is reported with the file's name.
	if err := os.WriteFile(filepath.Join(xdg, "shopfloor", "config.yaml"), []byte("tokn: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "site", "list")
	if err == nil || !strings.Contains(err.Error(), "config.yaml") || !strings.Contains(err.Error(), "tokn") {
		t.Fatalf("bad config file: %v", err)
	}
}

func TestAdminCommands(t *testing.T) {
	isolate(t)
	h := newHub(t)
	t.Setenv("SHOPFLOOR_URL", h.url)
	t.Setenv("SHOPFLOOR_TOKEN", h.admin)

	var o registry.Org
	okJSON(t, &o, "org", "create", "ACME Manufacturing", "--id", "acme", "--retention-days", "14")
	if o.ID != "acme" || o.RetentionDays != 14 || o.Parent != "operator" {
		t.Fatalf("org %+v", o)
	}
	out := ok(t, "org", "list")
	if !strings.Contains(out, "acme") || !strings.Contains(out, "ACME Manufacturing") || !strings.Contains(out, "14d") {
		t.Fatalf("org list:\n%s", out)
	}
	ok(t, "org", "retention", "acme", "60")
	okJSON(t, &o, "org", "get", "acme")
	if o.RetentionDays != 60 {
		t.Fatalf("retention %d", o.RetentionDays)
	}
	if _, _, err := run(t, "org", "retention", "acme", "sixty"); err == nil || !strings.Contains(err.Error(), "DAYS") {
		t.Fatalf("bad days: %v", err)
	}

	// An admin token for the customer, made by the operator with --org.
	var tok registry.Token
	okJSON(t, &tok, "token", "create", "acme admin", "--role", "admin", "--org", "acme")
	if tok.Org != "acme" || !strings.HasPrefix(tok.Secret, "sft_") {
		t.Fatalf("token %+v", tok)
	}
	t.Setenv("SHOPFLOOR_TOKEN", tok.Secret)
	out = ok(t, "token", "create", "dashboard")
	if !strings.Contains(out, "sft_") || !strings.Contains(out, "viewer") || !strings.Contains(out, "shown only now") {
		t.Fatalf("token create:\n%s", out)
	}
	var tl struct{ Items []registry.Token }
	okJSON(t, &tl, "token", "list")
	if len(tl.Items) != 2 {
		t.Fatalf("tokens %+v", tl.Items)
	}
	var dash string
	for _, it := range tl.Items {
		if it.Secret != "" {
			t.Fatal("token list shows a secret")
		}
		if it.Name == "dashboard" {
			dash = it.ID
		}
	}
	if out := ok(t, "token", "delete", dash); !strings.Contains(out, dash) {
		t.Fatalf("token delete: %s", out)
	}

	var s registry.Site
	okJSON(t, &s, "site", "create", "Plant North", "--tag", "country=DE", "--tag", "hall=3")
	if s.ID != "plant-north" || s.Tags["hall"] != "3" {
		t.Fatalf("site %+v", s)
	}
	if out := ok(t, "site", "list"); !strings.Contains(out, "country=DE;hall=3") {
		t.Fatalf("site list:\n%s", out)
	}
	ok(t, "site", "get", "plant-north")
	ok(t, "site", "delete", "plant-north")
	_, _, err := run(t, "site", "get", "plant-north")
	var ae *cli.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "plant-north") {
		t.Fatalf("deleted site: %v", err)
	}
}

func TestDeviceCommands(t *testing.T) {
	isolate(t)
	h := newHub(t)
	ctx := context.Background()
	if _, err := h.reg.CreateSite(ctx, "operator", registry.Site{ID: "north", Name: "North"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SHOPFLOOR_URL", h.url)
	t.Setenv("SHOPFLOOR_TOKEN", h.admin)

	out := ok(t, "device", "create", "press-1", "--site", "north", "--template", "press", "--tag", "line=3")
	if !strings.Contains(out, "primary key:") || !strings.Contains(out, "north") {
		t.Fatalf("device create:\n%s", out)
	}
	for i := 2; i <= 4; i++ {
		ok(t, "device", "create", fmt.Sprintf("press-%d", i), "--template", "press")
	}
	ok(t, "device", "create", "cam-1", "--auth", "x509_self", "--thumbprint", strings.Repeat("0f", 32))
	h.pres.Connect("press-2")

	var page struct {
		Items []struct {
			ID        string `json:"id"`
			Connected bool   `json:"connected"`
		}
	}
	okJSON(t, &page, "device", "list", "--template", "press")
	if len(page.Items) != 4 || !page.Items[1].Connected || page.Items[0].Connected {
		t.Fatalf("list %+v", page.Items)
	}
	okJSON(t, &page, "device", "list", "--tag", "line:3")
	if len(page.Items) != 1 || page.Items[0].ID != "press-1" {
		t.Fatalf("tag list %+v", page.Items)
	}
	// One page with --limit tells how to get the next.
	out, errs, err := run(t, "device", "list", "--limit", "2")
	if err != nil || !strings.Contains(out, "cam-1") || strings.Contains(out, "press-2") || !strings.Contains(errs, "--after press-1") {
		t.Fatalf("limit: %v\n%s\n%s", err, out, errs)
	}
	if out := ok(t, "device", "list", "--after", "press-2"); !strings.Contains(out, "press-3") || strings.Contains(out, "press-1") {
		t.Fatalf("after:\n%s", out)
	}

	ok(t, "device", "disable", "press-2")
	d, _ := h.reg.GetDevice(ctx, "operator", "press-2")
	if !d.Disabled || h.pres.Connected("press-2") {
		t.Fatalf("disable: %+v connected=%v", d, h.pres.Connected("press-2"))
	}
	ok(t, "device", "enable", "press-2")
	ok(t, "device", "update", "press-2", "--site", "north", "--tag", "line=4")
	d, _ = h.reg.GetDevice(ctx, "operator", "press-2")
	if d.Disabled || d.Site != "north" || d.Tags["line"] != "4" {
		t.Fatalf("update: %+v", d)
	}
	ok(t, "device", "update", "press-2", "--site", "", "--clear-tags")
	d, _ = h.reg.GetDevice(ctx, "operator", "press-2")
	if d.Site != "" || len(d.Tags) != 0 {
		t.Fatalf("clear: %+v", d)
	}
	if _, _, err := run(t, "device", "update", "press-2"); err == nil || !strings.Contains(err.Error(), "nothing to change") {
		t.Fatalf("empty update: %v", err)
	}

	before, _ := h.reg.GetDevice(ctx, "operator", "press-1")
	ok(t, "device", "keys", "regenerate", "press-1", "primary")
	after, _ := h.reg.GetDevice(ctx, "operator", "press-1")
	if after.PrimaryKey == before.PrimaryKey || after.SecondaryKey != before.SecondaryKey {
		t.Fatal("primary key not regenerated")
	}
	if _, _, err := run(t, "device", "keys", "regenerate", "press-1", "third"); err == nil {
		t.Fatal("regenerate third key accepted")
	}

	out = ok(t, "device", "token", "press-1", "--ttl", "2h", "--host", "hub.example.com")
	if !strings.HasPrefix(out, "SharedAccessSignature sr=hub.example.com%2Fdevices%2Fpress-1") {
		t.Fatalf("token: %s", out)
	}
	out = ok(t, "device", "connection-string", "press-1", "--host", "hub.example.com")
	if strings.TrimSpace(out) != "HostName=hub.example.com;DeviceId=press-1;SharedAccessKey="+after.PrimaryKey {
		t.Fatalf("connection string: %s", out)
	}
	_, _, err = run(t, "device", "token", "cam-1")
	if err == nil || !strings.Contains(err.Error(), "sas") {
		t.Fatalf("x509 token: %v", err)
	}

	ok(t, "device", "delete", "press-4")
	_, _, err = run(t, "device", "get", "press-4")
	var ae *cli.APIError
	if !errors.As(err, &ae) || ae.Code != "not_found" {
		t.Fatalf("deleted device: %v", err)
	}
	// Duplicates are refused with the hub's message.
	_, _, err = run(t, "device", "create", "press-1")
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(err.Error(), "press-1") {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestDeviceImport(t *testing.T) {
	isolate(t)
	h := newHub(t)
	t.Setenv("SHOPFLOOR_URL", h.url)
	t.Setenv("SHOPFLOOR_TOKEN", h.admin)
	if _, err := h.reg.CreateDevice(context.Background(), "operator", registry.Device{ID: "dup-7"}); err != nil {
		t.Fatal(err)
	}

	// 1200 rows, with a quoted tag value spanning two lines (line 11), a
	// duplicate, a row with a broken tag and a row the CSV syntax breaks.
	var b strings.Builder
	b.WriteString("id,site,template,tags,auth,thumbprint\n")
	line := 2
	want := map[int]string{} // file line -> id of a failing row
	for i := 0; i < 1200; i++ {
		switch i {
		case 9:
			// Tag values cannot hold a line break, so the hub refuses the
			// row: its report line must be where the row starts.
			fmt.Fprintf(&b, "m-%04d,,press,\"note=two\nlines\",,\n", i)
			want[line] = fmt.Sprintf("m-%04d", i)
			line += 2
			continue
		case 600:
			b.WriteString("dup-7,,,,,\n")
			want[line] = "dup-7"
		case 1100:
			fmt.Fprintf(&b, "m-%04d,,,notakeyvalue,,\n", i)
			want[line] = fmt.Sprintf("m-%04d", i)
		case 1150:
			b.WriteString("m-bad,a\"b,,,,\n") // a bare quote: not CSV
			want[line] = ""
		default:
			fmt.Fprintf(&b, "m-%04d,,press,line=%d,,\n", i, i%4)
		}
		line++
	}
	path := filepath.Join(t.TempDir(), "devices.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, err := run(t, "device", "import", path, "--chunk", "500")
	if !errors.Is(err, cli.ErrRowsFailed) {
		t.Fatalf("import error %v\nstdout: %s\nstderr: %s", err, out, errs)
	}
	if !strings.Contains(errs, "importing devices") {
		t.Fatalf("no progress bar on stderr: %q", errs)
	}
	if h.imports != 3 {
		t.Fatalf("%d import requests, want 3 chunks", h.imports)
	}
	for ln, id := range want {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+%s\s`, ln, regexp.QuoteMeta(orDash(id)))).MatchString(out) {
			t.Errorf("failed row at line %d (%s) not reported:\n%s", ln, id, out)
		}
	}
	if !strings.Contains(out, "created 1196 devices, 4 rows failed") {
		t.Errorf("summary missing:\n%s", out)
	}
	t.Logf("report:\n%s", out)

	// JSON output: the merged report with file line numbers.
	var rep registry.ImportReport
	out2, _, err := run(t, "device", "import", path, "--chunk", "500", "-o", "json", "-q")
	if !errors.Is(err, cli.ErrRowsFailed) {
		t.Fatalf("second import: %v", err)
	}
	if err := json.Unmarshal([]byte(out2), &rep); err != nil {
		t.Fatalf("json report: %v\n%s", err, out2)
	}
	// The second run finds every device already there.
	if rep.Created != 0 || rep.Failed != 1200 {
		t.Fatalf("second import created %d failed %d", rep.Created, rep.Failed)
	}
	lines := map[int]bool{}
	for _, r := range rep.Rows {
		lines[r.Line] = true
		if r.ID == "m-0009" && r.Line != 11 {
			t.Errorf("multi-line row reported at line %d, want 11", r.Line)
		}
	}
	for ln := range want {
		if !lines[ln] {
			t.Errorf("line %d missing from report", ln)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func TestDeviceImportAllGood(t *testing.T) {
	isolate(t)
	h := newHub(t)
	t.Setenv("SHOPFLOOR_URL", h.url)
	t.Setenv("SHOPFLOOR_TOKEN", h.admin)
	path := filepath.Join(t.TempDir(), "ok.csv")
	if err := os.WriteFile(path, []byte("id,template\na-1,press\na-2,press\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := ok(t, "device", "import", path)
	if !strings.Contains(out, "created 2 devices, 0 rows failed") || strings.Contains(out, "LINE") {
		t.Fatalf("report:\n%s", out)
	}
	d, err := h.reg.GetDevice(context.Background(), "operator", "a-2")
	if err != nil || d.Template != "press" {
		t.Fatalf("imported %+v %v", d, err)
	}
	// A bad header is the hub's 400, before any row.
	if err := os.WriteFile(path, []byte("id,colour\nx,red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, "device", "import", path, "-q")
	var ae *cli.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "colour") {
		t.Fatalf("bad header: %v", err)
	}
	if _, _, err := run(t, "device", "import", filepath.Join(t.TempDir(), "missing.csv")); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestQueryCommands(t *testing.T) {
	isolate(t)
	h := newHub(t)
	t.Setenv("SHOPFLOOR_URL", h.url)
	t.Setenv("SHOPFLOOR_TOKEN", h.admin)
	if _, err := h.reg.CreateDevice(context.Background(), "operator", registry.Device{ID: "press-1"}); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	for i := 0; i < 4; i++ {
		h.tel.Add("operator", "press-1", "temperature", base.Add(time.Duration(i)*15*time.Second), 70+float64(i))
	}
	h.tel.Add("operator", "press-1", "mode", base, "auto")

	out := ok(t, "query", "telemetry", "press-1", "--names", "temperature", "--from", base.Format(time.RFC3339), "--to", "now", "--step", "30s", "--agg", "max")
	if !strings.Contains(out, "temperature  71") || !strings.Contains(out, "temperature  73") || strings.Contains(out, "temperature  70") {
		t.Fatalf("telemetry:\n%s", out)
	}
	call := h.tel.LastRange
	if call.Step != 30*time.Second || call.Agg != "max" || !call.From.Equal(base) || time.Since(call.To) > time.Minute {
		t.Fatalf("store asked %+v", call)
	}
	ok(t, "query", "telemetry", "press-1", "--from", "15m")
	if since := time.Since(h.tel.LastRange.From); since < 15*time.Minute || since > 16*time.Minute {
		t.Fatalf("--from 15m asked from %v", h.tel.LastRange.From)
	}
	var res struct {
		Series []struct {
			Field  string
			Points []struct{ T int64 }
		}
	}
	okJSON(t, &res, "query", "telemetry", "press-1", "--from", base.Format(time.RFC3339), "--step", "15")
	if len(res.Series) != 1 || len(res.Series[0].Points) != 4 || res.Series[0].Points[0].T != base.UnixMilli() {
		t.Fatalf("json telemetry %+v", res)
	}
	if _, _, err := run(t, "query", "telemetry", "press-1", "--from", "last tuesday"); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("bad --from: %v", err)
	}
	_, _, err := run(t, "query", "telemetry", "press-1", "--agg", "median")
	if err == nil || !strings.Contains(err.Error(), "agg") {
		t.Fatalf("bad agg: %v", err)
	}

	out = ok(t, "query", "latest", "press-1")
	if !strings.Contains(out, "mode") || !strings.Contains(out, "auto") || !strings.Contains(out, "temperature  73") {
		t.Fatalf("latest:\n%s", out)
	}

	out, errs, err := run(t, "query", "promql", `temperature{site="north"}`, "--org", "")
	if err != nil || !strings.Contains(out, `temperature{device="press-1", site="north"}  70.5`) || !strings.Contains(errs, "partial data") {
		t.Fatalf("promql instant: %v\n%s\n%s", err, out, errs)
	}
	out = ok(t, "query", "promql", "temperature", "--start", "1h", "--step", "60")
	if !strings.Contains(out, `temperature{device="press-1"}`) || !strings.Contains(out, "71") {
		t.Fatalf("promql range:\n%s", out)
	}
	h.mu.Lock()
	q := h.prom[len(h.prom)-1]
	h.mu.Unlock()
	if q.Get("query") != "temperature" || q.Get("step") != "60" || q.Get("start") == "" || q.Get("end") == "" {
		t.Fatalf("range query params %v", q)
	}
	_, _, err = run(t, "query", "promql", "bad(")
	if err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Fatalf("bad promql: %v", err)
	}
	if _, _, err := run(t, "query", "promql", "up", "--step", "1m"); err == nil || !strings.Contains(err.Error(), "--start") {
		t.Fatalf("--step without --start: %v", err)
	}
}

func TestErrorsForPeople(t *testing.T) {
	isolate(t)
	h := newHub(t)

	// Nothing listens: the hint names the setting to check.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	_, _, err = run(t, "device", "list", "--url", dead, "--token", "x")
	if !errors.Is(err, cli.ErrUnreachable) || !strings.Contains(err.Error(), "check --url or SHOPFLOOR_URL") {
		t.Fatalf("unreachable: %v", err)
	}
	if _, _, err := run(t, "device", "list", "--url", "localhost:8080"); err == nil || !strings.Contains(err.Error(), "--url") {
		t.Fatalf("bad url: %v", err)
	}

	_, _, err = run(t, "device", "list", "--url", h.url)
	if err == nil || !strings.Contains(err.Error(), "set --token or SHOPFLOOR_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
	_, _, err = run(t, "device", "list", "--url", h.url, "--token", "sft_wrong")
	if err == nil || !strings.Contains(err.Error(), "not valid") || !strings.Contains(err.Error(), "SHOPFLOOR_TOKEN") {
		t.Fatalf("bad token: %v", err)
	}

	viewer, err := h.reg.CreateToken(context.Background(), "operator", "v", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, "device", "create", "x", "--url", h.url, "--token", viewer.Secret)
	var ae *cli.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(err.Error(), "operator role") {
		t.Fatalf("viewer write: %v", err)
	}
	_, _, err = run(t, "device", "list", "--url", h.url, "--token", h.admin, "--org", "nowhere")
	if err == nil || !strings.Contains(err.Error(), "check --org or SHOPFLOOR_ORG") {
		t.Fatalf("unknown org: %v", err)
	}
	// Usage errors still show how to call the command.
	out, errs, err := run(t, "device", "get")
	if err == nil || !strings.Contains(out+errs, "Usage:") {
		t.Fatalf("missing argument: %v\n%s%s", err, out, errs)
	}
	if _, _, err := run(t, "site", "list", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "table or json") {
		t.Fatalf("bad output: %v", err)
	}
}

func TestClientDo(t *testing.T) {
	h := newHub(t)
	c, err := cli.NewClient(h.url+"/", h.admin, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var d struct {
		ID         string `json:"id"`
		PrimaryKey string `json:"primaryKey"`
	}
	if err := c.Do(ctx, "POST", "/api/v1/devices", map[string]string{"id": "c-1"}, &d); err != nil || d.ID != "c-1" || d.PrimaryKey == "" {
		t.Fatalf("create: %+v %v", d, err)
	}
	var raw []byte
	if err := c.Do(ctx, "GET", "/api/openapi.json", nil, &raw); err != nil || !bytes.Contains(raw, []byte(`"openapi"`)) {
		t.Fatalf("raw: %v", err)
	}
	var buf bytes.Buffer
	if err := c.Do(ctx, "GET", "/healthz", nil, &buf); err != nil || !strings.Contains(buf.String(), "ok") {
		t.Fatalf("writer: %v %q", err, buf.String())
	}
	if err := c.Do(ctx, "DELETE", "/api/v1/devices/c-1", nil, &d); err != nil {
		t.Fatalf("delete with out: %v", err)
	}
	err = c.Do(ctx, "DELETE", "/api/v1/devices/c-1", nil, nil)
	var ae *cli.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" {
		t.Fatalf("second delete: %v", err)
	}
}

func TestCompletion(t *testing.T) {
	isolate(t)
	out := ok(t, "completion", "bash")
	if !strings.Contains(out, "shopfloor") {
		t.Fatalf("completion:\n%.200s", out)
	}
	out = ok(t, "__complete", "token", "create", "x", "--role", "")
	if !strings.Contains(out, "operator") {
		t.Fatalf("role completion:\n%s", out)
	}
}
