package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// Audit records and lists the audit log; *audit.Service implements it.
// When nil, nothing is recorded and /api/v1/audit answers 503.
type Audit interface {
	Record(ctx context.Context, e audit.Entry) (audit.Entry, error)
	List(ctx context.Context, org string, f audit.Filter) (audit.Page, error)
}

// CLIUserAgent starts the User-Agent of the shopfloor command line; the
// audit log records its changes as made through the CLI.
const CLIUserAgent = "shopfloor-cli"

// maxAuditBody bounds what is kept of a request or response body for the
// audit log; a bigger one is summarised, not stored.
const maxAuditBody = 64 << 10

// auditSpec is how the changes a route makes are recorded: derived from the
// route table, so a new route is audited without anyone remembering to.
type auditSpec struct {
	kind  string // object kind: the singular of the collection, e.g. device
	param string // the path wildcard naming the object; "" for a create
	// state is the GET route that shows the object, read before and after
	// the change; nil when the API has none.
	state *route
	// create: a POST on a collection; the object id comes from the answer.
	create bool
	// own: the route changes the object state shows itself (not an action
	// on it), so a DELETE leaves nothing after.
	own bool
	// role is the least role that may read the entry: the role that reads
	// the object (its view, else its collection's list), else the route's.
	role registry.Role
}

// noAudit lists the routes that take a body but change nothing.
var noAudit = map[string]bool{"dryRunRule": true, "dryRunStoredRule": true}

// auditSpecs derives the audit of every route that changes something: every
// authenticated method other than GET.
func (s *Server) auditSpecs() map[*route]*auditSpec {
	gets := map[string]*route{}
	for _, rt := range s.routes {
		if rt.Method == http.MethodGet {
			gets[rt.Pattern] = rt
		}
	}
	out := map[*route]*auditSpec{}
	for _, rt := range s.routes {
		if rt.Method == http.MethodGet || rt.Role == "" || noAudit[rt.ID] {
			continue
		}
		segs := strings.Split(strings.TrimPrefix(rt.Pattern, "/api/v1/"), "/")
		sp := &auditSpec{}
		wild := -1
		for i, sg := range segs {
			if strings.HasPrefix(sg, "{") {
				wild = i
				break
			}
		}
		if wild > 0 {
			sp.kind = singular(segs[wild-1])
			sp.param = strings.Trim(segs[wild], "{}.")
			objPattern := "/api/v1/" + strings.Join(segs[:wild+1], "/")
			sp.own = objPattern == rt.Pattern
			// A sub-resource with its own view (a twin, a message queue)
			// is shown by it; anything else by the object's view.
			if g := gets[rt.Pattern]; g != nil && !sp.own && rt.Method != http.MethodPost {
				sp.state, sp.own = g, true
			} else {
				sp.state = gets[objPattern]
			}
		} else {
			last := segs[len(segs)-1]
			sp.kind = singular(last)
			if rt.Method == http.MethodPost && len(segs) >= 2 && (last == "import" || last == "state") {
				sp.kind = singular(segs[len(segs)-2])
			} else if rt.Method == http.MethodPost {
				sp.create = true
				for p, g := range gets {
					if strings.HasPrefix(p, rt.Pattern+"/{") && !strings.Contains(strings.TrimPrefix(p, rt.Pattern+"/"), "/") {
						sp.state = g
					}
				}
			}
		}
		sp.role = rt.Role
		if sp.state != nil {
			sp.role = sp.state.Role
		} else if wild := strings.Index(rt.Pattern, "/{"); wild > 0 && gets[rt.Pattern[:wild]] != nil {
			sp.role = gets[rt.Pattern[:wild]].Role
		} else if g := gets[rt.Pattern]; g != nil && rt.Method == http.MethodPost {
			sp.role = g.Role
		}
		out[rt] = sp
	}
	return out
}

// singular turns a collection's path segment into an object kind.
func singular(seg string) string {
	switch {
	case strings.HasSuffix(seg, "sses"), strings.HasSuffix(seg, "ches"):
		return strings.TrimSuffix(seg, "es")
	case strings.HasSuffix(seg, "s"):
		return strings.TrimSuffix(seg, "s")
	}
	return seg
}

// audited runs rt's handler and records the change it made, when it
// succeeded. A failure to record is logged; the change itself stands.
func (s *Server) audited(rt *route, sp *auditSpec, w http.ResponseWriter, r *http.Request) error {
	p := principalOf(r)
	org := orgOf(r)
	id := ""
	if sp.param != "" {
		id = r.PathValue(sp.param)
	}
	var before json.RawMessage
	if sp.state != nil && !hasRole(p, sp.state.Role) {
		sp = &auditSpec{kind: sp.kind, param: sp.param, create: sp.create, own: sp.own, role: sp.role}
	}
	if sp.state != nil && id != "" {
		before = s.snapshot(r, sp.state, sp.param, id)
	}
	reqBody := &capped{max: maxAuditBody}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(r.Body, reqBody), r.Body}
	}
	tw := &teeWriter{ResponseWriter: w, body: capped{max: maxAuditBody}}
	if err := rt.handle(tw, r); err != nil {
		return err
	}
	if tw.status == 0 {
		tw.status = http.StatusOK
	}
	if tw.status < 200 || tw.status > 299 {
		return nil
	}
	resp := tw.body.json(tw.Header().Get("Content-Type"))
	if sp.create && id == "" {
		id = idOf(resp)
	}
	var after json.RawMessage
	switch {
	case r.Method == http.MethodDelete && sp.own:
	case tw.status == http.StatusAccepted:
		// Accepted for later (a scheduled SIM state change, a job): the
		// object has not changed yet; what will happen is the answer.
		after = resp
	case sp.state != nil && id != "":
		after = s.snapshot(r, sp.state, sp.param, id)
	}
	if after == nil && !(r.Method == http.MethodDelete && sp.own) {
		after = resp
		if after == nil {
			after = reqBody.json(r.Header.Get("Content-Type"))
		}
	}
	e := audit.Entry{Org: org, Actor: "token:" + p.TokenID, ActorOrg: p.Org, Via: audit.ViaAPI,
		Kind: sp.kind, Object: id, Action: rt.ID, Before: before, After: after,
		Detail: r.Method + " " + r.URL.Path, Role: string(sp.role)}
	if sp.kind == "org" && sp.own && id != "" {
		// A change of an organization is in its own log, so a customer
		// sees what the operator changed about it.
		e.Org = id
	}
	if strings.HasPrefix(r.UserAgent(), CLIUserAgent) {
		e.Via = audit.ViaCLI
	}
	// The change is made: record it even if the client has gone away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if _, err := s.deps.Audit.Record(ctx, e); err != nil {
		s.log.Error("the change was made but could not be written to the audit log", "action", rt.ID, "org", org, "object", id, "err", err)
	}
	return nil
}

// snapshot reads the object through its GET route, as the caller; nil when
// that fails (the object does not exist, or the caller may not read it).
func (s *Server) snapshot(r *http.Request, get *route, param, id string) json.RawMessage {
	req := r.Clone(r.Context())
	req.Method, req.Body, req.ContentLength = http.MethodGet, http.NoBody, 0
	u := *r.URL
	q := u.Query()
	u.RawQuery = ""
	if o := q.Get("org"); o != "" {
		u.RawQuery = "org=" + o
	}
	req.URL = &u
	for _, m := range wildcardRE.FindAllStringSubmatch(get.Pattern, -1) {
		v := r.PathValue(m[1])
		if m[1] == param {
			v = id
		}
		req.SetPathValue(m[1], v)
	}
	bw := &teeWriter{ResponseWriter: discardWriter{h: http.Header{}}, body: capped{max: maxAuditBody}}
	if err := get.handle(bw, req); err != nil || (bw.status != 0 && bw.status != http.StatusOK) {
		return nil
	}
	return bw.body.json(bw.Header().Get("Content-Type"))
}

// idOf picks the id of a created object out of the answer.
func idOf(doc json.RawMessage) string {
	var v map[string]any
	if json.Unmarshal(doc, &v) != nil {
		return ""
	}
	for _, k := range []string{"id", "iccid", "name"} {
		if s, ok := v[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// capped keeps the first max bytes written and whether there were more.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	if c.buf.Len()+len(p) > c.max {
		c.over = true
	}
	return len(p), nil
}

// json returns what was kept if it is a whole JSON document, a note when
// it was too big, and nil otherwise.
func (c *capped) json(contentType string) json.RawMessage {
	if c.buf.Len() == 0 || !strings.Contains(contentType, "json") {
		return nil
	}
	if c.over {
		return json.RawMessage(fmt.Sprintf(`{"omitted":"more than %d KiB, not kept in the audit log"}`, c.max>>10))
	}
	if !json.Valid(c.buf.Bytes()) {
		return nil
	}
	return json.RawMessage(bytes.Clone(c.buf.Bytes()))
}

// teeWriter passes a response through and keeps its status and the start
// of its body.
type teeWriter struct {
	http.ResponseWriter
	status int
	body   capped
}

func (t *teeWriter) WriteHeader(code int) {
	if t.status == 0 {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *teeWriter) Write(p []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	_, _ = t.body.Write(p)
	return t.ResponseWriter.Write(p)
}

func (t *teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

func (t *teeWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}

// The audit routes.

const auditExportType = "application/x-ndjson"

func (s *Server) auditRoutes() {
	ts := dateTime("")
	entry := object("one change: who, through what, which object, when, before and after (secrets shown as [redacted])",
		[]string{"id", "org", "at", "actor", "via", "kind", "action"}, schema{
			"id":       str("entry id; ids sort by time"),
			"org":      str("organization whose object changed"),
			"at":       ts,
			"actor":    str("token:<token id> or user:<console user name>"),
			"actorOrg": str("organization of the actor's token or user (the operator organization acting on a customer)"),
			"via":      strEnum("where the change came in", audit.ViaAPI, audit.ViaCLI, audit.ViaConsole),
			"kind":     str("object kind: device, rule, token, user, site, template, sim, …"),
			"object":   str("the object's id or name"),
			"action":   str("what was done: the API operation id (createDevice, updateRule, setUserPassword, …)"),
			"before":   schema{"description": "the object before the change"},
			"after":    schema{"description": "the object after the change"},
			"detail":   str("the request, or the reason of a SIM state change"),
		})
	example := audit.Entry{ID: "00064cacc5fc5c0000002a1f3b", Org: "acme", At: exampleTime, Actor: "token:tok_2Yc8", ActorOrg: "acme",
		Via: audit.ViaCLI, Kind: "device", Object: "press-7", Action: "updateDevice",
		Before: json.RawMessage(`{"id":"press-7","site":"plant-north","disabled":false,"primaryKey":"[redacted]"}`),
		After:  json.RawMessage(`{"id":"press-7","site":"plant-north","disabled":true,"primaryKey":"[redacted]"}`),
		Detail: "PATCH /api/v1/devices/press-7"}
	line, _ := json.Marshal(example)
	filters := []param{
		{Name: "kind", Description: "only changes of this object kind", Schema: schema{"type": "string"}, Example: "device"},
		{Name: "object", Description: "only changes of this object id", Schema: schema{"type": "string"}},
		{Name: "actor", Description: "only changes by this actor (token:<id> or user:<name>)", Schema: schema{"type": "string"}},
		{Name: "action", Description: "only this action (an operation id)", Schema: schema{"type": "string"}},
		{Name: "from", Description: "only changes at or after this time (RFC 3339)", Schema: dateTime("")},
		{Name: "to", Description: "only changes before this time (RFC 3339)", Schema: dateTime("")},
		{Name: "order", Description: "oldest (default) or newest first", Schema: strEnum("", "oldest", "newest")},
	}
	page := []param{
		{Name: "limit", Description: "page size, 1 to 1000 (default 100)", Schema: schema{"type": "integer", "minimum": 1, "maximum": audit.MaxLimit}},
		{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}},
		{Name: "format", Description: "json (default): a page; ndjson: every matching entry, one JSON object per line, without paging", Schema: strEnum("", "json", "ndjson")},
	}
	ndjson := &content{Type: auditExportType, Schema: schema{"type": "string", "description": "one entry (the AuditEntry shape) per line"}, Example: string(line) + "\n"}
	s.add(&route{Method: "GET", Pattern: "/api/v1/audit", ID: "listAudit", Tag: "audit", Role: registry.RoleViewer,
		Summary: "The audit log: every change made through the API, the CLI or the console, with who, when, before and after (secrets left out)",
		Query:   append(append([]param{}, filters...), page...),
		Responses: []response{{Status: 200, Description: "a page of entries (or, with format=ndjson, all of them)", Body: &content{
			Schema:  object("", []string{"items", "next"}, schema{"items": arrayOf(entry), "next": str("pass as after for the next page; empty on the last")}),
			Example: audit.Page{Items: []audit.Entry{example}, Next: ""},
			Also:    ndjson,
		}}},
		Errors: []int{503}, handle: s.listLog})
	s.add(&route{Method: "GET", Pattern: "/api/v1/audit/export", ID: "exportAudit", Tag: "audit", Role: registry.RoleViewer,
		Summary:   "Export the audit log as NDJSON: every matching entry, one per line",
		Query:     filters,
		Responses: []response{{Status: 200, Description: "the entries, oldest first unless order=newest", Body: ndjson}},
		Errors:    []int{503}, handle: s.exportAudit})
}

// auditFilter reads the filters and paging of a request.
func auditFilter(r *http.Request) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{Kind: q.Get("kind"), Object: q.Get("object"), Actor: q.Get("actor"), Action: q.Get("action"), After: q.Get("after")}
	for name, dst := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, invalid("%s=%q is not a time; write it like 2026-03-02T08:00:00Z", name, v)
			}
			*dst = t
		}
	}
	switch q.Get("order") {
	case "", "oldest":
	case "newest":
		f.Newest = true
	default:
		return f, invalid("order=%q: use oldest or newest", q.Get("order"))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return f, invalid("limit=%q: use a number from 1 to %d", v, audit.MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// readableRoles are the roles whose entries the caller may read: its own
// and those below.
func readableRoles(p registry.Principal) []string {
	var out []string
	for _, r := range []registry.Role{registry.RoleViewer, registry.RoleOperator, registry.RoleAdmin} {
		if hasRole(p, r) {
			out = append(out, string(r))
		}
	}
	return out
}

func (s *Server) auditDeps() (Audit, error) {
	if s.deps.Audit == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the audit log is not enabled on this hub"}
	}
	return s.deps.Audit, nil
}

func (s *Server) listLog(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Query().Get("format") {
	case "", "json":
	case "ndjson":
		return s.exportAudit(w, r)
	default:
		return invalid("format=%q: use json or ndjson", r.URL.Query().Get("format"))
	}
	a, err := s.auditDeps()
	if err != nil {
		return err
	}
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	f.Roles = readableRoles(principalOf(r))
	p, err := a.List(r.Context(), orgOf(r), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// exportAudit streams every matching entry as NDJSON, a page at a time.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request) error {
	a, err := s.auditDeps()
	if err != nil {
		return err
	}
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	f.Limit = audit.MaxLimit
	f.Roles = readableRoles(principalOf(r))
	first, err := a.List(r.Context(), orgOf(r), f)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", auditExportType)
	w.Header().Set("Content-Disposition", `attachment; filename="audit.ndjson"`)
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for p := first; ; {
		for _, e := range p.Items {
			if err := enc.Encode(e); err != nil {
				return nil // the client went away
			}
		}
		if p.Next == "" {
			return nil
		}
		f.After = p.Next
		if p, err = a.List(r.Context(), orgOf(r), f); err != nil {
			// The status is sent; the log says why the export is short.
			s.log.Error("audit export stopped", "org", orgOf(r), "err", err)
			return nil
		}
	}
}
