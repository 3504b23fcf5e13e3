package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/anomaly"
	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/gateway"
	"github.com/shopfloor/shopfloor/internal/promapi"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/rules"
	"github.com/shopfloor/shopfloor/internal/template"
	"github.com/shopfloor/shopfloor/internal/tsdb"
	"github.com/shopfloor/shopfloor/internal/twin"
	"github.com/shopfloor/shopfloor/internal/users"
	"github.com/shopfloor/shopfloor/internal/web"
)

// newConsole builds the web console on the hub's modules. The API server
// mounts it at "/".
func (h *Hub) newConsole(prom *promapi.Handler) (http.Handler, error) {
	dash, err := web.NewFileDashboards(filepath.Join(h.cfg.Data, "dashboards"))
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	var alertsView web.Alerts
	if h.rules != nil {
		alertsView = consoleAlerts{h.rules.alerts}
	}
	var (
		twinsView    web.Twins
		methodsView  web.Methods
		messagesView web.Messages
	)
	if h.twins != nil {
		twinsView, methodsView, messagesView = consoleTwins{h.twins}, consoleTwins{h.twins}, consoleTwins{h.twins}
	}
	var connView web.Connectivity
	if h.conn != nil {
		connView = consoleConnectivity{h.conn}
	}
	var (
		rulesView web.Rules
		inboxView web.Inbox
		tmplView  web.Templates
	)
	if h.rules != nil {
		rulesView, inboxView = consoleRules{h.rules}, consoleInbox{h.rules.alerts}
	}
	if h.tmpl != nil {
		tmplView = consoleTemplates{h.tmpl.svc}
	}
	if h.users, err = users.New(context.Background(), users.Config{DB: h.store.DB(), Driver: h.driverName()}); err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	if n, err := h.users.DeleteExpiredSessions(context.Background()); err != nil {
		h.log.Warn("web console: drop expired sessions", "err", err)
	} else if n > 0 {
		h.log.Info("web console: dropped expired sessions", "sessions", n)
	}
	srv, err := web.New(web.Deps{
		Users:        h.users,
		Sessions:     h.users,
		Rules:        rulesView,
		Inbox:        inboxView,
		Templates:    tmplView,
		PromQL:       consolePromQL{prom},
		Connectivity: connView,
		Twins:        twinsView,
		Methods:      methodsView,
		Messages:     messagesView,
		Alerts:       alertsView,
		Registry:     h.Registry,
		Telemetry:    consoleTelemetry{h.TSDB},
		Presence:     consolePresence{h.Gateway},
		Dashboards:   dash,
		Anomalies:    consoleAnomalies{h.anomaly},
		Audit:        h.audit,
		Logger:       h.log.With("module", "web"),
	})
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	h.console, h.dashboards = srv, dash
	return srv, nil
}

// EnsureFactoryDashboard saves the default factory dashboard for org unless
// the organization has one already; the demo calls it once machines report.
func (h *Hub) EnsureFactoryDashboard(ctx context.Context, org string) error {
	have, err := h.dashboards.List(ctx, org)
	if err != nil {
		return err
	}
	for _, d := range have {
		if d.ID == "factory" {
			return nil
		}
	}
	d, err := h.console.FactoryDashboard(ctx, org)
	if err != nil {
		return err
	}
	return h.dashboards.Save(ctx, org, d)
}

// consoleTelemetry adapts the tsdb to the console's reader interface.
// consoleAnomalies shows the anomaly detectors on device pages.
type consoleAnomalies struct{ a *anomaly.Service }

func (c consoleAnomalies) DeviceAnomaly(ctx context.Context, org, device string) (web.Anomaly, error) {
	st := c.a.Status(org, device)
	out := web.Anomaly{Seen: st.Seen, Kind: st.Kind, Fields: st.Fields, Warm: st.Warm, Warmup: st.Warmup,
		WarmupRemaining: st.WarmupRemaining, Score: st.Score, Alert: st.Alert}
	for _, x := range st.Contributions {
		out.Contributions = append(out.Contributions, web.AnomalyContribution{Field: x.Field, Share: x.Share, Reason: x.Reason.String()})
	}
	return out, nil
}

type consoleTelemetry struct{ db *tsdb.DB }

func (t consoleTelemetry) Range(ctx context.Context, org, device string, fields []string, from, to time.Time, step time.Duration, agg string) ([]web.Series, error) {
	rs, err := t.db.Range(ctx, org, device, fields, from, to, step, agg)
	if err != nil {
		return nil, err
	}
	out := make([]web.Series, len(rs))
	for i, r := range rs {
		pts := make([]web.Point, len(r.Points))
		for j, p := range r.Points {
			pts[j] = web.Point{T: p.T, V: p.V}
		}
		out[i] = web.Series{Field: r.Field, Points: pts}
	}
	return out, nil
}

func (t consoleTelemetry) Latest(ctx context.Context, org, device string) ([]web.LatestValue, error) {
	ls, err := t.db.Latest(ctx, org, device)
	if err != nil {
		return nil, err
	}
	out := make([]web.LatestValue, len(ls))
	for i, l := range ls {
		out[i] = web.LatestValue{Field: l.Field, T: l.T, Value: l.Value}
	}
	return out, nil
}

// consolePresence adapts the MQTT gateway.
type consolePresence struct{ g *gateway.Gateway }

func (p consolePresence) Connected(id string) bool { return p.g.Connected(id) }

func (p consolePresence) DeviceMessages(id string) (uint64, bool) {
	c, ok := p.g.DeviceStats(id)
	return c.Messages, ok
}

// consoleAlerts adapts the alerts service to the console's alert lists.
type consoleAlerts struct{ svc *alerts.Service }

func (a consoleAlerts) Recent(ctx context.Context, org, device string, limit int) ([]web.Alert, error) {
	page, err := a.svc.List(ctx, org, alerts.Filter{Device: device, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]web.Alert, 0, len(page.Items))
	for _, x := range page.Items {
		name := x.RuleName
		if name == "" {
			name = x.Rule
		}
		out = append(out, web.Alert{ID: x.ID, Rule: name, Device: x.Device, Severity: string(x.Severity),
			State: string(x.State), Message: x.Message, At: x.LastSeen})
	}
	return out, nil
}

// consoleTwins lets the console read and edit twins, invoke methods and send
// cloud-to-device messages through the same services as the REST API.
type consoleTwins struct{ ts *twinSet }

func toConsoleTwin(t twin.Twin) (web.Twin, error) {
	desired, err := json.Marshal(t.Desired)
	if err != nil {
		return web.Twin{}, err
	}
	reported, err := json.Marshal(t.Reported)
	if err != nil {
		return web.Twin{}, err
	}
	return web.Twin{Desired: desired, Reported: reported, ETag: t.ETag()}, nil
}

func (c consoleTwins) Get(ctx context.Context, org, device string) (web.Twin, error) {
	t, err := c.ts.svc.Get(ctx, org, device)
	if err != nil {
		return web.Twin{}, err
	}
	return toConsoleTwin(t)
}

// PatchDesired goes through the same checks as the REST API: a patch that
// breaks the device's template is refused.
func (c consoleTwins) PatchDesired(ctx context.Context, org, device string, patch json.RawMessage, ifMatch string) (web.Twin, error) {
	t, err := c.ts.svc.Change(ctx, org, device, twin.Patch{Desired: patch}, ifMatch)
	if err != nil {
		return web.Twin{}, mapTwinErr(err, template.ErrInvalid, registry.ErrInvalid, twin.ErrInvalid, registry.ErrInvalid,
			twin.ErrPrecondition, registry.ErrConflict)
	}
	return toConsoleTwin(t)
}

func (c consoleTwins) Invoke(ctx context.Context, org, device, method string, payload json.RawMessage, timeout time.Duration) (int, json.RawMessage, error) {
	st, resp, err := c.ts.router.Invoke(ctx, org, device, method, payload, timeout)
	return st, resp, err
}

func (c consoleTwins) Send(ctx context.Context, org, device string, body []byte) error {
	_, err := c.ts.svc.Queue(ctx, org, device, body, nil, 0)
	return err
}

// consoleConnectivity lists SIMs with this cycle's usage, and slices.
type consoleConnectivity struct{ svc *connectivity.Service }

func (c consoleConnectivity) SIMs(ctx context.Context, org string, limit int) ([]web.SIMRow, error) {
	sims, _, err := c.svc.ListSIMs(ctx, org, connectivity.SIMFilter{Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]web.SIMRow, 0, len(sims))
	for _, s := range sims {
		row := web.SIMRow{ICCID: s.ICCID, IMSI: s.IMSI, Label: s.Label, State: string(s.State), SystemState: s.SystemState,
			Device: s.Device, IMEI: s.IMEI, IMEILock: s.IMEILock}
		if u, err := c.svc.SIMUsage(ctx, org, s.ICCID); err == nil {
			row.UpBytes, row.DownBytes = u.UpBytes, u.DownBytes
		}
		out = append(out, row)
	}
	return out, nil
}

func (c consoleConnectivity) DeviceGroups(ctx context.Context, org string) ([]web.DeviceGroupRow, error) {
	gs, err := c.svc.ListDeviceGroups(ctx, org)
	if err != nil {
		return nil, err
	}
	tcs, err := c.svc.ListTrafficClasses(ctx, org)
	if err != nil {
		return nil, err
	}
	arp := make(map[string]int, len(tcs))
	for _, tc := range tcs {
		arp[tc.Name] = tc.ARP
	}
	out := make([]web.DeviceGroupRow, 0, len(gs))
	for _, g := range gs {
		out = append(out, web.DeviceGroupRow{Name: g.Name, Site: g.Site, DNN: g.IPDomain.DNN, Subnet: g.IPDomain.Subnet,
			TrafficClass: g.TrafficClass, ARP: arp[g.TrafficClass], Devices: len(g.Devices), UplinkBps: g.MBRUplink, DownlinkBps: g.MBRDownlink})
	}
	return out, nil
}

func (c consoleConnectivity) Slices(ctx context.Context, org string) ([]web.SliceRow, error) {
	sl, err := c.svc.ListSlices(ctx, org)
	if err != nil {
		return nil, err
	}
	out := make([]web.SliceRow, 0, len(sl))
	for _, s := range sl {
		out = append(out, web.SliceRow{Name: s.Name, Site: s.Site, SD: s.SD, SST: s.SST, DefaultBehavior: s.DefaultBehavior, DeviceGroups: s.DeviceGroups})
	}
	return out, nil
}

func (c consoleConnectivity) Core(ctx context.Context, org string) (web.CoreView, error) {
	st, err := c.svc.CoreStatus(ctx, org)
	if err != nil {
		return web.CoreView{}, err
	}
	v := web.CoreView{Link: st.Link, LinkDetail: st.LinkDetail, LinkSince: st.LinkSince, Unmanaged: st.Unmanaged,
		InSync: st.Counts[connectivity.CoreInSync], Pending: st.Counts[connectivity.CorePending], Failed: st.Counts[connectivity.CoreFailed]}
	if st.LastReconcile != nil {
		v.LastReconcile = *st.LastReconcile
	}
	for _, o := range st.Objects {
		v.Objects = append(v.Objects, web.CoreObjectRow{Kind: o.Kind, Name: o.Name, State: o.State, Detail: o.Detail, At: o.At})
	}
	return v, nil
}

// consoleRules lets the rule editor check, save and dry-run rules on the
// same store and engine as the REST API.
type consoleRules struct{ rs *ruleSet }

func toConsoleRule(r rules.Rule) web.Rule {
	spec := web.RuleSpec{Name: r.Name, Description: r.Description, Condition: r.Condition, Severity: string(r.Severity),
		Site: r.Scope.Site, Template: r.Scope.Template, Device: r.Scope.Device, Disabled: r.Disabled}
	if r.For != 0 {
		spec.For = r.For.String()
	}
	return web.Rule{ID: r.ID, RuleSpec: spec, UpdatedAt: r.UpdatedAt}
}

// ruleErr turns a compile error into the console's, and the rest into the
// registry sentinels the console maps to statuses.
func ruleErr(err error) error {
	var ce *rules.CompileError
	if errors.As(err, &ce) {
		return &web.ConditionError{Line: ce.Line, Column: ce.Column, Message: ce.Message, Snippet: ce.Snippet}
	}
	return mapErr(err)
}

// apply copies the editor's fields onto r; actions, hysteresis and tag
// scope, which the editor does not show, stay as they are.
func (c consoleRules) apply(org string, r *rules.Rule, spec web.RuleSpec) error {
	r.Org, r.Name, r.Description, r.Condition, r.Severity = org, spec.Name, spec.Description, spec.Condition, alerts.Severity(spec.Severity)
	r.Scope.Site, r.Scope.Template, r.Scope.Device, r.Disabled = spec.Site, spec.Template, spec.Device, spec.Disabled
	r.For = 0
	if spec.For != "" {
		if err := r.For.UnmarshalJSON([]byte(strconv.Quote(spec.For))); err != nil {
			return &apiError{err: fmt.Errorf("holds for %q is not a duration; write it like 30s, 2m or 1h", spec.For), kind: registry.ErrInvalid}
		}
	}
	return nil
}

func (c consoleRules) ListRules(ctx context.Context, org string) ([]web.Rule, error) {
	var out []web.Rule
	after := ""
	for {
		p, err := c.rs.svc.List(ctx, org, rules.ListFilter{Limit: 500, After: after})
		if err != nil {
			return nil, mapErr(err)
		}
		for _, r := range p.Items {
			out = append(out, toConsoleRule(r))
		}
		if p.Next == "" || len(out) >= 2000 {
			return out, nil
		}
		after = p.Next
	}
}

func (c consoleRules) GetRule(ctx context.Context, org, id string) (web.Rule, error) {
	r, err := c.rs.svc.Get(ctx, org, id)
	if err != nil {
		return web.Rule{}, mapErr(err)
	}
	return toConsoleRule(r), nil
}

func (c consoleRules) CheckRule(ctx context.Context, org string, spec web.RuleSpec) error {
	var r rules.Rule
	if err := c.apply(org, &r, spec); err != nil {
		return err
	}
	return ruleErr(c.rs.svc.Check(r))
}

// SaveRule creates or updates through the rules service, as the REST API
// does.
func (c consoleRules) SaveRule(ctx context.Context, org, id string, spec web.RuleSpec) (web.Rule, error) {
	var r rules.Rule
	if id != "" {
		old, err := c.rs.svc.Get(ctx, org, id)
		if err != nil {
			return web.Rule{}, mapErr(err)
		}
		r = old
	}
	if err := c.apply(org, &r, spec); err != nil {
		return web.Rule{}, err
	}
	var out rules.Rule
	var err error
	if id == "" {
		out, err = c.rs.svc.Create(ctx, r)
	} else {
		out, err = c.rs.svc.Update(ctx, r)
	}
	if err != nil {
		return web.Rule{}, ruleErr(err)
	}
	return toConsoleRule(out), nil
}

func (c consoleRules) DeleteRule(ctx context.Context, org, id string) error {
	return mapErr(c.rs.svc.Delete(ctx, org, id))
}

func (c consoleRules) DryRunRule(ctx context.Context, org string, spec web.RuleSpec, from, to time.Time) (web.DryRun, error) {
	var r rules.Rule
	if err := c.apply(org, &r, spec); err != nil {
		return web.DryRun{}, err
	}
	res, err := c.rs.svc.DryRun(ctx, r, from, to)
	if err != nil {
		return web.DryRun{}, ruleErr(err)
	}
	return web.DryRun{From: res.From, To: res.To, Devices: res.Devices, Evaluations: res.Evaluations, Firings: res.Firings,
		Clears: res.Clears, Times: res.Times, PerDevice: res.PerDevice, Truncated: res.Truncated}, nil
}

// consoleInbox is the alert inbox on the alerts service.
type consoleInbox struct{ svc *alerts.Service }

func (a consoleInbox) ListAlerts(ctx context.Context, org, state string, limit int) ([]web.Alert, error) {
	if state == "all" {
		state = ""
	}
	page, err := a.svc.List(ctx, org, alerts.Filter{State: alerts.State(state), Limit: limit})
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]web.Alert, 0, len(page.Items))
	for _, x := range page.Items {
		out = append(out, consoleAlert(x))
	}
	return out, nil
}

func consoleAlert(x alerts.Alert) web.Alert {
	name := x.RuleName
	if name == "" {
		name = x.Rule
	}
	return web.Alert{ID: x.ID, Rule: name, Device: x.Device, Severity: string(x.Severity), State: string(x.State), Message: x.Message, At: x.LastSeen}
}

func (a consoleInbox) GetAlert(ctx context.Context, org, id string) (web.AlertDetail, error) {
	x, err := a.svc.Get(ctx, org, id)
	if err != nil {
		return web.AlertDetail{}, mapErr(err)
	}
	d := web.AlertDetail{Alert: consoleAlert(x), Count: x.Count, FirstSeen: x.FirstSeen, AckedBy: x.AckedBy, ResolvedBy: x.ResolvedBy,
		AckedAt: x.AckedAt, ResolvedAt: x.ResolvedAt, Values: x.Values}
	for _, n := range x.Notes {
		d.Notes = append(d.Notes, web.AlertNote{At: n.At, By: n.By, Text: n.Text})
	}
	return d, nil
}

func (a consoleInbox) Ack(ctx context.Context, org, id, by, note string) error {
	_, err := a.svc.Ack(ctx, org, id, by, note)
	return mapErr(err)
}

func (a consoleInbox) Resolve(ctx context.Context, org, id, by, note string) error {
	_, err := a.svc.Resolve(ctx, org, id, by, note)
	return mapErr(err)
}

func (a consoleInbox) Note(ctx context.Context, org, id, by, text string) error {
	_, err := a.svc.AddNote(ctx, org, id, by, text)
	return mapErr(err)
}

// consoleTemplates shows and stores device templates as JSON documents.
type consoleTemplates struct{ svc *template.Service }

func fmtBound(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

func bounds(lo, hi *float64) string {
	if lo == nil && hi == nil {
		return ""
	}
	return strings.TrimSpace(fmtBound(lo) + " – " + fmtBound(hi))
}

func toConsoleTemplate(t template.Template) web.TemplateInfo {
	out := web.TemplateInfo{ID: t.ID, Name: t.Name, Description: t.Description, UpdatedAt: t.UpdatedAt}
	for _, f := range t.Telemetry {
		out.Fields = append(out.Fields, web.TemplateField{Kind: "telemetry", Name: f.Name, Schema: f.Schema, Unit: f.Unit, Range: bounds(f.Min, f.Max)})
	}
	for _, p := range t.Properties {
		out.Fields = append(out.Fields, web.TemplateField{Kind: "property", Name: p.Name, Schema: p.Schema, Unit: p.Unit, Writable: p.Writable, Range: bounds(p.Min, p.Max)})
	}
	for _, c := range t.Commands {
		out.Commands = append(out.Commands, c.Name)
	}
	return out
}

func (c consoleTemplates) ListTemplates(ctx context.Context, org string) ([]web.TemplateInfo, error) {
	ts, err := c.svc.List(ctx, org)
	if err != nil {
		return nil, tmplErr(err)
	}
	out := make([]web.TemplateInfo, 0, len(ts))
	for _, t := range ts {
		out = append(out, toConsoleTemplate(t))
	}
	return out, nil
}

func (c consoleTemplates) ExportTemplate(ctx context.Context, org, id string) ([]byte, error) {
	b, err := c.svc.Export(ctx, org, id)
	return b, tmplErr(err)
}

func (c consoleTemplates) ImportTemplate(ctx context.Context, org string, doc []byte, replace bool) (web.TemplateInfo, error) {
	t, err := c.svc.Import(ctx, org, doc, replace)
	if err != nil {
		return web.TemplateInfo{}, tmplErr(err)
	}
	return toConsoleTemplate(t), nil
}

func (c consoleTemplates) DeleteTemplate(ctx context.Context, org, id string) error {
	return tmplErr(c.svc.Delete(ctx, org, id))
}

// consolePromQL evaluates dashboard tiles' PromQL server side, on the
// same engine as /prometheus/.
type consolePromQL struct{ prom *promapi.Handler }

// maxTileSeries bounds what one tile draws.
const maxTileSeries = 8

func (p consolePromQL) QueryRange(ctx context.Context, org, expr string, start, end time.Time, step time.Duration) ([]web.Series, error) {
	m, err := p.prom.QueryRange(ctx, org, expr, start, end, step)
	if err != nil {
		return nil, mapTwinErr(err, promapi.ErrQuery, registry.ErrInvalid)
	}
	sort.Sort(m)
	out := make([]web.Series, 0, min(len(m), maxTileSeries))
	for i, s := range m {
		if i == maxTileSeries {
			break
		}
		name := s.Metric.String()
		if name == "{}" {
			name = expr
		}
		pts := make([]web.Point, len(s.Floats))
		for j, f := range s.Floats {
			pts[j] = web.Point{T: f.T, V: f.F}
		}
		out = append(out, web.Series{Field: name, Points: pts})
	}
	return out, nil
}

// usersAPI serves /api/v1/users on the console's user store.
type usersAPI struct{ svc *users.Service }

func toAPIUser(u users.User) api.User {
	return api.User{ID: u.ID, Org: u.Org, Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt}
}

func (a usersAPI) CreateUser(ctx context.Context, org, name, password string, role registry.Role) (api.User, error) {
	u, err := a.svc.Create(ctx, org, name, password, role)
	if err != nil {
		return api.User{}, err
	}
	return toAPIUser(u), nil
}

func (a usersAPI) ListUsers(ctx context.Context, org string) ([]api.User, error) {
	us, err := a.svc.List(ctx, org)
	if err != nil {
		return nil, err
	}
	out := make([]api.User, len(us))
	for i, u := range us {
		out[i] = toAPIUser(u)
	}
	return out, nil
}

func (a usersAPI) DeleteUser(ctx context.Context, org, id string) error {
	return a.svc.Delete(ctx, org, id)
}

func (a usersAPI) SetUserPassword(ctx context.Context, org, id, password string) error {
	return a.svc.SetPassword(ctx, org, id, password)
}

// sessionSweepEvery is how often expired console sessions are deleted from
// the database (they are refused on use anyway; this keeps the table small).
const sessionSweepEvery = time.Hour

// runSessionSweep deletes expired console sessions periodically.
func (h *Hub) runSessionSweep(ctx context.Context, g *errgroup.Group) {
	if h.users == nil {
		return
	}
	g.Go(func() error {
		t := time.NewTicker(sessionSweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if n, err := h.users.DeleteExpiredSessions(ctx); err != nil && ctx.Err() == nil {
					h.log.Warn("web console: drop expired sessions", "err", err)
				} else if n > 0 {
					h.log.Info("web console: dropped expired sessions", "sessions", n)
				}
			}
		}
	})
}
