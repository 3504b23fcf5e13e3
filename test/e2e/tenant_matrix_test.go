package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// The tenant matrix walks the hub's OpenAPI document, which the API builds
// from the same route table it serves, so a route added to the table is in
// the matrix without anyone adding it here. Every operation is sent, with
// the ids of another organization's objects, through every role of a
// customer organization, with and without the X-Shopfloor-Org and ?org=
// overrides, and through tokens of the operator organization; none may
// answer 2xx or show the other organization's data. The same operation on
// the caller's own objects must succeed where the role allows, so the
// matrix cannot pass because every request fails.

// openAPIOp is the part of an OpenAPI operation the matrix needs.
type openAPIOp struct {
	ID         string `json:"operationId"`
	Summary    string `json:"summary"`
	Role       string `json:"x-required-role"`
	Parameters []struct {
		Name     string `json:"name"`
		In       string `json:"in"`
		Required bool   `json:"required"`
		Example  any    `json:"example"`
	} `json:"parameters"`
	Responses   map[string]any `json:"responses"`
	RequestBody *struct {
		Content map[string]struct {
			Example any `json:"example"`
		} `json:"content"`
	} `json:"requestBody"`
}

type matrixOp struct {
	Method, Path string
	openAPIOp
}

// tenantFixture is one organization's objects, one of each kind a path
// parameter can name, and the strings only its data contain.
type tenantFixture struct {
	org     string
	ids     map[string]string // kind (see paramKinds) -> id
	seq     int               // numbers the objects the matrix's requests create
	secrets []string          // strings no other organization may ever see
}

// paramKinds maps a path up to a parameter (earlier parameters written as
// {name}) to the kind of object the parameter names. A route whose
// parameter is not listed fails the matrix: add the kind here and make
// tenantObjects create one.
var paramKinds = map[string]string{
	"/api/v1/actions/dead-letters/{id}":           "deadLetter",
	"/api/v1/alerts/{id}":                         "alert",
	"/api/v1/ca-certs/{id}":                       "caCert",
	"/api/v1/connectivity/applications/{name}":    "application",
	"/api/v1/connectivity/device-groups/{name}":   "deviceGroup",
	"/api/v1/connectivity/jobs/{id}":              "connJob",
	"/api/v1/connectivity/sims/{iccid}":           "sim",
	"/api/v1/connectivity/site-networks/{name}":   "siteNetwork",
	"/api/v1/connectivity/slices/{name}":          "slice",
	"/api/v1/connectivity/traffic-classes/{name}": "trafficClass",
	"/api/v1/devices/{id}":                        "device",
	"/api/v1/devices/{id}/keys/{which}":           "keyName",
	"/api/v1/devices/{id}/methods/{name}":         "methodName",
	"/api/v1/enrollment-groups/{id}":              "enrollmentGroup",
	"/api/v1/exports/{id}":                        "export",
	"/api/v1/jobs/{id}":                           "job",
	"/api/v1/orgs/{id}":                           "org",
	"/api/v1/rules/{id}":                          "rule",
	"/api/v1/sites/{id}":                          "site",
	"/api/v1/templates/{id}":                      "template",
	"/api/v1/tokens/{id}":                         "token",
	"/api/v1/users/{id}":                          "user",
}

// sharedKinds are parameter values that are not objects of an
// organization (a key slot, a method name): the same in every fixture.
// The secondary key is regenerated: the fixture's device stays connected
// with its primary key for the direct method the matrix calls.
var sharedKinds = map[string]string{"keyName": "secondary", "methodName": "reboot"}

// queryKinds fills documented query parameters that name objects, so a
// filter on another organization's object is tried too.
var queryKinds = map[string]string{"device": "device", "iccid": "sim", "slice": "slice", "rule": "rule", "site": "site", "template": "template"}

// fixedQuery are query values the matrix sets whatever the example says:
// a method call waits for the device at most a second; a range query
// covers the last hour.
var fixedQuery = map[string]string{"timeout": "1", "start": fmt.Sprint(time.Now().Add(-time.Hour).Unix()),
	"end": fmt.Sprint(time.Now().Unix()), "step": "60"}

// exclusiveQuery lists operations that take only one of the object
// filters queryKinds fills: the one the matrix sends.
var exclusiveQuery = map[string]string{"connectivityUsage": "device"}

// positiveExceptions are operations whose success on the caller's own
// objects is not a 2xx for a reason unrelated to tenancy; the status is
// still checked exactly.
var positiveExceptions = map[string]struct {
	status int
	why    string
}{
	// The fixture's device is connected but does not answer methods.
	"invokeMethod": {http.StatusGatewayTimeout, "the connected test device does not answer direct methods"},
	// A job over one device is finished before the matrix reaches it: the
	// 409 says the job was found.
	"cancelJob": {http.StatusConflict, "the fixture's job has already finished"},
}

// customerRefusals are operations a customer organization's token is
// refused whatever its role: only the operator organization may do them.
// /metrics spans every organization, so only the operator organization's
// tokens may read it (issue 12, case 12).
var customerRefusals = map[string]bool{"createOrg": true, "updateOrg": true, "metrics": true}

func roleRank(r string) int {
	return map[string]int{"viewer": 1, "operator": 2, "admin": 3}[r]
}

func TestTenantMatrix(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// A permanent refusal puts the rule's delivery in the dead letters
		// at once, so the fixture has a dead letter to name.
		http.Error(w, "refused by the test receiver", http.StatusBadRequest)
	}))
	defer hook.Close()
	hub := testutil.StartHub(t, testutil.Options{})
	op := hub.API()

	ops := loadOps(t, op)
	acme := newFixture(t, hub, op, "acme", hook.URL)
	globex := newFixture(t, hub, op, "globex", hook.URL)

	tokens := map[string]*testutil.API{}
	for _, role := range []string{"viewer", "operator", "admin"} {
		tokens["acme-"+role] = op.CreateOrgToken(t, "acme", role)
	}
	var vt struct {
		Token string `json:"token"`
	}
	op.MustDo(t, http.StatusCreated, "POST", "/api/v1/tokens", map[string]any{"name": "matrix-viewer", "role": "viewer"}, &vt)
	opViewer := &testutil.API{Base: hub.URL, Token: vt.Token}

	var orgs struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	op.MustDo(t, http.StatusOK, "GET", "/api/v1/orgs", nil, &orgs)
	if len(orgs.Items) == 0 {
		t.Fatal("the operator token sees no organization")
	}
	operatorOrg := orgs.Items[0].ID // the caller's own comes first

	m := &matrix{t: t, base: hub.URL, leakFrom: globex}
	// Operations that destroy their object run last, sub-resources before
	// the object they hang off, so every other request still finds its
	// object.
	sort.SliceStable(ops, func(i, j int) bool {
		di, dj := ops[i].Method == http.MethodDelete, ops[j].Method == http.MethodDelete
		if di != dj {
			return dj
		}
		if di {
			return strings.Count(ops[i].Path, "/") > strings.Count(ops[j].Path, "/")
		}
		return false
	})
	for _, o := range ops {
		if o.Role == "" {
			// Served without a token: not tenant data (health, the
			// OpenAPI document, MQTT over WebSocket, process metrics).
			st, _ := m.send(o, "")
			if st >= 500 && st != http.StatusServiceUnavailable {
				t.Errorf("%s %s without a token: %d", o.Method, o.Path, st)
			}
			continue
		}
		againstB, okB := m.request(o, globex)
		ownA, okA := m.request(o, acme)
		if !okA || !okB {
			continue
		}
		hasObject := strings.Contains(o.Path, "{")
		// A PUT that answers 201 creates or replaces by name: a name is
		// looked up in the caller's own organization, so another
		// organization's name creates the caller's own object of that name,
		// which is no breach as long as the victim's object is untouched
		// (checked below). The caller's copy is deleted again.
		upsert := o.Method == http.MethodPut && (o.Responses["201"] != nil || strings.Contains(strings.ToLower(o.Summary), "create"))
		before := m.snapshot(ops, o, op.Token, againstB)
		for _, role := range []string{"viewer", "operator", "admin"} {
			tok := tokens["acme-"+role]
			want := http.StatusNotFound
			if roleRank(role) < roleRank(o.Role) {
				want = http.StatusForbidden
			}
			if upsert && want != http.StatusForbidden {
				m.noLeak(o, "acme "+role+" naming globex's object (its own namespace)", tok.Token, againstB, nil)
				m.sendTo(http.MethodDelete, againstB.path, tokens["acme-admin"].Token, nil, "", nil, nil)
			} else if hasObject || want == http.StatusForbidden {
				m.expect(o, "acme "+role+" on globex's objects", tok.Token, againstB, nil, want)
			} else {
				m.noLeak(o, "acme "+role+" (its own collection, globex's ids in the query)", tok.Token, againstB, nil)
			}
			// A customer token may not name another organization.
			m.expect(o, "acme "+role+" with X-Shopfloor-Org: globex", tok.Token, ownA, header("globex"), http.StatusNotFound)
			m.expect(o, "acme "+role+" with ?org=globex", tok.Token, ownA.withOrg("globex"), nil, http.StatusNotFound)
		}
		// Nor its provider, the operator organization.
		m.expect(o, "acme admin with X-Shopfloor-Org: "+operatorOrg, tokens["acme-admin"].Token, ownA, header(operatorOrg), http.StatusNotFound)
		// The operator organization's own token, not naming a customer,
		// acts on the operator organization: a customer's objects are not
		// there. Organizations are the exception: the operator sees its
		// customers by design.
		if upsert {
			m.noLeak(o, "operator admin without override naming globex's object", op.Token, againstB, nil)
			m.sendTo(http.MethodDelete, againstB.path, op.Token, nil, "", nil, nil)
		} else if hasObject && !strings.HasPrefix(o.Path, "/api/v1/orgs/") {
			m.expect(o, "operator admin without override on globex's objects", op.Token, againstB, nil, http.StatusNotFound)
		} else if !hasObject {
			m.noLeak(o, "operator admin without override", op.Token, againstB, nil)
		}
		// The operator's viewer may read but not write a customer's objects.
		if roleRank(o.Role) > roleRank("viewer") {
			m.expect(o, "operator viewer with X-Shopfloor-Org: globex", opViewer.Token, againstB, header("globex"), http.StatusForbidden)
		}

		if after := m.snapshot(ops, o, op.Token, againstB); !bytes.Equal(before, after) {
			m.t.Errorf("%s %s (%s): globex's object changed while other callers were refused:\nbefore %s\nafter  %s", o.Method, againstB.path, o.ID, before, after)
		}

		// Positive controls: the same operation on the caller's own
		// objects succeeds where the role allows. A write runs once, with
		// the least role allowed, because it may change or delete its
		// object.
		for _, role := range []string{"viewer", "operator", "admin"} {
			if roleRank(role) < roleRank(o.Role) || (o.Method != http.MethodGet && role != o.Role) {
				continue
			}
			if customerRefusals[o.ID] {
				m.expect(o, "acme "+role+" (operator organization only)", tokens["acme-"+role].Token, ownA, nil, http.StatusForbidden)
				continue
			}
			m.succeed(o, "acme "+role+" on its own objects", tokens["acme-"+role].Token, ownA, nil)
		}
		// The operator organization reaches its customer's objects by
		// naming it, by header or query.
		if o.Method == http.MethodGet {
			m.succeed(o, "operator admin with ?org=globex", op.Token, againstB.withOrg("globex"), nil)
			if o.Role == "viewer" {
				m.succeed(o, "operator viewer with X-Shopfloor-Org: globex", opViewer.Token, againstB, header("globex"))
			}
		}
		if !(o.ID == "createOrg") { // an organization is created without naming one
			m.succeed(o, "operator admin with X-Shopfloor-Org: globex", op.Token, againstB, header("globex"))
		}
	}
	m.retryDeferred()
	t.Logf("tenant matrix: %d operations, %d requests (%d expected refusals, %d leak checks of own collections, %d positive controls)",
		len(ops), m.requests, m.refusals, m.leakChecks, m.positives)
	if m.positives == 0 || m.refusals == 0 {
		t.Fatal("the matrix exercised nothing")
	}
}

type matrix struct {
	t                               testing.TB
	base                            string
	leakFrom                        *tenantFixture
	requests                        int
	refusals, leakChecks, positives int
	lastSent                        string
	// deferred are deletions of the caller's own objects refused with 409
	// because another object still uses them; they are tried again once
	// the rest is deleted.
	deferred []deferredDelete
}

// filled is one operation with its parameters filled from one fixture.
type filled struct {
	path        string
	query       url.Values
	contentType string
	// body makes the request body; each call names new objects, so that a
	// create is not refused as a duplicate of an earlier request's.
	body func() []byte
}

func (f filled) withOrg(org string) filled {
	q := url.Values{}
	for k, v := range f.query {
		q[k] = v
	}
	q.Set("org", org)
	f.query = q
	return f
}

func header(org string) http.Header { return http.Header{"X-Shopfloor-Org": {org}} }

// request fills o's path and query parameters with fx's objects; false
// (and a failed test) when a parameter cannot be filled.
func (m *matrix) request(o matrixOp, fx *tenantFixture) (filled, bool) {
	path := o.Path
	for _, w := range wildcards(o.Path) {
		prefix := o.Path[:strings.Index(o.Path, w)+len(w)]
		kind, ok := paramKinds[prefix]
		if !ok {
			m.t.Errorf("%s %s: the tenant matrix does not know what path parameter %s names; add %q to paramKinds and create such an object in newFixture", o.Method, o.Path, w, prefix)
			return filled{}, false
		}
		id := sharedKinds[kind]
		if id == "" {
			id = fx.ids[kind]
		}
		if id == "" {
			m.t.Errorf("%s %s: the fixture of %s has no %s to fill %s with", o.Method, o.Path, fx.org, kind, w)
			return filled{}, false
		}
		path = strings.Replace(path, w, url.PathEscape(id), 1)
	}
	q := url.Values{}
	for _, p := range o.Parameters {
		if p.In != "query" || p.Name == "org" {
			continue
		}
		switch {
		case fixedQuery[p.Name] != "":
			q.Set(p.Name, fixedQuery[p.Name])
		case exclusiveQuery[o.ID] != "" && queryKinds[p.Name] != "" && exclusiveQuery[o.ID] != p.Name:
		case queryKinds[p.Name] != "" && fx.ids[queryKinds[p.Name]] != "":
			q.Set(p.Name, fx.ids[queryKinds[p.Name]])
		case p.Example != nil:
			q.Set(p.Name, fmt.Sprint(p.Example))
		case p.Required:
			m.t.Errorf("%s %s: required query parameter %q has no example to send", o.Method, o.Path, p.Name)
			return filled{}, false
		}
	}
	f := filled{path: path, query: q}
	if o.RequestBody != nil {
		ct := "application/json"
		ex, ok := o.RequestBody.Content[ct]
		if !ok {
			for t, c := range o.RequestBody.Content {
				ct, ex = t, c
			}
		}
		f.contentType = ct
		f.body = func() []byte { return fx.body(o.ID, ct, ex.Example) }
	}
	return f, true
}

func wildcards(p string) []string {
	var out []string
	for {
		i := strings.Index(p, "{")
		if i < 0 {
			return out
		}
		j := strings.Index(p[i:], "}")
		out = append(out, p[i:i+j+1])
		p = p[i+j+1:]
	}
}

func (m *matrix) send(o matrixOp, token string) (int, []byte) {
	return m.sendTo(o.Method, o.Path, token, url.Values{}, "", nil, nil)
}

func (m *matrix) sendTo(method, path, token string, q url.Values, contentType string, body []byte, h http.Header) (int, []byte) {
	m.t.Helper()
	m.requests++
	u := m.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		m.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (m *matrix) do(o matrixOp, token string, f filled, h http.Header) (int, []byte, string) {
	var body []byte
	if f.body != nil {
		body = f.body()
	}
	st, raw := m.sendTo(o.Method, f.path, token, f.query, f.contentType, body, h)
	where := o.Method + " " + f.path
	if len(f.query) > 0 {
		where += "?" + f.query.Encode()
	}
	// What the request itself named may come back (a 404 names the id
	// asked for); checkLeak ignores it.
	m.lastSent = where + string(body) + fmt.Sprint(h)
	return st, raw, where
}

// expect sends a request that must be refused with want, and whose answer
// shows nothing of the other organization.
func (m *matrix) expect(o matrixOp, who, token string, f filled, h http.Header, want int) {
	m.t.Helper()
	m.refusals++
	st, raw, where := m.do(o, token, f, h)
	if st != want {
		m.t.Errorf("%s (%s) as %s: %d, want %d; body %.300s", where, o.ID, who, st, want, raw)
	}
	m.checkLeak(o, who, where, f, h, raw)
}

// noLeak sends a request acting on the caller's own organization: whatever
// it answers, it must not be a server error nor show the other
// organization's data.
func (m *matrix) noLeak(o matrixOp, who, token string, f filled, h http.Header) {
	m.t.Helper()
	m.leakChecks++
	st, raw, where := m.do(o, token, f, h)
	if st >= 500 {
		m.t.Errorf("%s (%s) as %s: %d; body %.300s", where, o.ID, who, st, raw)
	}
	m.checkLeak(o, who, where, f, h, raw)
}

// deferredDelete is a deletion refused because the object is still in use.
type deferredDelete struct {
	o      matrixOp
	who    string
	token  string
	f      filled
	h      http.Header
	status int
	body   []byte
}

// retryDeferred repeats refused deletions while any of them succeeds (the
// objects that used theirs are gone by then); what is still refused fails.
func (m *matrix) retryDeferred() {
	for progress := true; progress && len(m.deferred) > 0; {
		progress = false
		rest := m.deferred[:0]
		for _, d := range m.deferred {
			st, raw, _ := m.do(d.o, d.token, d.f, d.h)
			if st >= 200 && st <= 299 {
				progress = true
				continue
			}
			d.status, d.body = st, raw
			rest = append(rest, d)
		}
		m.deferred = rest
	}
	for _, d := range m.deferred {
		m.t.Errorf("%s %s (%s) as %s: %d, want 2xx, also after everything else was deleted; body %.300s", d.o.Method, d.f.path, d.o.ID, d.who, d.status, d.body)
	}
}

// snapshot reads, through the operator organization, the victim's object
// a changing operation acts on: the GET of the operation's path or of the
// nearest object above it (the device of a key regeneration).
func (m *matrix) snapshot(ops []matrixOp, o matrixOp, opToken string, f filled) []byte {
	if o.Method == http.MethodGet {
		return nil
	}
	pattern, path := o.Path, f.path
	for strings.HasSuffix(pattern, "}") {
		for _, g := range ops {
			if g.Method == http.MethodGet && g.Path == pattern && g.Role != "" {
				st, raw := m.sendTo(http.MethodGet, path, opToken, nil, "", nil, header(m.leakFrom.org))
				return append([]byte(fmt.Sprintf("%d ", st)), raw...)
			}
		}
		// Up one object: drop the last {param} and the literal before it.
		for range 2 {
			pattern, path = pattern[:strings.LastIndex(pattern, "/")], path[:strings.LastIndex(path, "/")]
		}
		if !strings.HasSuffix(pattern, "}") && strings.Contains(pattern, "{") {
			pattern, path = pattern[:strings.LastIndex(pattern, "/")], path[:strings.LastIndex(path, "/")]
		}
	}
	return nil
}

// succeed sends a request the caller is allowed to make on objects it may
// reach: it must answer 2xx (or the status positiveExceptions names).
func (m *matrix) succeed(o matrixOp, who, token string, f filled, h http.Header) {
	m.t.Helper()
	m.positives++
	st, raw, where := m.do(o, token, f, h)
	if ex, ok := positiveExceptions[o.ID]; ok {
		if st != ex.status {
			m.t.Errorf("%s (%s) as %s: %d, want %d (%s); body %.300s", where, o.ID, who, st, ex.status, ex.why, raw)
		}
		return
	}
	if st == http.StatusConflict && o.Method == http.MethodDelete {
		m.deferred = append(m.deferred, deferredDelete{o: o, who: who, token: token, f: f, h: h})
		return
	}
	if st < 200 || st > 299 {
		m.t.Errorf("%s (%s) as %s: %d, want 2xx; body %.300s", where, o.ID, who, st, raw)
	}
}

// checkLeak fails when an answer to a caller of another organization
// contains a secret of the victim's fixture, or the id of one of its
// objects that the request did not itself name.
func (m *matrix) checkLeak(o matrixOp, who, where string, _ filled, _ http.Header, raw []byte) {
	m.t.Helper()
	sent := m.lastSent
	for _, s := range m.leakFrom.secrets {
		if strings.Contains(string(raw), s) && !strings.Contains(sent, s) {
			m.t.Errorf("%s (%s) as %s shows globex's %q: %.300s", where, o.ID, who, s, raw)
		}
	}
}

func loadOps(t testing.TB, a *testutil.API) []matrixOp {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]openAPIOp `json:"paths"`
	}
	a.MustDo(t, http.StatusOK, "GET", "/api/openapi.json", nil, &doc)
	var ops []matrixOp
	for p, byMethod := range doc.Paths {
		for method, o := range byMethod {
			ops = append(ops, matrixOp{Method: strings.ToUpper(method), Path: p, openAPIOp: o})
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	if len(ops) < 50 {
		t.Fatalf("the OpenAPI document lists only %d operations", len(ops))
	}
	return ops
}

// body is the request body the matrix sends to operation id: its
// documented example, with references to other objects pointed at the
// fixture's own (so that the request is valid on the fixture's
// organization) and the ids of objects it creates made unique.
func (fx *tenantFixture) body(id, contentType string, example any) []byte {
	fx.seq++
	n := fx.seq
	uniq := fmt.Sprintf("%s-new-%d", fx.org, n)
	var v any
	switch id {
	case "importDevices":
		return []byte("id\n" + uniq + "\n")
	case "updateSIM":
		v = map[string]any{"label": fx.org + " modem"}
	case "createSIM":
		v = map[string]any{"iccid": iccid(fx.org, 100+n), "imsi": imsi(fx.org, 100+n), "label": fx.org + " spare"}
	case "importSIMs":
		v = map[string]any{"sims": []any{map[string]any{"iccid": iccid(fx.org, 500+n), "imsi": imsi(fx.org, 500+n)}}}
	case "bulkSIMState":
		v = map[string]any{"iccids": []string{fx.ids["bulkSIM"]}, "state": "TEST_READY"}
	case "setSIMState":
		v = map[string]any{"state": "TEST_READY"}
	case "importCDRs":
		now := time.Now().UTC().Truncate(time.Hour)
		v = map[string]any{"records": []any{map[string]any{"id": uniq, "imsi": imsi(fx.org, 1),
			"start": now.Add(-time.Hour), "end": now, "upBytes": 100, "downBytes": 10}}}
	// Objects the matrix creates do not use the fixture's site, so that
	// deleting the site succeeds.
	case "createDevice":
		v = map[string]any{"id": uniq}
	case "createSite":
		v = map[string]any{"id": uniq, "name": "new site"}
	case "createEnrollmentGroup":
		v = map[string]any{"id": uniq}
	case "createCACert":
		v = map[string]any{"id": uniq, "name": "new CA", "pem": selfSignedCA(uniq)}
	case "createTemplate", "importTemplate", "replaceTemplate":
		tid := uniq
		if id == "replaceTemplate" {
			tid = fx.ids["template"]
		}
		v = map[string]any{"id": tid, "name": "template", "telemetry": []any{map[string]any{"name": "temperature", "schema": "double"}}}
	case "createRule", "replaceRule":
		v = fx.rule(fx.org + " rule " + id)
	case "dryRunRule":
		v = map[string]any{"rule": fx.rule("dry run"), "from": time.Now().Add(-time.Hour), "to": time.Now()}
	case "dryRunStoredRule":
		v = map[string]any{"from": time.Now().Add(-time.Hour), "to": time.Now()}
	case "createExport":
		v = map[string]any{"name": uniq, "type": "webhook", "url": "https://historian.example.com/ingest"}
	case "createJob":
		v = map[string]any{"type": "desired", "desired": map[string]any{"setpoint": 1}, "query": map[string]any{"site": fx.ids["site"]}}
	case "createOrg":
		v = map[string]any{"id": uniq, "name": "sub"}
	case "createToken":
		v = map[string]any{"name": uniq, "role": "viewer"}
	case "createUser":
		v = map[string]any{"name": uniq, "password": "correct horse battery", "role": "viewer"}
	case "updateDevice":
		// Not the example's "disabled": the device stays connected for the
		// direct method.
		v = map[string]any{"tags": map[string]string{"line": "4"}}
	case "putTrafficClass", "putDeviceGroup", "putSlice", "putSiteNetwork", "putApplication":
		v = fx.connBody(id)
	default:
		v = example
	}
	b, _ := json.Marshal(v)
	return b
}

func (fx *tenantFixture) rule(name string) map[string]any {
	return map[string]any{"name": name, "condition": "temperature > 50", "severity": "major",
		"scope":   map[string]any{"site": fx.ids["site"]},
		"actions": []any{map[string]any{"type": "webhook", "url": fx.ids["hook"]}}}
}

func (fx *tenantFixture) connBody(id string) map[string]any {
	switch id {
	case "putTrafficClass":
		return map[string]any{"name": fx.ids["trafficClass"], "qci": 9, "arp": 6, "pdb": 300, "pelr": 6}
	case "putDeviceGroup":
		return map[string]any{"name": fx.ids["deviceGroup"], "site": fx.ids["site"], "devices": []string{fx.ids["device"]},
			"ipDomain":  map[string]any{"dnn": "internet", "subnet": "172.250.0.0/16", "mtu": 1460},
			"mbrUplink": 4000000, "mbrDownlink": 20000000, "trafficClass": fx.ids["trafficClass"]}
	case "putSlice":
		return map[string]any{"name": fx.ids["slice"], "site": fx.ids["site"], "sst": 1, "sd": "010203",
			"deviceGroups": []string{fx.ids["deviceGroup"]}, "defaultBehavior": "ALLOW-PUBLIC",
			"filters": []any{map[string]any{"application": fx.ids["application"], "priority": 10, "action": "allow"}}}
	case "putSiteNetwork":
		return map[string]any{"site": fx.ids["site"], "mcc": "001", "mnc": "01",
			"smallCells": []any{map[string]any{"id": "gnb-1", "tac": 1, "address": "10.0.0.10", "enabled": true}}}
	case "putApplication":
		return map[string]any{"name": fx.ids["application"], "prefix": "10.20.0.0/24",
			"endpoints": []any{map[string]any{"port": 443, "protocol": "TCP"}}}
	}
	return nil
}

// iccid and imsi are distinct per organization and index; an ICCID ends
// in its Luhn check digit.
func iccid(org string, n int) string {
	base := map[string]string{"acme": "894450000000001", "globex": "894450000000002"}[org]
	s := fmt.Sprintf("%s%03d", base, n)
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return s + fmt.Sprint((10-sum%10)%10)
}

func imsi(org string, n int) string {
	base := map[string]string{"acme": "00101000000", "globex": "00101000001"}[org]
	return fmt.Sprintf("%s%04d", base, n)
}

func selfSignedCA(cn string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// newFixture creates, in customer organization org, one object of every
// kind paramKinds names, each carrying a marker only this organization's
// data contain.
func newFixture(t testing.TB, hub *testutil.Hub, op *testutil.API, org, hookURL string) *tenantFixture {
	t.Helper()
	marker := org + "-private-7f3a"
	fx := &tenantFixture{org: org, ids: map[string]string{"org": org, "hook": hookURL}, secrets: []string{marker}}
	admin := op.CreateOrgToken(t, org, "admin")
	fx.secrets = append(fx.secrets, admin.Token)
	var created map[string]any
	mk := func(kind, path string, body any) string {
		t.Helper()
		created = nil
		if st := admin.Do(t, "POST", path, body, &created); st != http.StatusCreated && st != http.StatusAccepted {
			t.Fatalf("create %s: %d %v", path, st, created)
		}
		id, _ := created["id"].(string)
		if sim, ok := created["iccid"].(string); ok && id == "" {
			id = sim
		}
		if id == "" {
			t.Fatalf("%s: no id in %v", path, created)
		}
		fx.ids[kind] = id
		return id
	}
	put := func(kind, path, name string, body any) {
		t.Helper()
		fx.ids[kind] = name
		var out any
		if st := admin.Do(t, "PUT", path+"/"+name, body, &out); st != http.StatusCreated && st != http.StatusOK {
			t.Fatalf("put %s/%s: %d %v", path, name, st, out)
		}
	}

	mk("site", "/api/v1/sites", map[string]any{"id": org + "-site", "name": marker + " site"})
	dev := admin.CreateDevice(t, org+"-device", map[string]any{"site": org + "-site", "tags": map[string]string{"owner": marker}})
	fx.ids["device"] = dev.ID
	fx.secrets = append(fx.secrets, dev.ID, dev.PrimaryKey, dev.SecondaryKey)
	mk("template", "/api/v1/templates", map[string]any{"id": org + "-template", "name": marker + " template",
		"telemetry": []any{map[string]any{"name": "temperature", "schema": "double"}}})
	mk("enrollmentGroup", "/api/v1/enrollment-groups", map[string]any{"id": org + "-group", "site": org + "-site"})
	mk("caCert", "/api/v1/ca-certs", map[string]any{"id": org + "-ca", "name": marker + " CA", "pem": selfSignedCA(marker)})
	mk("export", "/api/v1/exports", map[string]any{"name": org + "-export", "type": "webhook", "url": "https://historian.example.com/" + marker})
	mk("token", "/api/v1/tokens", map[string]any{"name": marker + " spare", "role": "viewer"})
	mk("user", "/api/v1/users", map[string]any{"name": org + ".user", "password": "correct horse battery", "role": "viewer"})
	mk("rule", "/api/v1/rules", fx.rule(marker+" rule"))
	mk("job", "/api/v1/jobs", map[string]any{"type": "desired", "desired": map[string]any{"setpoint": 2}, "query": map[string]any{"site": org + "-site"}})

	// Connectivity: a SIM and the named network objects.
	mk("sim", "/api/v1/connectivity/sims", map[string]any{"iccid": iccid(org, 1), "imsi": imsi(org, 1), "label": marker})
	mk("bulkSIM", "/api/v1/connectivity/sims", map[string]any{"iccid": iccid(org, 3), "imsi": imsi(org, 3)})
	var job map[string]any
	admin.MustDo(t, http.StatusAccepted, "POST", "/api/v1/connectivity/sims/import",
		map[string]any{"sims": []any{map[string]any{"iccid": iccid(org, 2), "imsi": imsi(org, 2), "label": marker}}}, &job)
	fx.ids["connJob"], _ = job["id"].(string)
	fx.ids["trafficClass"], fx.ids["deviceGroup"], fx.ids["slice"], fx.ids["application"] = org+"-tc", org+"-dg", org+"-slice", org+"-app"
	put("siteNetwork", "/api/v1/connectivity/site-networks", org+"-site", fx.connBody("putSiteNetwork"))
	for _, k := range []struct{ kind, path, id string }{
		{"trafficClass", "/api/v1/connectivity/traffic-classes", "putTrafficClass"},
		{"application", "/api/v1/connectivity/applications", "putApplication"},
		{"deviceGroup", "/api/v1/connectivity/device-groups", "putDeviceGroup"},
		{"slice", "/api/v1/connectivity/slices", "putSlice"},
	} {
		put(k.kind, k.path, fx.ids[k.kind], fx.connBody(k.id))
	}

	// Data: the device connects and sends a hot reading, which fires the
	// rule (an alert) whose webhook the test receiver refuses (a dead
	// letter).
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	t.Cleanup(func() { c.Disconnect(50) })
	// Listening for direct methods without answering: a method call
	// reaches the device and times out (504).
	if tok := c.Subscribe("$iothub/methods/POST/#", 0, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to direct methods: %v", tok.Error())
	}
	testutil.Publish(t, c, dev.ID, map[string]any{"temperature": 90.5, "state": marker})
	var page struct {
		Items []map[string]any `json:"items"`
	}
	testutil.Eventually(t, 20*time.Second, org+"'s alert and dead letter", func() bool {
		admin.MustDo(t, http.StatusOK, "GET", "/api/v1/alerts", nil, &page)
		if len(page.Items) > 0 {
			fx.ids["alert"], _ = page.Items[0]["id"].(string)
		}
		admin.MustDo(t, http.StatusOK, "GET", "/api/v1/actions/dead-letters", nil, &page)
		if len(page.Items) > 0 {
			fx.ids["deadLetter"], _ = page.Items[0]["id"].(string)
		}
		return fx.ids["alert"] != "" && fx.ids["deadLetter"] != ""
	})
	for _, k := range []string{"alert", "deadLetter", "job", "connJob", "token", "user", "export", "rule"} {
		fx.secrets = append(fx.secrets, fx.ids[k])
	}
	return fx
}
