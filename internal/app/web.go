package app

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/gateway"
	"github.com/shopfloor/shopfloor/internal/tsdb"
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
	srv, err := web.New(web.Deps{
		Alerts:     alertsView,
		Registry:   h.Registry,
		Telemetry:  consoleTelemetry{h.TSDB},
		Presence:   consolePresence{h.Gateway},
		Dashboards: dash,
		Logger:     h.log.With("module", "web"),
	})
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	return srv, nil
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
