package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/gateway"
	"github.com/shopfloor/shopfloor/internal/tsdb"
	"github.com/shopfloor/shopfloor/internal/twin"
	"github.com/shopfloor/shopfloor/internal/web"
)

// newConsole builds the web console on the hub's modules. The API server
// mounts it at "/".
func (h *Hub) newConsole() (http.Handler, error) {
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
	srv, err := web.New(web.Deps{
		Connectivity: connView,
		Twins:        twinsView,
		Methods:      methodsView,
		Messages:     messagesView,
		Alerts:       alertsView,
		Registry:     h.Registry,
		Telemetry:    consoleTelemetry{h.TSDB},
		Presence:     consolePresence{h.Gateway},
		Dashboards:   dash,
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

func (c consoleTwins) PatchDesired(ctx context.Context, org, device string, patch json.RawMessage, ifMatch string) (web.Twin, error) {
	t, err := c.ts.patchDesired(ctx, org, device, twin.Patch{Desired: patch}, ifMatch)
	if err != nil {
		return web.Twin{}, err
	}
	return toConsoleTwin(t)
}

func (c consoleTwins) Invoke(ctx context.Context, org, device, method string, payload json.RawMessage, timeout time.Duration) (int, json.RawMessage, error) {
	st, resp, err := c.ts.router.Invoke(ctx, org, device, method, payload, timeout)
	return st, resp, err
}

func (c consoleTwins) Send(ctx context.Context, org, device string, body []byte) error {
	_, err := c.ts.sendC2D(ctx, org, device, body, nil, 0)
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
