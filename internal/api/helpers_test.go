package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/api/apitest"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/sqlite"
)

// env is a hub API on a real loopback socket over the in-memory registry:
// an operator organization with customers acme and globex, and a token of
// every role in each.
type env struct {
	t        *testing.T
	reg      hubRegistry
	tel      *apitest.Telemetry
	pres     *apitest.Presence
	srv      *httptest.Server
	api      *api.Server
	doc      *docCheck
	now      time.Time
	opAdmin  string
	opViewer string
	acme     map[registry.Role]string
	globex   map[registry.Role]string
	promSeen chan promCall
	retained map[string]time.Duration
	mu       sync.Mutex
}

type promCall struct{ path, org string }

type envOption func(*api.Deps)

// hubRegistry is what the tests need of a registry: the API's interface and
// Bootstrap.
type hubRegistry interface {
	api.Registry
	Bootstrap(ctx context.Context, adminSecret string) (registry.Org, string, error)
}

type regMaker func(t *testing.T) hubRegistry

// forEachRegistry runs f against the in-memory registry and against the
// real registry service on SQLite, so the API is tested with the contract's
// implementation and not only with our fake.
func forEachRegistry(t *testing.T, f func(t *testing.T, mk regMaker)) {
	t.Run("fake", func(t *testing.T) {
		f(t, func(*testing.T) hubRegistry { return apitest.NewRegistry() })
	})
	t.Run("sqlite", func(t *testing.T) {
		f(t, func(t *testing.T) hubRegistry {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "registry.db"), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return registry.New(st, slog.New(slog.DiscardHandler))
		})
	})
}

// The real service satisfies the API's interface.
var _ api.Registry = (*registry.Service)(nil)

func newEnv(t *testing.T, mk regMaker, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, reg: mk(t), tel: apitest.NewTelemetry(), pres: apitest.NewPresence(),
		now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC), promSeen: make(chan promCall, 16), retained: map[string]time.Duration{}}
	_, secret, err := e.reg.Bootstrap(ctx, "sft_operator_admin")
	if err != nil {
		t.Fatal(err)
	}
	e.opAdmin = secret
	e.opViewer = e.token("operator", registry.RoleViewer)
	for _, org := range []string{"acme", "globex"} {
		if _, err := e.reg.CreateOrg(ctx, "operator", registry.Org{ID: org, Name: strings.ToUpper(org)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.CreateSite(ctx, org, registry.Site{ID: org + "-plant", Name: org + " plant"}); err != nil {
			t.Fatal(err)
		}
	}
	e.acme = map[registry.Role]string{}
	e.globex = map[registry.Role]string{}
	for _, role := range []registry.Role{registry.RoleViewer, registry.RoleOperator, registry.RoleAdmin} {
		e.acme[role] = e.token("acme", role)
		e.globex[role] = e.token("globex", role)
	}
	deps := api.Deps{
		Registry:  e.reg,
		Telemetry: e.tel,
		Presence:  e.pres,
		Prometheus: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			org, err := api.OrgFromRequest(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			e.promSeen <- promCall{path: r.URL.Path, org: org}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": []any{}}})
		}),
		// Like a WebSocket upgrader given a plain GET.
		MQTTWebSocket: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "mqtt endpoint: not a websocket handshake", http.StatusBadRequest)
		}),
		SASToken: func(host, deviceID, key string, expiry time.Time) (string, error) {
			return fmt.Sprintf("SharedAccessSignature sr=%s&sig=%s&se=%d", url.QueryEscape(host+"/devices/"+deviceID), url.QueryEscape(key[:8]), expiry.Unix()), nil
		},
		RetentionChanged: func(org string, d time.Duration) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.retained[org] = d
		},
		Now: func() time.Time { return e.now },
	}
	for _, o := range opts {
		o(&deps)
	}
	e.api, err = api.New(deps)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.srv.Close)
	e.doc = newDocCheck(t, e.api.OpenAPI())
	return e
}

func (e *env) token(org string, role registry.Role) string {
	e.t.Helper()
	tok, err := e.reg.CreateToken(context.Background(), org, string(role)+" token", role)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok.Secret
}

// reply is one HTTP response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request and checks the response against the OpenAPI document:
// its status must be documented for the operation and its body must
// validate against the documented schema. body is nil, a string or []byte
// (sent as is) or a value sent as JSON; headers come in name, value pairs.
func (e *env) do(method, path, token string, body any, headers ...string) reply {
	e.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/json"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: data}
	e.doc.checkResponse(e.t, method, req.URL.Path, r)
	// The Prometheus API has its own error envelope, /mqtt is the
	// WebSocket library's and /healthz answers load balancers.
	if r.status >= 400 && !strings.HasPrefix(req.URL.Path, "/prometheus/") && req.URL.Path != "/mqtt" && req.URL.Path != "/healthz" {
		checkErrorShape(e.t, r)
	}
	return r
}

// checkErrorShape requires exactly {"error":{"code":…,"message":…}}.
func checkErrorShape(t *testing.T, r reply) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error response has Content-Type %q, want application/json: %s", ct, r.body)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("status %d: body is not the JSON error shape (%v): %s", r.status, err, r.body)
	}
}

// wantError checks status and error code.
func wantError(t *testing.T, r reply, status int, code string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.decode(t, &e)
	if e.Error.Code != code {
		t.Fatalf("error code %q, want %q: %s", e.Error.Code, code, r.body)
	}
	return e.Error.Message
}

func wantStatus(t *testing.T, r reply, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

// docCheck validates requests' responses against the served document.
type docCheck struct {
	doc     map[string]any
	c       *jsonschema.Compiler
	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
}

const docURL = "mem:///openapi.json"

func newDocCheck(t *testing.T, raw []byte) *docCheck {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, inst); err != nil {
		t.Fatal(err)
	}
	return &docCheck{doc: doc, c: c, schemas: map[string]*jsonschema.Schema{}}
}

func pointer(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// schemaAt compiles the schema at a JSON pointer into the document.
func (d *docCheck) schemaAt(ptr string) (*jsonschema.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.schemas[ptr]; ok {
		return s, nil
	}
	s, err := d.c.Compile(docURL + "#" + (&url.URL{Fragment: ptr}).EscapedFragment())
	if err != nil {
		return nil, err
	}
	d.schemas[ptr] = s
	return s, nil
}

// validate checks a body against the schema at ptr.
func (d *docCheck) validate(ptr string, body []byte) error {
	s, err := d.schemaAt(ptr)
	if err != nil {
		return fmt.Errorf("compile %s: %w", ptr, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	return s.Validate(inst)
}

// operation finds the documented path template for a concrete path: the
// match with the fewest {wildcards} among those documenting method.
func (d *docCheck) operation(method, path string) (string, map[string]any) {
	paths, _ := d.doc["paths"].(map[string]any)
	best, bestWild := "", 1<<30
	var bestOp map[string]any
	segs := strings.Split(path, "/")
	for tmpl, item := range paths {
		ts := strings.Split(tmpl, "/")
		if len(ts) != len(segs) {
			continue
		}
		wild, ok := 0, true
		for i := range ts {
			if strings.HasPrefix(ts[i], "{") {
				wild++
			} else if ts[i] != segs[i] {
				ok = false
				break
			}
		}
		op, _ := item.(map[string]any)[strings.ToLower(method)].(map[string]any)
		if ok && op != nil && wild < bestWild {
			best, bestWild, bestOp = tmpl, wild, op
		}
	}
	return best, bestOp
}

func (d *docCheck) checkResponse(t *testing.T, method, path string, r reply) {
	t.Helper()
	tmpl, op := d.operation(method, path)
	if op == nil {
		// Only unmatched paths and methods may be undocumented.
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s answered %d but is not in the OpenAPI document", method, path, r.status)
		}
		return
	}
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(r.status)].(map[string]any)
	if !ok {
		t.Errorf("%s %s answered %d, which the OpenAPI document does not list for %s: %s", method, path, r.status, tmpl, r.body)
		return
	}
	cont, _ := resp["content"].(map[string]any)
	if len(cont) == 0 {
		if len(r.body) > 0 {
			t.Errorf("%s %s answered %d with a body the document does not describe: %s", method, path, r.status, r.body)
		}
		return
	}
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if _, ok := cont[mt]; !ok {
		t.Errorf("%s %s answered %d with Content-Type %q; the document lists %v", method, path, r.status, mt, keys(cont))
		return
	}
	if mt != "application/json" {
		return
	}
	ptr := pointer("paths", tmpl, strings.ToLower(method), "responses", strconv.Itoa(r.status), "content", mt, "schema")
	if err := d.validate(ptr, r.body); err != nil {
		t.Errorf("%s %s answered %d with a body that does not match the documented schema: %v\nbody: %s", method, path, r.status, err, r.body)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
