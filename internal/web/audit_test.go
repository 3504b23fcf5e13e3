package web_test

import (
	"context"
	"database/sql"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/web"
)

func openAudit(t *testing.T) *audit.Service {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "a.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := audit.New(context.Background(), audit.Config{DB: db, Driver: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestConsoleChangesAreAudited: changes made in the console are in the
// audit log with the signed-in token or user, before and after and no
// secret; a viewer reads the log page; another organization does not see
// the entries.
func TestConsoleChangesAreAudited(t *testing.T) {
	us, log := openUsers(t), openAudit(t)
	f := newFixture(t, func(d *web.Deps) { d.Users, d.Sessions, d.Audit = us, us, log })
	ctx := context.Background()
	if _, err := f.reg.CreateDevice(ctx, f.op.ID, registry.Device{ID: "press-1"}); err != nil {
		t.Fatal(err)
	}
	adminTok, err := f.reg.CreateToken(ctx, f.op.ID, "console admin", registry.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	viewerTok, err := f.reg.CreateToken(ctx, f.op.ID, "viewer", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}

	admin := f.browser(t)
	csrf := admin.signIn(adminTok.Secret)
	if code, body, _ := admin.post("/devices/bulk", url.Values{"csrf": {csrf}, "id": {"press-1"}, "action": {"tag"}, "value": {"line=3"}}); code != http.StatusOK {
		t.Fatalf("bulk tag answered %d:\n%s", code, body)
	}
	if code, body, _ := admin.post("/devices/press-1/keys/primary/rotate", url.Values{"csrf": {csrf}}); code >= 400 {
		t.Fatalf("rotate answered %d:\n%s", code, body)
	}
	dev, err := f.reg.GetDevice(ctx, f.op.ID, "press-1")
	if err != nil {
		t.Fatal(err)
	}
	const pw1, pw2 = "first password 1", "second password 2"
	if code, _, _ := admin.post("/users", url.Values{"csrf": {csrf}, "name": {"piet"}, "role": {"operator"}, "password": {pw1}, "password2": {pw1}}); code != http.StatusSeeOther {
		t.Fatalf("add user answered %d", code)
	}
	piet := f.browser(t)
	if code, _ := piet.signInUser("piet", pw1); code != http.StatusSeeOther {
		t.Fatalf("sign-in answered %d", code)
	}
	_, page := piet.get("/account")
	if code, _, _ := piet.post("/account/password", url.Values{"csrf": {csrfOf(t, page)}, "current": {pw1}, "password": {pw2}, "password2": {pw2}}); code != http.StatusSeeOther {
		t.Fatalf("password change answered %d", code)
	}

	all, err := log.List(ctx, f.op.ID, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, kind, object, actor string }{
		{"updateDevice", "device", "press-1", "token:" + adminTok.ID},
		{"regenerateDeviceKey", "device", "press-1", "token:" + adminTok.ID},
		{"createUser", "user", "", "token:" + adminTok.ID},
		{"changePassword", "user", "", "user:piet"},
	}
	if len(all.Items) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(all.Items), len(want), all.Items)
	}
	for i, w := range want {
		e := all.Items[i]
		if e.Action != w.action || e.Kind != w.kind || (w.object != "" && e.Object != w.object) || e.Actor != w.actor || e.Via != audit.ViaConsole || e.ActorOrg != f.op.ID {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
	}
	if u := all.Items[0]; strings.Contains(string(u.Before), `"line"`) || !strings.Contains(string(u.After), `"line":"3"`) {
		t.Errorf("updateDevice before %s after %s", u.Before, u.After)
	}
	if g := all.Items[1]; !strings.Contains(string(g.Before), `"primaryKey":"[redacted]"`) || !strings.Contains(string(g.After), `"primaryKey":"[redacted]"`) {
		t.Errorf("regenerate before %s after %s", g.Before, g.After)
	}

	// A viewer reads the page; no secret is on it.
	viewer := f.browser(t)
	viewer.signIn(viewerTok.Secret)
	code, body := viewer.get("/audit")
	if code != http.StatusOK || !strings.Contains(body, `href="/audit" aria-current="page"`) {
		t.Fatalf("audit page answered %d:\n%s", code, body)
	}
	for _, s := range []string{"<td>updateDevice</td>", "<td>regenerateDeviceKey</td>", "[redacted]", "<td>console</td>"} {
		if !strings.Contains(body, s) {
			t.Errorf("audit page lacks %q", s)
		}
	}
	// Users are for admins, and so are their changes.
	for _, s := range []string{"<td>createUser</td>", "<td>changePassword</td>", "user:piet"} {
		if strings.Contains(body, s) {
			t.Errorf("a viewer's audit page shows %q", s)
		}
	}
	if _, body := admin.get("/audit"); !strings.Contains(body, "<td>createUser</td>") || !strings.Contains(body, "<td>changePassword</td>") || !strings.Contains(body, "user:piet") {
		t.Errorf("an admin's audit page lacks the user changes:\n%s", body)
	}
	for _, s := range []string{dev.PrimaryKey, dev.SecondaryKey, pw1, pw2, adminTok.Secret} {
		if strings.Contains(body, s) {
			t.Fatalf("audit page shows a secret %q", s)
		}
	}
	if _, body := admin.get("/audit?kind=user"); strings.Contains(body, "<td>updateDevice</td>") || !strings.Contains(body, "<td>changePassword</td>") {
		t.Errorf("kind=user filter:\n%s", body)
	}
	if code, body := viewer.get("/audit?from=yesterday"); code != http.StatusBadRequest || !strings.Contains(body, "From is not a date") {
		t.Errorf("a bad from answered %d", code)
	}
	if code, _ := viewer.get("/audit?after=nonsense!"); code != http.StatusBadRequest {
		t.Errorf("a bad cursor answered %d", code)
	}

	// Another organization sees none of it.
	cust, err := f.reg.CreateOrg(ctx, f.op.ID, registry.Org{ID: "acme", Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	custTok, err := f.reg.CreateToken(ctx, cust.ID, "acme viewer", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	other := f.browser(t)
	other.signIn(custTok.Secret)
	if code, body := other.get("/audit"); code != http.StatusOK || strings.Contains(body, "press-1") || !strings.Contains(body, "No changes recorded") {
		t.Fatalf("another organization's audit page (%d):\n%s", code, body)
	}
}

// The page shows 50 entries, newest first, and links to older ones.
func TestAuditPagePages(t *testing.T) {
	log := openAudit(t)
	f := newFixture(t, func(d *web.Deps) { d.Audit = log })
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		if _, err := log.Record(ctx, audit.Entry{Org: f.op.ID, Actor: "token:tok_x", Kind: "device", Object: fmt.Sprintf("dev-%02d", i), Action: "createDevice"}); err != nil {
			t.Fatal(err)
		}
	}
	b := f.browser(t)
	b.signIn(adminSecret)
	_, first := b.get("/audit?kind=device")
	if !strings.Contains(first, ">dev-59<") || strings.Contains(first, ">dev-09<") {
		t.Fatalf("first page is not the newest 50:\n%s", first)
	}
	m := regexp.MustCompile(`href="(/audit\?[^"]+)" rel="next"`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("no link to older changes:\n%s", first)
	}
	_, older := b.get(html.UnescapeString(m[1]))
	if !strings.Contains(older, ">dev-09<") || !strings.Contains(older, ">dev-00<") || strings.Contains(older, ">dev-10<") || strings.Contains(older, `rel="next"`) {
		t.Fatalf("older page:\n%s", older)
	}
}

func TestAuditPageWithoutLog(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signIn(adminSecret)
	if code, body := b.get("/audit"); code != http.StatusOK || !strings.Contains(body, "not enabled") {
		t.Fatalf("audit page without a log (%d):\n%s", code, body)
	}
}
