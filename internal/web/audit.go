package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/users"
)

// Audit records the console's changes and lists the audit log;
// *audit.Service implements it.
type Audit interface {
	Record(ctx context.Context, e audit.Entry) (audit.Entry, error)
	List(ctx context.Context, org string, f audit.Filter) (audit.Page, error)
}

// installAudit wraps the modules the console changes things through, so
// that every change made in the console is recorded with the signed-in
// user or token, and the object before and after.
func (s *Server) installAudit() {
	if s.deps.Audit == nil {
		return
	}
	s.deps.Registry = auditedRegistry{s.deps.Registry, s}
	s.dash = auditedDashboards{s.dash, s}
	if s.deps.Users != nil {
		s.deps.Users = auditedUsers{s.deps.Users, s}
	}
	if s.deps.Rules != nil {
		s.deps.Rules = auditedRules{s.deps.Rules, s}
	}
	if s.deps.Inbox != nil {
		s.deps.Inbox = auditedInbox{s.deps.Inbox, s}
	}
	if s.deps.Templates != nil {
		s.deps.Templates = auditedTemplates{s.deps.Templates, s}
	}
	if s.deps.Twins != nil {
		s.deps.Twins = auditedTwins{s.deps.Twins, s}
	}
	if s.deps.Methods != nil {
		s.deps.Methods = auditedMethods{s.deps.Methods, s}
	}
	if s.deps.Messages != nil {
		s.deps.Messages = auditedMessages{s.deps.Messages, s}
	}
}

// record writes one console change; before and after are encoded as JSON
// (nil for none) and the audit log redacts their secrets. Actions are
// named as the REST API's operations that do the same. A failure is
// logged: the change itself is made.
func (s *Server) record(ctx context.Context, org, kind, object, action string, before, after any) {
	v, _ := ctx.Value(viewerKey{}).(*viewer)
	if v == nil {
		s.log.Error("a console change has no signed-in caller and is not in the audit log", "action", action, "org", org)
		return
	}
	e := audit.Entry{Org: org, Actor: v.Who(), ActorOrg: v.P.Org, Via: audit.ViaConsole, Kind: kind, Object: object, Action: action,
		Before: asJSON(before), After: asJSON(after)}
	if kind == "user" {
		// Users are listed to admins only; so are their changes.
		e.Role = string(registry.RoleAdmin)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.deps.Audit.Record(ctx, e); err != nil {
		s.log.Error("the change was made but could not be written to the audit log", "action", action, "org", org, "object", object, "err", err)
	}
}

func asJSON(v any) json.RawMessage {
	switch x := v.(type) {
	case nil:
		return nil
	case json.RawMessage:
		return x
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

type auditedRegistry struct {
	Registry
	s *Server
}

func (a auditedRegistry) UpdateDevice(ctx context.Context, org, id string, p registry.DevicePatch) (registry.Device, error) {
	before, berr := a.Registry.GetDevice(ctx, org, id)
	d, err := a.Registry.UpdateDevice(ctx, org, id, p)
	if err == nil {
		a.s.record(ctx, org, "device", id, "updateDevice", orNil(before, berr), d)
	}
	return d, err
}

func (a auditedRegistry) RegenerateKey(ctx context.Context, org, id, which string) (registry.Device, error) {
	before, berr := a.Registry.GetDevice(ctx, org, id)
	d, err := a.Registry.RegenerateKey(ctx, org, id, which)
	if err == nil {
		a.s.record(ctx, org, "device", id, "regenerateDeviceKey", orNil(before, berr), d)
	}
	return d, err
}

func (a auditedRegistry) ImportCSV(ctx context.Context, org string, r io.Reader, progress func(done, total int)) (registry.ImportReport, error) {
	rep, err := a.Registry.ImportCSV(ctx, org, r, progress)
	if err == nil {
		a.s.record(ctx, org, "device", "", "importDevices", nil, rep)
	}
	return rep, err
}

// orNil is v when it was read, nil otherwise.
func orNil[T any](v T, err error) any {
	if err != nil {
		return nil
	}
	return v
}

type auditedDashboards struct {
	DashboardStore
	s *Server
}

func (a auditedDashboards) find(ctx context.Context, org, id string) any {
	ds, err := a.DashboardStore.List(ctx, org)
	if err != nil {
		return nil
	}
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (a auditedDashboards) Save(ctx context.Context, org string, d Dashboard) error {
	before := a.find(ctx, org, d.ID)
	if err := a.DashboardStore.Save(ctx, org, d); err != nil {
		return err
	}
	action := "updateDashboard"
	if before == nil {
		action = "createDashboard"
	}
	a.s.record(ctx, org, "dashboard", d.ID, action, before, d)
	return nil
}

func (a auditedDashboards) Delete(ctx context.Context, org, id string) error {
	before := a.find(ctx, org, id)
	if err := a.DashboardStore.Delete(ctx, org, id); err != nil {
		return err
	}
	a.s.record(ctx, org, "dashboard", id, "deleteDashboard", before, nil)
	return nil
}

type auditedUsers struct {
	Users
	s *Server
}

func (a auditedUsers) Create(ctx context.Context, org, name, password string, role registry.Role) (users.User, error) {
	u, err := a.Users.Create(ctx, org, name, password, role)
	if err == nil {
		a.s.record(ctx, org, "user", u.ID, "createUser", nil, u)
	}
	return u, err
}

func (a auditedUsers) Delete(ctx context.Context, org, id string) error {
	before, berr := a.Users.Get(ctx, id)
	if err := a.Users.Delete(ctx, org, id); err != nil {
		return err
	}
	a.s.record(ctx, org, "user", id, "deleteUser", orNil(before, berr), nil)
	return nil
}

// ChangePassword records that the password changed, never a password.
func (a auditedUsers) ChangePassword(ctx context.Context, id, current, next, keep string) error {
	if err := a.Users.ChangePassword(ctx, id, current, next, keep); err != nil {
		return err
	}
	u, err := a.Users.Get(ctx, id)
	if err != nil {
		a.s.log.Error("the password was changed but the user could not be read for the audit log", "user", id, "err", err)
		return nil
	}
	a.s.record(ctx, u.Org, "user", id, "changePassword", nil, map[string]string{"name": u.Name, "password": audit.Redacted})
	return nil
}

type auditedRules struct {
	Rules
	s *Server
}

func (a auditedRules) SaveRule(ctx context.Context, org, id string, spec RuleSpec) (Rule, error) {
	var before any
	action := "createRule"
	if id != "" {
		action = "updateRule"
		before = orNil(a.Rules.GetRule(ctx, org, id))
	}
	ru, err := a.Rules.SaveRule(ctx, org, id, spec)
	if err == nil {
		a.s.record(ctx, org, "rule", ru.ID, action, before, ru)
	}
	return ru, err
}

func (a auditedRules) DeleteRule(ctx context.Context, org, id string) error {
	before := orNil(a.Rules.GetRule(ctx, org, id))
	if err := a.Rules.DeleteRule(ctx, org, id); err != nil {
		return err
	}
	a.s.record(ctx, org, "rule", id, "deleteRule", before, nil)
	return nil
}

type auditedInbox struct {
	Inbox
	s *Server
}

func (a auditedInbox) act(ctx context.Context, org, id, action string, do func() error) error {
	before := orNil(a.Inbox.GetAlert(ctx, org, id))
	if err := do(); err != nil {
		return err
	}
	a.s.record(ctx, org, "alert", id, action, before, orNil(a.Inbox.GetAlert(ctx, org, id)))
	return nil
}

func (a auditedInbox) Ack(ctx context.Context, org, id, by, note string) error {
	return a.act(ctx, org, id, "ackAlert", func() error { return a.Inbox.Ack(ctx, org, id, by, note) })
}

func (a auditedInbox) Resolve(ctx context.Context, org, id, by, note string) error {
	return a.act(ctx, org, id, "resolveAlert", func() error { return a.Inbox.Resolve(ctx, org, id, by, note) })
}

func (a auditedInbox) Note(ctx context.Context, org, id, by, text string) error {
	return a.act(ctx, org, id, "noteAlert", func() error { return a.Inbox.Note(ctx, org, id, by, text) })
}

type auditedTemplates struct {
	Templates
	s *Server
}

// doc reads a stored template document; nil when there is none.
func (a auditedTemplates) doc(ctx context.Context, org, id string) any {
	b, err := a.Templates.ExportTemplate(ctx, org, id)
	if err != nil || !json.Valid(b) {
		return nil
	}
	return json.RawMessage(b)
}

func (a auditedTemplates) ImportTemplate(ctx context.Context, org string, doc []byte, replace bool) (TemplateInfo, error) {
	var head struct {
		ID string `json:"id"`
	}
	var before any
	if json.Unmarshal(doc, &head) == nil && head.ID != "" {
		before = a.doc(ctx, org, head.ID)
	}
	t, err := a.Templates.ImportTemplate(ctx, org, doc, replace)
	if err == nil {
		action := "importTemplate"
		if before != nil {
			action = "replaceTemplate"
		}
		a.s.record(ctx, org, "template", t.ID, action, before, a.doc(ctx, org, t.ID))
	}
	return t, err
}

func (a auditedTemplates) DeleteTemplate(ctx context.Context, org, id string) error {
	before := a.doc(ctx, org, id)
	if err := a.Templates.DeleteTemplate(ctx, org, id); err != nil {
		return err
	}
	a.s.record(ctx, org, "template", id, "deleteTemplate", before, nil)
	return nil
}

type auditedTwins struct {
	Twins
	s *Server
}

// twinDoc is a twin as the audit log shows it.
type twinDoc struct {
	Desired  json.RawMessage `json:"desired,omitempty"`
	Reported json.RawMessage `json:"reported,omitempty"`
}

func (a auditedTwins) PatchDesired(ctx context.Context, org, device string, patch json.RawMessage, ifMatch string) (Twin, error) {
	var before any
	if t, err := a.Twins.Get(ctx, org, device); err == nil {
		before = twinDoc{Desired: t.Desired}
	}
	t, err := a.Twins.PatchDesired(ctx, org, device, patch, ifMatch)
	if err == nil {
		a.s.record(ctx, org, "device", device, "patchTwin", before, twinDoc{Desired: t.Desired})
	}
	return t, err
}

type auditedMethods struct {
	Methods
	s *Server
}

// Invoke records that a method was called (the name, not the payload:
// what a device takes as a command is the plant's business).
func (a auditedMethods) Invoke(ctx context.Context, org, device, method string, payload json.RawMessage, timeout time.Duration) (int, json.RawMessage, error) {
	st, resp, err := a.Methods.Invoke(ctx, org, device, method, payload, timeout)
	if err == nil {
		a.s.record(ctx, org, "device", device, "invokeMethod", nil, map[string]any{"method": method, "status": st})
	}
	return st, resp, err
}

type auditedMessages struct {
	Messages
	s *Server
}

func (a auditedMessages) Send(ctx context.Context, org, device string, body []byte) error {
	if err := a.Messages.Send(ctx, org, device, body); err != nil {
		return err
	}
	after := map[string]any{"bytes": len(body)}
	if json.Valid(body) {
		after["body"] = json.RawMessage(bytes.Clone(body))
	}
	a.s.record(ctx, org, "device", device, "sendC2D", nil, after)
	return nil
}

// The audit page.

const auditPageSize = 50

type auditRow struct {
	audit.Entry
	BeforeText, AfterText string
}

type auditData struct {
	On                                         bool
	Kind, Object, Actor, Action, From, To, Err string
	Rows                                       []auditRow
	Next                                       string
}

// auditLog lists the organization's audit log, newest first, with the
// filters of the REST API; any signed-in role may read it.
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := auditData{On: s.deps.Audit != nil, Kind: q.Get("kind"), Object: q.Get("object"), Actor: q.Get("actor"), Action: q.Get("action"),
		From: q.Get("from"), To: q.Get("to")}
	if !d.On {
		s.render(w, r, http.StatusOK, "audit", d)
		return
	}
	f := audit.Filter{Kind: d.Kind, Object: d.Object, Actor: d.Actor, Action: d.Action, After: q.Get("after"), Newest: true, Limit: auditPageSize,
		Roles: []string{string(registry.RoleViewer)}}
	// Entries of what only operators or admins may read are for them.
	switch viewerOf(r).P.Role {
	case registry.RoleAdmin:
		f.Roles = append(f.Roles, string(registry.RoleOperator), string(registry.RoleAdmin))
	case registry.RoleOperator:
		f.Roles = append(f.Roles, string(registry.RoleOperator))
	}
	for _, p := range []struct {
		in  string
		out *time.Time
		nm  string
	}{{d.From, &f.From, "From"}, {d.To, &f.To, "To"}} {
		if p.in == "" {
			continue
		}
		t, err := parseConsoleTime(p.in)
		if err != nil {
			d.Err = p.nm + " is not a date and time; pick one or leave it empty."
			s.render(w, r, http.StatusBadRequest, "audit", d)
			return
		}
		*p.out = t
	}
	page, err := s.deps.Audit.List(r.Context(), viewerOf(r).org, f)
	if errors.Is(err, audit.ErrInvalid) {
		d.Err = err.Error()
		s.render(w, r, http.StatusBadRequest, "audit", d)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, e := range page.Items {
		d.Rows = append(d.Rows, auditRow{Entry: e, BeforeText: pretty(e.Before), AfterText: pretty(e.After)})
	}
	d.Next = page.Next
	s.render(w, r, http.StatusOK, "audit", d)
}

// parseConsoleTime reads a datetime-local input (browser local time is
// taken as UTC, which the page says) or RFC 3339.
func parseConsoleTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a time")
}

func pretty(doc json.RawMessage) string {
	if len(doc) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		return string(doc)
	}
	return b.String()
}
