package web_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/users"
	"github.com/shopfloor/shopfloor/internal/web"
)

func openUsers(t *testing.T) *users.Service {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "u.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	u, err := users.New(context.Background(), users.Config{DB: db, Driver: "sqlite", Cost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (b *browser) signInUser(name, password string) (int, string) {
	b.t.Helper()
	_, page := b.get("/login")
	code, body, _ := b.post("/login", url.Values{"csrf": {csrfOf(b.t, page)}, "user": {name}, "password": {password}})
	return code, body
}

func TestPasswordSignInSurvivesRestart(t *testing.T) {
	us := openUsers(t)
	f := newFixture(t, func(d *web.Deps) { d.Users, d.Sessions = us, us })
	ctx := context.Background()
	u, err := us.Create(ctx, f.op.ID, "anna.k", "correct horse battery", registry.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	if code, body := b.signInUser("anna.k", "wrong password!"); code != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
		t.Fatalf("a wrong password answered %d:\n%s", code, body)
	}
	if code, body := b.signInUser("nobody", "correct horse battery"); code != http.StatusUnauthorized {
		t.Fatalf("an unknown user answered %d:\n%s", code, body)
	}
	if code, _ := b.signInUser("anna.k", "correct horse battery"); code != http.StatusSeeOther {
		t.Fatalf("sign-in answered %d", code)
	}
	code, home := b.get("/")
	if code != http.StatusOK || !strings.Contains(home, `class="role"`) || !strings.Contains(home, ">operator<") {
		t.Fatalf("overview after a password sign-in: %d", code)
	}

	// A second console on the same store (a restarted hub) knows the cookie.
	w2, err := web.New(web.Deps{Registry: f.reg, Users: us, Sessions: us})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(w2)
	defer srv2.Close()
	base, _ := url.Parse(f.srv.URL)
	var cookie *http.Cookie
	for _, c := range b.c.Jar.Cookies(base) {
		if c.Name == "sf_session" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie")
	}
	get2 := func() int {
		req, _ := http.NewRequest("GET", srv2.URL+"/devices", nil)
		req.AddCookie(cookie)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get2(); code != http.StatusOK {
		t.Fatalf("the restarted console answered %d for a signed-in cookie, want 200", code)
	}
	// Deleting the user signs the browser out everywhere.
	if err := us.Delete(ctx, f.op.ID, u.ID); err != nil {
		t.Fatal(err)
	}
	if code := get2(); code != http.StatusSeeOther {
		t.Fatalf("a deleted user's cookie answered %d, want a redirect to sign-in", code)
	}
	if code, _ := b.get("/"); code != http.StatusSeeOther {
		t.Fatalf("a deleted user's first console answered %d, want a redirect to sign-in", code)
	}
}

func TestPasswordGuessingIsThrottled(t *testing.T) {
	us := openUsers(t)
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	f := newFixture(t, func(d *web.Deps) { d.Users, d.Sessions, d.Now = us, us, func() time.Time { return now } })
	if _, err := us.Create(context.Background(), f.op.ID, "anna.k", "correct horse battery", registry.RoleViewer); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	for i := range 5 {
		if code, _ := b.signInUser("anna.k", fmt.Sprintf("guess number %d", i)); code != http.StatusUnauthorized {
			t.Fatalf("guess %d answered %d", i, code)
		}
	}
	// The sixth try is refused even with the right password.
	if code, body := b.signInUser("anna.k", "correct horse battery"); code != http.StatusTooManyRequests || !strings.Contains(body, "Too many wrong passwords") {
		t.Fatalf("after five wrong passwords the right one answered %d:\n%s", code, body)
	}
	// Another user from the same computer is not affected.
	if _, err := us.Create(context.Background(), f.op.ID, "bert", "another long password", registry.RoleViewer); err != nil {
		t.Fatal(err)
	}
	if code, _ := b.signInUser("bert", "another long password"); code != http.StatusSeeOther {
		t.Fatalf("another user answered %d", code)
	}
	now = now.Add(16 * time.Minute)
	b2 := f.browser(t)
	if code, _ := b2.signInUser("anna.k", "correct horse battery"); code != http.StatusSeeOther {
		t.Fatalf("after the window the right password answered %d", code)
	}
}

// Forty guesses at once: the throttle holds at five, because each try is
// counted before its password is checked.
func TestConcurrentGuessesHoldTheLimit(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "u.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// A realistic cost, so that checks overlap as they do on a real hub.
	us, err := users.New(context.Background(), users.Config{DB: db, Driver: "sqlite", Cost: 8})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(d *web.Deps) { d.Users, d.Sessions = us, us })
	if _, err := us.Create(context.Background(), f.op.ID, "anna.k", "correct horse battery", registry.RoleViewer); err != nil {
		t.Fatal(err)
	}
	type form struct{ cookie, csrf string }
	forms := make([]form, 40)
	for i := range forms {
		b := f.browser(t)
		_, page := b.get("/login")
		u, _ := url.Parse(f.srv.URL)
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == "sf_login" {
				forms[i] = form{cookie: c.String(), csrf: csrfOf(t, page)}
			}
		}
		if forms[i].cookie == "" {
			t.Fatal("the sign-in page set no sf_login cookie")
		}
	}
	codes := make([]int, len(forms))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, fm := range forms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := url.Values{"csrf": {fm.csrf}, "user": {"anna.k"}, "password": {fmt.Sprintf("guess number %d", i)}}.Encode()
			req, _ := http.NewRequest("POST", f.srv.URL+"/login", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Cookie", fm.cookie)
			<-start
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	checked, throttled := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
			throttled++
		default:
			t.Errorf("a guess answered %d", c)
		}
	}
	if checked != 5 || throttled != 35 {
		t.Fatalf("of 40 concurrent guesses %d had their password checked and %d were throttled; want 5 and 35", checked, throttled)
	}
}

// One password tried against many user names from one computer is
// throttled after 20 failures, whatever the names.
func TestOnePasswordAcrossManyNamesIsThrottled(t *testing.T) {
	us := openUsers(t)
	f := newFixture(t, func(d *web.Deps) { d.Users, d.Sessions = us, us })
	if _, err := us.Create(context.Background(), f.op.ID, "anna.k", "correct horse battery", registry.RoleViewer); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	for i := range 20 {
		if code, _ := b.signInUser(fmt.Sprintf("user-%d", i), "Summer2026!"); code != http.StatusUnauthorized {
			t.Fatalf("guess %d answered %d, want 401", i, code)
		}
	}
	code, body := b.signInUser("user-20", "Summer2026!")
	if code != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins from this computer") {
		t.Fatalf("the 21st name answered %d:\n%s", code, body)
	}
	// The address is throttled for every name, and for API tokens.
	if code, _ := b.signInUser("anna.k", "correct horse battery"); code != http.StatusTooManyRequests {
		t.Fatalf("a right password from the throttled address answered %d", code)
	}
	_, page := b.get("/login")
	if code, _, _ := b.post("/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {adminSecret}}); code != http.StatusTooManyRequests {
		t.Fatalf("a token sign-in from the throttled address answered %d", code)
	}
}

func TestPasswordSignInOffWithoutUsers(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	_, page := b.get("/login")
	if strings.Contains(page, `id="password"`) {
		t.Fatal("the sign-in page offers passwords on a hub without users")
	}
	if code, body := b.signInUser("anna", "correct horse battery"); code != http.StatusBadRequest || !strings.Contains(body, "not available") {
		t.Fatalf("a password sign-in without users answered %d:\n%s", code, body)
	}
}

// fakeRules compiles a condition by refusing "??" where it appears.
type fakeRules struct {
	mu    sync.Mutex
	rules map[string]web.Rule
}

func (f *fakeRules) check(spec web.RuleSpec) error {
	for i, line := range strings.Split(spec.Condition, "\n") {
		if c := strings.Index(line, "??"); c >= 0 {
			return fmt.Errorf("%w", &web.ConditionError{Line: i + 1, Column: c + 1, Message: `unexpected "?"`, Snippet: line + "\n" + strings.Repeat(" ", c) + "^"})
		}
	}
	if spec.Name == "" {
		return fmt.Errorf("a rule needs a name: %w", registry.ErrInvalid)
	}
	return nil
}
func (f *fakeRules) ListRules(context.Context, string) ([]web.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []web.Rule
	for _, r := range f.rules {
		out = append(out, r)
	}
	return out, nil
}
func (f *fakeRules) GetRule(_ context.Context, _, id string) (web.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rules[id]
	if !ok {
		return web.Rule{}, fmt.Errorf("rule %s: %w", id, registry.ErrNotFound)
	}
	return r, nil
}
func (f *fakeRules) CheckRule(_ context.Context, _ string, spec web.RuleSpec) error {
	return f.check(spec)
}
func (f *fakeRules) SaveRule(_ context.Context, _, id string, spec web.RuleSpec) (web.Rule, error) {
	if err := f.check(spec); err != nil {
		return web.Rule{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" {
		id = fmt.Sprintf("r%d", len(f.rules)+1)
	}
	f.rules[id] = web.Rule{ID: id, RuleSpec: spec}
	return f.rules[id], nil
}
func (f *fakeRules) DeleteRule(_ context.Context, _, id string) error {
	delete(f.rules, id)
	return nil
}
func (f *fakeRules) DryRunRule(_ context.Context, _ string, spec web.RuleSpec, from, to time.Time) (web.DryRun, error) {
	if err := f.check(spec); err != nil {
		return web.DryRun{}, err
	}
	return web.DryRun{From: from, To: to, Devices: 2, Evaluations: 40, Firings: 3, PerDevice: map[string]int{"press-1": 3}}, nil
}

type fakeInbox struct {
	mu     sync.Mutex
	alerts map[string]*web.AlertDetail
}

func (f *fakeInbox) ListAlerts(_ context.Context, _, state string, _ int) ([]web.Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []web.Alert
	for _, a := range f.alerts {
		if state == "all" || a.State == state || (state == "active" && a.State != "resolved") {
			out = append(out, a.Alert)
		}
	}
	return out, nil
}
func (f *fakeInbox) GetAlert(_ context.Context, _, id string) (web.AlertDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.alerts[id]
	if !ok {
		return web.AlertDetail{}, fmt.Errorf("alert %s: %w", id, registry.ErrNotFound)
	}
	return *a, nil
}
func (f *fakeInbox) set(id, state, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.alerts[id]
	if !ok {
		return fmt.Errorf("alert %s: %w", id, registry.ErrNotFound)
	}
	a.State = state
	if state == "acknowledged" {
		a.AckedBy = by
	}
	return nil
}
func (f *fakeInbox) Ack(_ context.Context, _, id, by, _ string) error {
	return f.set(id, "acknowledged", by)
}
func (f *fakeInbox) Resolve(_ context.Context, _, id, by, _ string) error {
	return f.set(id, "resolved", by)
}
func (f *fakeInbox) Note(_ context.Context, _, id, by, text string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alerts[id].Notes = append(f.alerts[id].Notes, web.AlertNote{By: by, Text: text, At: time.Now()})
	return nil
}

func TestRuleEditorAndInbox(t *testing.T) {
	rs := &fakeRules{rules: map[string]web.Rule{}}
	inbox := &fakeInbox{alerts: map[string]*web.AlertDetail{
		"al1": {Alert: web.Alert{ID: "al1", Rule: "hot", Device: "press-1", Severity: "major", State: "open", At: time.Now()}},
	}}
	f := newFixture(t, func(d *web.Deps) { d.Rules, d.Inbox = rs, inbox })
	b := f.browser(t)
	csrf := b.signIn(adminSecret)

	// Live validation answers a fragment with the position of the problem.
	code, frag, _ := b.post("/rules/validate", url.Values{"csrf": {csrf}, "condition": {"temperature > 80 and\nvibration ?? 3"}})
	if code != http.StatusOK || !strings.Contains(frag, "Line 2, column 11") || !strings.Contains(frag, "         ^") || strings.Contains(frag, "<html") {
		t.Fatalf("validate answered %d:\n%s", code, frag)
	}
	if _, frag, _ = b.post("/rules/validate", url.Values{"csrf": {csrf}, "condition": {"temperature > 80"}}); !strings.Contains(frag, "compiles") {
		t.Fatalf("a good condition:\n%s", frag)
	}
	// Without htmx the dry run answers the whole page with the result.
	code, page, _ := b.post("/rules/dry-run", url.Values{"csrf": {csrf}, "name": {"hot"}, "condition": {"temperature > 80"}, "range": {"6h"}})
	if code != http.StatusOK || !strings.Contains(page, "<strong>3</strong> firings") || !strings.Contains(page, "press-1") || !strings.Contains(page, `value="6h" selected`) {
		t.Fatalf("dry run answered %d:\n%s", code, page)
	}
	// A rule that does not compile is not saved and the editor keeps it.
	code, page, _ = b.post("/rules", url.Values{"csrf": {csrf}, "name": {"hot"}, "condition": {"temperature ?? 80"}})
	if code != http.StatusBadRequest || !strings.Contains(page, "temperature ?? 80") || !strings.Contains(page, "column 13") || len(rs.rules) != 0 {
		t.Fatalf("saving a broken rule answered %d (%d rules):\n%s", code, len(rs.rules), page)
	}
	if code, _, loc := b.post("/rules", url.Values{"csrf": {csrf}, "name": {"hot"}, "condition": {"temperature > 80"}, "severity": {"major"}}); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/rules") || len(rs.rules) != 1 {
		t.Fatalf("save answered %d %q", code, loc)
	}
	// Acknowledge from the inbox; the history names the signed-in token.
	if code, _, loc := b.post("/alerts/al1/ack", url.Values{"csrf": {csrf}, "back": {"inbox"}, "state": {"active"}}); code != http.StatusSeeOther || loc != "/rules?state=active#inbox" {
		t.Fatalf("ack answered %d %q", code, loc)
	}
	if a := inbox.alerts["al1"]; a.State != "acknowledged" || !strings.HasPrefix(a.AckedBy, "token:") {
		t.Fatalf("after ack: %+v", a)
	}
	if code, _, _ := b.post("/alerts/al1/note", url.Values{"csrf": {csrf}, "note": {"checked the coolant"}}); code != http.StatusSeeOther {
		t.Fatalf("note answered %d", code)
	}
	if _, page := b.get("/alerts/al1"); !strings.Contains(page, "checked the coolant") || !strings.Contains(page, "acknowledged") {
		t.Fatalf("alert page:\n%s", page)
	}

	// A viewer may validate but not save, acknowledge or note.
	viewerTok, err := f.reg.CreateToken(context.Background(), f.op.ID, "viewer", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	vb := f.browser(t)
	vcsrf := vb.signIn(viewerTok.Secret)
	if code, _, _ := vb.post("/rules/validate", url.Values{"csrf": {vcsrf}, "condition": {"temperature > 80"}}); code != http.StatusOK {
		t.Fatalf("a viewer's validation answered %d", code)
	}
	for _, p := range []string{"/rules", "/rules/r1", "/rules/r1/delete", "/alerts/al1/resolve", "/alerts/al1/note"} {
		if code, body, _ := vb.post(p, url.Values{"csrf": {vcsrf}, "name": {"x"}, "condition": {"a > 1"}, "note": {"n"}}); code != http.StatusForbidden || !strings.Contains(body, "viewer role") {
			t.Errorf("a viewer's POST %s answered %d, want 403", p, code)
		}
	}
	if inbox.alerts["al1"].State != "acknowledged" || len(inbox.alerts["al1"].Notes) != 1 {
		t.Fatal("a viewer changed an alert")
	}
	_, page = vb.get("/rules")
	if strings.Contains(page, "Create rule") || strings.Contains(page, ">Resolve<") {
		t.Fatal("a viewer sees write buttons on the rules page")
	}
}

// fakeTemplates stores documents by id, as JSON.
type fakeTemplates struct{ docs map[string][]byte }

func (f *fakeTemplates) info(doc []byte) (web.TemplateInfo, error) {
	var t struct {
		ID        string
		Telemetry []struct{ Name, Unit string }
	}
	if err := json.Unmarshal(doc, &t); err != nil || t.ID == "" {
		return web.TemplateInfo{}, fmt.Errorf("the template needs an id: %w", registry.ErrInvalid)
	}
	out := web.TemplateInfo{ID: t.ID}
	for _, x := range t.Telemetry {
		out.Fields = append(out.Fields, web.TemplateField{Kind: "telemetry", Name: x.Name, Unit: x.Unit})
	}
	return out, nil
}
func (f *fakeTemplates) ListTemplates(context.Context, string) ([]web.TemplateInfo, error) {
	var out []web.TemplateInfo
	for _, d := range f.docs {
		i, _ := f.info(d)
		out = append(out, i)
	}
	return out, nil
}
func (f *fakeTemplates) ExportTemplate(_ context.Context, _, id string) ([]byte, error) {
	d, ok := f.docs[id]
	if !ok {
		return nil, fmt.Errorf("template %s: %w", id, registry.ErrNotFound)
	}
	return d, nil
}
func (f *fakeTemplates) ImportTemplate(_ context.Context, _ string, doc []byte, replace bool) (web.TemplateInfo, error) {
	i, err := f.info(doc)
	if err != nil {
		return i, err
	}
	if _, ok := f.docs[i.ID]; ok && !replace {
		return i, fmt.Errorf("template %s exists: %w", i.ID, registry.ErrConflict)
	}
	f.docs[i.ID] = doc
	return i, nil
}
func (f *fakeTemplates) DeleteTemplate(_ context.Context, _, id string) error {
	delete(f.docs, id)
	return nil
}

func TestTemplatesImportEditExport(t *testing.T) {
	ts := &fakeTemplates{docs: map[string][]byte{}}
	f := newFixture(t, func(d *web.Deps) { d.Templates = ts })
	b := f.browser(t)
	csrf := b.signIn(adminSecret)
	doc := `{"id":"press","telemetry":[{"name":"temperature","schema":"double","unit":"degC"}]}`
	if code, body, loc := b.post("/templates/import", url.Values{"csrf": {csrf}, "doc": {doc}}); code != http.StatusSeeOther || loc != "/templates/press" {
		t.Fatalf("import answered %d %q:\n%s", code, loc, body)
	}
	code, body, _ := b.post("/templates/import", url.Values{"csrf": {csrf}, "doc": {doc}})
	if code != http.StatusBadRequest || !strings.Contains(body, "Replace a template with the same id") {
		t.Fatalf("importing a taken id answered %d:\n%s", code, body)
	}
	code, page := b.get("/templates/press")
	if code != http.StatusOK || !strings.Contains(page, "temperature") || !strings.Contains(page, "degC") || !strings.Contains(page, "&#34;id&#34;: &#34;press&#34;") {
		t.Fatalf("template page %d:\n%s", code, page)
	}
	// The editor refuses another id and broken JSON, and keeps the text.
	if code, body, _ := b.post("/templates/press", url.Values{"csrf": {csrf}, "doc": {`{"id":"drill"}`}}); code != http.StatusBadRequest || !strings.Contains(body, "document&#39;s id is drill") {
		t.Fatalf("saving another id answered %d:\n%s", code, body)
	}
	if code, body, _ := b.post("/templates/press", url.Values{"csrf": {csrf}, "doc": {`{"id": "press",`}}); code != http.StatusBadRequest || !strings.Contains(body, "not valid JSON") || !strings.Contains(body, `{&#34;id&#34;: &#34;press&#34;,`) {
		t.Fatalf("saving broken JSON answered %d:\n%s", code, body)
	}
	edited := `{"id":"press","telemetry":[{"name":"pressure","schema":"double","unit":"bar"}]}`
	if code, _, _ := b.post("/templates/press", url.Values{"csrf": {csrf}, "doc": {edited}}); code != http.StatusSeeOther {
		t.Fatalf("save answered %d", code)
	}
	resp, err := b.c.Get(b.base + "/templates/press/export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || !strings.Contains(resp.Header.Get("Content-Disposition"), "press.template.json") {
		t.Fatalf("export: %v %v", err, resp.Header)
	}
	if tel := got["telemetry"].([]any)[0].(map[string]any); tel["name"] != "pressure" {
		t.Fatalf("exported %v", got)
	}
}

func TestUsersPageIsForAdmins(t *testing.T) {
	us := openUsers(t)
	f := newFixture(t, func(d *web.Deps) { d.Users, d.Sessions = us, us })
	b := f.browser(t)
	csrf := b.signIn(adminSecret)
	if _, home := b.get("/"); !strings.Contains(home, `href="/users"`) {
		t.Fatal("an admin's navigation has no Users link")
	}
	form := url.Values{"csrf": {csrf}, "name": {"olga"}, "role": {"operator"}, "password": {"long enough password"}, "password2": {"long enough typo"}}
	if code, body, _ := b.post("/users", form); code != http.StatusBadRequest || !strings.Contains(body, "passwords differ") || !strings.Contains(body, `value="olga"`) {
		t.Fatalf("mismatched passwords answered %d:\n%s", code, body)
	}
	form.Set("password2", "long enough password")
	if code, _, loc := b.post("/users", form); code != http.StatusSeeOther || loc != "/users?added=olga" {
		t.Fatalf("add user answered %d %q", code, loc)
	}
	if code, body, _ := b.post("/users", form); code != http.StatusBadRequest || !strings.Contains(body, "taken") {
		t.Fatalf("a taken name answered %d:\n%s", code, body)
	}
	_, page := b.get("/users")
	if !strings.Contains(page, "olga") || !strings.Contains(page, "operator") {
		t.Fatalf("users page:\n%s", page)
	}
	// The new operator signs in, but may not manage users.
	ob := f.browser(t)
	if code, _ := ob.signInUser("olga", "long enough password"); code != http.StatusSeeOther {
		t.Fatalf("the added user's sign-in answered %d", code)
	}
	_, home := ob.get("/")
	if strings.Contains(home, `href="/users"`) {
		t.Fatal("an operator sees the Users link")
	}
	if code, _ := ob.get("/users"); code != http.StatusForbidden {
		t.Fatalf("an operator's GET /users answered %d, want 403", code)
	}
	if code, _, _ := ob.post("/users", url.Values{"csrf": {csrfOf(t, home)}, "name": {"mallory"}, "role": {"admin"}, "password": {"long enough password"}, "password2": {"long enough password"}}); code != http.StatusForbidden {
		t.Fatalf("an operator's POST /users answered %d, want 403", code)
	}
	list, _ := us.List(context.Background(), f.op.ID)
	if len(list) != 1 {
		t.Fatalf("users after an operator's try: %+v", list)
	}
	if code, _, _ := b.post("/users/"+list[0].ID+"/delete", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("delete answered %d", code)
	}
	if code, _ := ob.get("/"); code != http.StatusSeeOther {
		t.Fatalf("a deleted user's browser answered %d, want a redirect to sign-in", code)
	}
}

// A user changes their own password on the account page: the current one
// is checked, a mistyped or short new one is refused with the reason and
// changes nothing, and after the change the old password no longer signs
// in and the user's other browsers are signed out while this one stays.
func TestChangeOwnPassword(t *testing.T) {
	us := openUsers(t)
	f := newFixture(t, func(d *web.Deps) { d.Users, d.Sessions = us, us })
	if _, err := us.Create(context.Background(), f.op.ID, "piet", "first password 1", registry.RoleViewer); err != nil {
		t.Fatal(err)
	}
	b, other := f.browser(t), f.browser(t)
	for _, x := range []*browser{b, other} {
		if code, _ := x.signInUser("piet", "first password 1"); code != http.StatusSeeOther {
			t.Fatalf("sign-in answered %d", code)
		}
	}
	_, page := b.get("/account")
	if !strings.Contains(page, `data-testid="account-user">piet<`) || !strings.Contains(page, "Change your password") {
		t.Fatalf("account page:\n%s", page)
	}
	csrf := csrfOf(t, page)
	for _, c := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"current": {"wrong password!"}, "password": {"second password 2"}, "password2": {"second password 2"}}, "The current password is wrong"},
		{url.Values{"current": {"first password 1"}, "password": {"second password 2"}, "password2": {"second password 3"}}, "The two new passwords differ"},
		{url.Values{"current": {"first password 1"}, "password": {"short"}, "password2": {"short"}}, "A password needs 10 to 72 characters"},
	} {
		c.form.Set("csrf", csrf)
		code, body, _ := b.post("/account/password", c.form)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%v: answered %d, want 400 with %q:\n%s", c.form, code, c.want, body)
		}
	}
	if code, _ := other.get("/"); code != http.StatusOK {
		t.Fatal("a refused change signed the other browser out")
	}
	code, _, loc := b.post("/account/password", url.Values{"csrf": {csrf}, "current": {"first password 1"}, "password": {"second password 2"}, "password2": {"second password 2"}})
	if code != http.StatusSeeOther || loc != "/account?changed=1" {
		t.Fatalf("change answered %d %q", code, loc)
	}
	if code, page := b.get("/account?changed=1"); code != http.StatusOK || !strings.Contains(page, "Password changed") {
		t.Fatalf("after the change this browser got %d", code)
	}
	if code, _ := other.get("/"); code != http.StatusSeeOther {
		t.Fatalf("the other browser answered %d after the change, want a redirect to sign-in", code)
	}
	if code, _ := f.browser(t).signInUser("piet", "first password 1"); code != http.StatusUnauthorized {
		t.Fatalf("the old password signs in: %d", code)
	}
	if code, _ := f.browser(t).signInUser("piet", "second password 2"); code != http.StatusSeeOther {
		t.Fatalf("the new password: %d", code)
	}
	// A token sign-in has no password to change.
	tb := f.browser(t)
	tcsrf := tb.signIn(adminSecret)
	if _, page := tb.get("/account"); !strings.Contains(page, "signed in with an API token") {
		t.Fatalf("account page for a token:\n%s", page)
	}
	if code, _, _ := tb.post("/account/password", url.Values{"csrf": {tcsrf}, "current": {"x"}, "password": {"second password 2"}, "password2": {"second password 2"}}); code != http.StatusBadRequest {
		t.Fatalf("a token session changing a password answered %d", code)
	}
}
