package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

type auditEntry struct {
	ID       string          `json:"id"`
	Org      string          `json:"org"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	ActorOrg string          `json:"actorOrg"`
	Via      string          `json:"via"`
	Kind     string          `json:"kind"`
	Object   string          `json:"object"`
	Action   string          `json:"action"`
	Before   json.RawMessage `json:"before"`
	After    json.RawMessage `json:"after"`
}

type auditPage struct {
	Items []auditEntry `json:"items"`
	Next  string       `json:"next"`
}

// TestAuditLog: changes through the API are recorded with who, what,
// before and after, without secrets; an organization reads only its own
// entries; filters, paging and the NDJSON export work. On SQLite, and on
// PostgreSQL when SHOPFLOOR_TEST_POSTGRES is set.
func TestAuditLog(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			o := testutil.Options{}
			if backend == "postgres" {
				o.Postgres = testutil.PostgresDSN(t)
			}
			testAuditLog(t, testutil.StartHub(t, o))
		})
	}
}

func testAuditLog(t *testing.T, hub *testutil.Hub) {
	op := hub.API()
	op.MustDo(t, 201, "POST", "/api/v1/orgs", map[string]any{"id": "acme", "name": "Acme"}, nil)
	opAcme := *op
	opAcme.Org = "acme"
	var admTok struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	opAcme.MustDo(t, 201, "POST", "/api/v1/tokens", map[string]any{"name": "acme admin", "role": "admin"}, &admTok)
	acme := &testutil.API{Base: hub.URL, Token: admTok.Token}
	viewer := hub.API().CreateOrgToken(t, "acme", "viewer")
	globex := hub.API().CreateOrgToken(t, "globex", "admin")
	actor := "token:" + admTok.ID
	secrets := []string{admTok.Token}

	// The changes.
	dev := acme.CreateDevice(t, "press-1", map[string]any{"tags": map[string]string{"line": "1"}})
	secrets = append(secrets, dev.PrimaryKey, dev.SecondaryKey)
	acme.MustDo(t, 200, "PATCH", "/api/v1/devices/press-1", map[string]any{"tags": map[string]string{"line": "2"}}, nil)
	acme.MustDo(t, 204, "DELETE", "/api/v1/devices/press-1", nil, nil)
	const hookSecret = "whsec-do-not-log-0123456789"
	var rule struct {
		ID string `json:"id"`
	}
	acme.MustDo(t, 201, "POST", "/api/v1/rules", map[string]any{
		"name": "press hot", "condition": "temperature > 80", "severity": "major",
		"actions": []map[string]any{{"type": "webhook", "url": "https://hooks.example.com/shopfloor", "secret": hookSecret}},
	}, &rule)
	secrets = append(secrets, hookSecret)
	acme.MustDo(t, 200, "PATCH", "/api/v1/rules/"+rule.ID, map[string]any{"severity": "critical"}, nil)
	var tok struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	acme.MustDo(t, 201, "POST", "/api/v1/tokens", map[string]any{"name": "line 2 dashboard", "role": "viewer"}, &tok)
	secrets = append(secrets, tok.Token)
	const pw1, pw2 = "first horse battery staple", "second horse battery staple"
	var user struct {
		ID string `json:"id"`
	}
	acme.MustDo(t, 201, "POST", "/api/v1/users", map[string]any{"name": "anna.k", "password": pw1, "role": "operator"}, &user)
	acme.MustDo(t, 204, "PUT", "/api/v1/users/"+user.ID+"/password", map[string]any{"password": pw2}, nil)
	secrets = append(secrets, pw1, pw2)
	// A SIM with its credentials, activated.
	const ki, opc = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
	iccid := luhn("894400000000000077")
	acme.MustDo(t, 201, "POST", "/api/v1/connectivity/sims", map[string]any{"iccid": iccid, "imsi": "001010000000077", "ki": ki, "opc": opc}, nil)
	acme.MustDo(t, 200, "POST", "/api/v1/connectivity/sims/"+iccid+"/state", map[string]any{"state": "ACTIVATED"}, nil)
	secrets = append(secrets, ki, opc)
	// The operator changes acme's retention: that is in acme's log.
	op.MustDo(t, 200, "PATCH", "/api/v1/orgs/acme", map[string]any{"retentionDays": 30}, nil)
	// Globex changes its own device of the same name.
	globex.CreateDevice(t, "press-1", nil)

	// An admin reads the whole log; nothing secret is in it.
	raw := getRaw(t, acme, "/api/v1/audit?limit=1000")
	for _, s := range secrets {
		if strings.Contains(raw, s) {
			t.Fatalf("the audit log holds a secret %q:\n%s", s, raw)
		}
	}
	var all auditPage
	if err := json.Unmarshal([]byte(raw), &all); err != nil {
		t.Fatal(err)
	}
	find := func(action, object string) auditEntry {
		t.Helper()
		for _, e := range all.Items {
			if e.Action == action && (object == "" || e.Object == object) {
				return e
			}
		}
		t.Fatalf("no %s of %s in the log: %s", action, object, raw)
		return auditEntry{}
	}
	field := func(doc json.RawMessage, path ...string) any {
		var v any
		if len(doc) == 0 {
			return nil
		}
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		return v
	}

	c := find("createDevice", "press-1")
	if c.Kind != "device" || c.Actor != actor || c.Org != "acme" || c.Via != "api" || c.Before != nil ||
		field(c.After, "id") != "press-1" || field(c.After, "primaryKey") != "[redacted]" {
		t.Errorf("createDevice entry: %+v before %s after %s", c, c.Before, c.After)
	}
	u := find("updateDevice", "press-1")
	if field(u.Before, "tags", "line") != "1" || field(u.After, "tags", "line") != "2" || u.Actor != actor {
		t.Errorf("updateDevice entry: before %s after %s", u.Before, u.After)
	}
	d := find("deleteDevice", "press-1")
	if field(d.Before, "id") != "press-1" || d.After != nil {
		t.Errorf("deleteDevice entry: before %s after %s", d.Before, d.After)
	}
	r := find("updateRule", rule.ID)
	if r.Kind != "rule" || field(r.Before, "severity") != "major" || field(r.After, "severity") != "critical" {
		t.Errorf("updateRule entry: %+v before %s after %s", r, r.Before, r.After)
	}
	if cr := find("createRule", rule.ID); !strings.Contains(string(cr.After), `"secret":"[redacted]"`) {
		t.Errorf("createRule entry does not show the webhook secret as redacted: %s", cr.After)
	}
	if tk := find("createToken", tok.ID); tk.Kind != "token" || field(tk.After, "name") != "line 2 dashboard" || field(tk.After, "token") != "[redacted]" {
		t.Errorf("createToken entry: %+v after %s", tk, tk.After)
	}
	if pw := find("setUserPassword", user.ID); pw.Kind != "user" || pw.Actor != actor || field(pw.After, "password") != "[redacted]" {
		t.Errorf("setUserPassword entry: %+v after %s", pw, pw.After)
	}
	// The operator's own entries (the organization, the first token) are
	// in the operator organization's log, with the operator as actor org.
	if tk := find("createToken", admTok.ID); tk.ActorOrg == "acme" || tk.Org != "acme" {
		t.Errorf("the operator's token creation for acme: %+v", tk)
	}

	if o := find("updateOrg", "acme"); o.Kind != "org" || o.ActorOrg == "acme" || field(o.After, "retentionDays") != float64(30) {
		t.Errorf("updateOrg entry: %+v before %s after %s", o, o.Before, o.After)
	}

	if st := find("setSIMState", iccid); st.Kind != "sim" || field(st.Before, "state") != "INVENTORY" || field(st.After, "state") != "ACTIVATED" {
		t.Errorf("setSIMState entry: %+v before %s after %s", st, st.Before, st.After)
	}
	if cs := find("createSIM", iccid); cs.Kind != "sim" || field(cs.After, "imsi") != "001010000000077" {
		t.Errorf("createSIM entry: %+v after %s", cs, cs.After)
	}

	// A viewer reads the log too, without the changes of what only admins
	// may see (tokens, users).
	var vp auditPage
	viewer.MustDo(t, 200, "GET", "/api/v1/audit?limit=1000", nil, &vp)
	hidden := 0
	for _, e := range all.Items {
		if e.Kind == "token" || e.Kind == "user" {
			hidden++
		}
	}
	if hidden < 4 || len(vp.Items) != len(all.Items)-hidden {
		t.Fatalf("a viewer reads %d entries, want %d of %d", len(vp.Items), len(all.Items)-hidden, len(all.Items))
	}
	for _, e := range vp.Items {
		if e.Kind == "token" || e.Kind == "user" {
			t.Fatalf("a viewer reads %+v", e)
		}
	}

	// Tenancy: globex sees only its own; the operator reads acme's with
	// ?org= and its own without.
	var g auditPage
	globex.MustDo(t, 200, "GET", "/api/v1/audit?limit=1000", nil, &g)
	for _, e := range g.Items {
		if e.Org != "globex" {
			t.Fatalf("globex reads an entry of %s: %+v", e.Org, e)
		}
	}
	// The operator's creation of globex's token, then globex's device.
	if len(g.Items) != 2 || g.Items[0].Action != "createToken" || g.Items[1].Action != "createDevice" || g.Items[1].Object != "press-1" {
		t.Fatalf("globex's log: %+v", g.Items)
	}
	if st := globex.Do(t, "GET", "/api/v1/audit?org=acme", nil, nil); st != 404 {
		t.Fatalf("globex naming acme: %d, want 404", st)
	}
	var viaOp auditPage
	opAcme.MustDo(t, 200, "GET", "/api/v1/audit?limit=1000", nil, &viaOp)
	if len(viaOp.Items) != len(all.Items) {
		t.Fatalf("the operator reads %d of acme's entries, acme %d", len(viaOp.Items), len(all.Items))
	}
	var own auditPage
	op.MustDo(t, 200, "GET", "/api/v1/audit?kind=org", nil, &own)
	if len(own.Items) == 0 || own.Items[0].Action != "createOrg" || own.Items[0].Object != "acme" {
		t.Fatalf("the operator's own log: %+v", own.Items)
	}

	// Filters.
	count := func(q string) int {
		t.Helper()
		var p auditPage
		acme.MustDo(t, 200, "GET", "/api/v1/audit?limit=1000&"+q, nil, &p)
		return len(p.Items)
	}
	from := url.QueryEscape(c.At.Format(time.RFC3339Nano))
	to := url.QueryEscape(d.At.Format(time.RFC3339Nano))
	for q, want := range map[string]int{
		"kind=device":                     3,
		"kind=sim":                        2,
		"kind=device&object=press-1":      3,
		"action=deleteDevice":             1,
		"kind=rule&object=" + rule.ID:     2,
		"actor=" + url.QueryEscape(actor): len(all.Items) - 3, // all but the operator's two token creations and retention change
		"actor=token:nobody":              0,
		"from=" + from + "&to=" + to:      2, // the create and the update
	} {
		if got := count(q); got != want {
			t.Errorf("?%s: %d entries, want %d", q, got, want)
		}
	}

	// Paging visits every entry once; newest first reverses the order.
	var ids []string
	for after := ""; ; {
		var p auditPage
		acme.MustDo(t, 200, "GET", "/api/v1/audit?limit=3&after="+after, nil, &p)
		for _, e := range p.Items {
			ids = append(ids, e.ID)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(ids) != len(all.Items) {
		t.Fatalf("paging gave %d entries, want %d", len(ids), len(all.Items))
	}
	var newest auditPage
	acme.MustDo(t, 200, "GET", "/api/v1/audit?order=newest&limit=1", nil, &newest)
	if len(newest.Items) != 1 || newest.Items[0].ID != ids[len(ids)-1] {
		t.Fatalf("newest first: %+v, want %s", newest.Items, ids[len(ids)-1])
	}
	for _, bad := range []string{"after=not-a-cursor", "after=%27%20OR%201%3D1", "limit=0", "from=yesterday", "order=random", "format=xml"} {
		if st := viewer.Do(t, "GET", "/api/v1/audit?"+bad, nil, nil); st != 400 {
			t.Errorf("?%s: status %d, want 400", bad, st)
		}
	}

	// NDJSON export: every entry, one per line, by both spellings.
	for _, path := range []string{"/api/v1/audit?format=ndjson", "/api/v1/audit/export"} {
		body, ct := getWithType(t, acme, path)
		if ct != "application/x-ndjson" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		n := 0
		for sc.Scan() {
			var e auditEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s line %d: %v", path, n+1, err)
			}
			if e.ID != ids[n] {
				t.Fatalf("%s line %d is %s, want %s", path, n+1, e.ID, ids[n])
			}
			n++
		}
		if n != len(ids) {
			t.Errorf("%s: %d lines, want %d", path, n, len(ids))
		}
	}
	body, _ := getWithType(t, viewer, "/api/v1/audit/export?kind=rule")
	if n := bytes.Count(body, []byte("\n")); n != 2 {
		t.Errorf("export of kind=rule: %d lines, want 2", n)
	}
}

func getRaw(t *testing.T, a *testutil.API, path string) string {
	t.Helper()
	b, _ := getWithType(t, a, path)
	return string(b)
}

func getWithType(t *testing.T, a *testutil.API, path string) ([]byte, string) {
	t.Helper()
	req, err := http.NewRequest("GET", a.Base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b, resp.Header.Get("Content-Type")
}
