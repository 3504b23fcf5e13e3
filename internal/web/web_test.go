package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/sqlite"
	"github.com/shopfloor/shopfloor/internal/web"
)

const adminSecret = "sft_web-test-admin-0123456789abcdef"

type fixture struct {
	reg *registry.Service
	op  registry.Org
	srv *httptest.Server
}

func newFixture(t testing.TB, opts ...func(*web.Deps)) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New(st, nil)
	op, _, err := reg.Bootstrap(ctx, adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	deps := web.Deps{Registry: reg}
	for _, o := range opts {
		o(&deps)
	}
	w, err := web.New(deps)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	return &fixture{reg: reg, op: op, srv: srv}
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    testing.TB
	c    *http.Client
	base string
}

func (f *fixture) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: f.srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (b *browser) post(path string, form url.Values) (int, string, string) {
	b.t.Helper()
	resp, err := b.c.PostForm(b.base+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%s", page)
	}
	return m[1]
}

func (b *browser) signIn(token string) string {
	b.t.Helper()
	_, page := b.get("/login")
	code, body, loc := b.post("/login", url.Values{"csrf": {csrfOf(b.t, page)}, "token": {token}})
	if code != http.StatusSeeOther || loc != "/" {
		b.t.Fatalf("sign-in answered %d %q:\n%s", code, loc, body)
	}
	code, home := b.get("/")
	if code != http.StatusOK {
		b.t.Fatalf("overview after sign-in: %d", code)
	}
	return csrfOf(b.t, home)
}

func TestSignInRequiredAndCookieFlags(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	code, _ := b.get("/devices")
	if code != http.StatusSeeOther {
		t.Fatalf("unauthenticated /devices answered %d, want a redirect to sign-in", code)
	}
	_, page := b.get("/login")
	code, body, _ := b.post("/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {"sft_wrong"}})
	if code != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Fatalf("a wrong token answered %d:\n%s", code, body)
	}
	code, _, _ = b.post("/login", url.Values{"csrf": {"forged"}, "token": {adminSecret}})
	if code != http.StatusForbidden {
		t.Fatalf("sign-in with a forged CSRF token answered %d, want 403", code)
	}
	_, page = b.get("/login")
	resp, err := b.c.PostForm(b.base+"/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {adminSecret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "sf_session" {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || strings.Contains(sc.Value, adminSecret) {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax and no token in it", sc)
	}
	for _, p := range []string{"/", "/devices", "/dashboards", "/templates", "/rules", "/connectivity"} {
		if code, body := b.get(p); code != http.StatusOK {
			t.Fatalf("GET %s answered %d:\n%s", p, code, body)
		}
	}
	_, home := b.get("/")
	code, _, _ = b.post("/logout", url.Values{"csrf": {csrfOf(t, home)}})
	if code != http.StatusSeeOther {
		t.Fatalf("sign-out answered %d", code)
	}
	if code, _ := b.get("/"); code != http.StatusSeeOther {
		t.Fatalf("after sign-out / answered %d, want a redirect to sign-in", code)
	}
}

func TestWritesNeedCSRFAndRole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.reg.CreateDevice(ctx, f.op.ID, registry.Device{ID: "press-1"}); err != nil {
		t.Fatal(err)
	}
	viewerTok, err := f.reg.CreateToken(ctx, f.op.ID, "viewer", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	admin := f.browser(t)
	csrf := admin.signIn(adminSecret)
	code, _, _ := admin.post("/devices/bulk", url.Values{"id": {"press-1"}, "action": {"disable"}})
	if code != http.StatusForbidden {
		t.Fatalf("a write without CSRF token answered %d, want 403", code)
	}
	if d, _ := f.reg.GetDevice(ctx, f.op.ID, "press-1"); d.Disabled {
		t.Fatal("the write without CSRF token changed the device")
	}
	code, body, _ := admin.post("/devices/bulk", url.Values{"csrf": {csrf}, "id": {"press-1"}, "action": {"tag"}, "value": {"line=3"}})
	if code != http.StatusOK || !strings.Contains(body, "1 of 1 devices changed") {
		t.Fatalf("bulk tag answered %d:\n%s", code, body)
	}
	if d, _ := f.reg.GetDevice(ctx, f.op.ID, "press-1"); d.Tags["line"] != "3" {
		t.Fatalf("bulk tag did not tag the device: %+v", d.Tags)
	}

	viewer := f.browser(t)
	vcsrf := viewer.signIn(viewerTok.Secret)
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/devices/bulk", url.Values{"id": {"press-1"}, "action": {"disable"}}},
		{"/devices/press-1/keys/primary/rotate", nil},
		{"/devices/press-1/connection-string", nil},
		{"/devices/import", url.Values{"csv": {"id\nnew-1\n"}}},
		{"/dashboards", url.Values{"name": {"x"}}},
	} {
		form := url.Values{"csrf": {vcsrf}}
		for k, v := range tc.form {
			form[k] = v
		}
		code, body, _ := viewer.post(tc.path, form)
		if code != http.StatusForbidden || !strings.Contains(body, "viewer role") {
			t.Fatalf("viewer POST %s answered %d:\n%s", tc.path, code, body)
		}
	}
	if d, _ := f.reg.GetDevice(ctx, f.op.ID, "press-1"); d.Disabled {
		t.Fatal("a viewer disabled the device")
	}
	if _, err := f.reg.GetDevice(ctx, f.op.ID, "new-1"); err == nil {
		t.Fatal("a viewer imported a device")
	}
	_, page := viewer.get("/devices/press-1")
	if strings.Contains(page, "Rotate primary key") {
		t.Fatal("the device page offers key rotation to a viewer")
	}
}

func TestImportReportsRowErrors(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	csrf := b.signIn(adminSecret)
	code, body, _ := b.post("/devices/import", url.Values{"csrf": {csrf}, "csv": {"id,site\ngood-1,\nbad id!,\ngood-2,nowhere\n"}})
	if code != http.StatusOK {
		t.Fatalf("import answered %d:\n%s", code, body)
	}
	if !strings.Contains(body, "1 created, 2 failed") || !strings.Contains(body, "nowhere") {
		t.Fatalf("import report lacks the per-row errors:\n%s", body)
	}
}

func TestOperatorSwitchesOrganization(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cust, err := f.reg.CreateOrg(ctx, f.op.ID, registry.Org{Name: "Acme Metal"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.CreateDevice(ctx, cust.ID, registry.Device{ID: "acme-press"}); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	csrf := b.signIn(adminSecret)
	if _, page := b.get("/devices"); strings.Contains(page, "acme-press") {
		t.Fatal("the operator organization lists a customer's device before switching")
	}
	code, _, _ := b.post("/org", url.Values{"csrf": {csrf}, "org": {cust.ID}})
	if code != http.StatusSeeOther {
		t.Fatalf("switching organization answered %d", code)
	}
	if _, page := b.get("/devices"); !strings.Contains(page, "acme-press") {
		t.Fatalf("after switching, the customer's device is not listed:\n%s", page)
	}
	// A customer token cannot switch to the operator organization.
	tok, err := f.reg.CreateToken(ctx, cust.ID, "c", registry.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	c := f.browser(t)
	ccsrf := c.signIn(tok.Secret)
	if code, _, _ := c.post("/org", url.Values{"csrf": {ccsrf}, "org": {f.op.ID}}); code != http.StatusNotFound {
		t.Fatalf("a customer switching to the operator organization answered %d, want 404", code)
	}
}

// seed creates n devices over 4 sites with one CSV import.
func seed(t testing.TB, f *fixture, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if _, err := f.reg.CreateSite(ctx, f.op.ID, registry.Site{ID: fmt.Sprintf("plant-%d", i), Name: fmt.Sprintf("Plant %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var sb strings.Builder
	sb.WriteString("id,site,template,tags\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "dev-%05d,plant-%d,cnc,line=%d\n", i, i%4, i%10)
	}
	rep, err := f.reg.ImportCSV(ctx, f.op.ID, strings.NewReader(sb.String()), nil)
	if err != nil || rep.Created != n {
		t.Fatalf("seed: %v, %d created", err, rep.Created)
	}
}

// BenchmarkPages measures each page with 10,000 devices in the registry
// (SQLite). The fleet summary is cached for 2 s, so the overview figure is a
// mix; BenchmarkFleetSummaryCold gives the uncached count.
func BenchmarkPages(b *testing.B) {
	// 50 rules, 100 alerts and 10 templates from in-memory stand-ins: the
	// figures are the console's own rendering cost.
	rs := &fakeRules{rules: map[string]web.Rule{}}
	inbox := &fakeInbox{alerts: map[string]*web.AlertDetail{}}
	ts := &fakeTemplates{docs: map[string][]byte{}}
	for i := range 100 {
		if i < 50 {
			id := fmt.Sprintf("r%02d", i)
			rs.rules[id] = web.Rule{ID: id, RuleSpec: web.RuleSpec{Name: "rule " + id, Condition: "temperature > 80", Severity: "major"}}
		}
		id := fmt.Sprintf("al%03d", i)
		inbox.alerts[id] = &web.AlertDetail{Alert: web.Alert{ID: id, Rule: "hot", Device: fmt.Sprintf("dev-%05d", i), Severity: "major", State: "open", At: time.Now()}}
		if i < 10 {
			ts.docs[fmt.Sprintf("t%d", i)] = []byte(fmt.Sprintf(`{"id":"t%d","telemetry":[{"name":"temperature","unit":"degC"}]}`, i))
		}
	}
	f := newFixture(b, func(d *web.Deps) { d.Rules, d.Inbox, d.Templates = rs, inbox, ts })
	seed(b, f, 10000)
	br := f.browser(b)
	br.signIn(adminSecret)
	for _, p := range []string{"/", "/devices", "/devices?site=plant-2&tag=line%3D3", "/devices?state=offline&q=99", "/devices/dev-04242", "/dashboards", "/templates", "/templates/t3", "/rules", "/alerts/al042", "/connectivity"} {
		b.Run(strings.ReplaceAll(p, "/", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if code, _ := br.get(p); code != http.StatusOK {
					b.Fatalf("GET %s: %d", p, code)
				}
			}
		})
	}
}

func BenchmarkFleetSummaryCold(b *testing.B) {
	f := newFixture(b)
	seed(b, f, 10000)
	br := f.browser(b)
	br.signIn(adminSecret)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		time.Sleep(2100 * time.Millisecond) // let the 2 s cache expire
		b.StartTimer()
		if code, _ := br.get("/fragments/fleet"); code != http.StatusOK {
			b.Fatal(code)
		}
	}
}

type anomalyStates map[string]web.Anomaly

func (a anomalyStates) DeviceAnomaly(_ context.Context, _, device string) (web.Anomaly, error) {
	return a[device], nil
}

// The device page shows the anomaly detector: learning with its progress,
// then the score, whether it alerts, and the fields behind it in words.
func TestDevicePageShowsAnomaly(t *testing.T) {
	states := anomalyStates{
		"pump-1": {Seen: true, Kind: "univariate", Fields: []string{"flow", "vibration"}, Warmup: 400, WarmupRemaining: 130},
		"pump-2": {Seen: true, Kind: "univariate", Fields: []string{"flow", "vibration"}, Warmup: 400, Warm: true, Score: 0.93, Alert: true,
			Contributions: []web.AnomalyContribution{{Field: "vibration", Share: 0.8, Reason: "jump"}, {Field: "flow", Share: 0.2, Reason: "shift"}}},
	}
	f := newFixture(t, func(d *web.Deps) { d.Anomalies = states })
	ctx := context.Background()
	for _, id := range []string{"pump-1", "pump-2", "pump-3"} {
		if _, err := f.reg.CreateDevice(ctx, f.op.ID, registry.Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	b := f.browser(t)
	b.signIn(adminSecret)
	for _, c := range []struct {
		id   string
		want []string
	}{
		{"pump-1", []string{"Learning this machine", `data-testid="anomaly-remaining">130<`, `<progress max="400" value="270"`}},
		{"pump-2", []string{`data-testid="anomaly-state">anomalous<`, `data-testid="anomaly-score">0.93<`, "<th scope=\"row\">vibration</th><td class=\"num\">80%</td><td>a sudden step between readings</td>", "the level moved", "univariate model over flow, vibration"}},
		{"pump-3", []string{"No update from this device has been scored"}},
	} {
		code, page := b.get("/devices/" + c.id)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", c.id, code)
		}
		for _, w := range c.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s: page lacks %q", c.id, w)
			}
		}
	}
}
