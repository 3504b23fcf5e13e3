package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// openConnectivity opens SIM, device group and slice management on the
// registry database. Suspended SIMs drop their device through the gateway.
// No mobile core is configured yet, so nothing is pushed southbound.
func (h *Hub) openConnectivity(ctx context.Context) error {
	d := connectivity.SQLite
	if h.cfg.Postgres != "" {
		d = connectivity.Postgres
	}
	var core connectivity.Core
	if h.cfg.SDCore != "" {
		c, err := sdcore.New(h.cfg.SDCore, sdcore.Options{User: h.cfg.SDCoreUser, Password: h.cfg.SDCorePassword, Logger: h.log})
		if err != nil {
			return fmt.Errorf("SD-Core at %s: %w", h.cfg.SDCore, err)
		}
		core = c
	}
	svc, err := connectivity.New(ctx, connectivity.Options{
		Core: core, ReconcileEvery: h.cfg.SDCoreReconcile,
		DB: h.store.DB(), Dialect: d, Directory: registryDirectory{h.Registry}, Logger: h.log,
		Alerts: connAlerts{h},
		Disconnect: func(deviceID, reason string) {
			if h.Gateway != nil && h.Gateway.Disconnect(deviceID) {
				h.log.Info("device disconnected by connectivity", "device", deviceID, "reason", reason)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("connectivity: %w", err)
	}
	h.conn = svc
	return nil
}

// connAPI is the service as the API sees it; a nil interface when closed.
func (h *Hub) connAPI() api.Connectivity {
	if h.conn == nil {
		return nil
	}
	return h.conn
}

func (h *Hub) runConnectivity(ctx context.Context, g *errgroup.Group) {
	if h.conn != nil {
		g.Go(func() error { return h.conn.Run(ctx) })
	}
}

func (h *Hub) closeConnectivity() {
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

// registryDirectory answers connectivity's reference checks.
type registryDirectory struct{ reg *registry.Service }

func (d registryDirectory) SiteExists(ctx context.Context, org, site string) (bool, error) {
	_, err := d.reg.GetSite(ctx, org, site)
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (d registryDirectory) DeviceExists(ctx context.Context, org, dev string) (bool, error) {
	_, err := d.reg.GetDevice(ctx, org, dev)
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// admit is the gateway's CONNECT-time check of the device's SIM (state and
// IMEI lock). The service is opened after the gateway, hence the nil check.
func (h *Hub) admit(ctx context.Context, deviceID, imei string) (bool, string, error) {
	if h.conn == nil {
		return true, "", nil
	}
	d, err := h.conn.CheckConnect(ctx, deviceID, imei)
	if err != nil {
		return false, "", err
	}
	return d.Allow, d.Reason, nil
}

// meter counts a device's MQTT bytes for usage and bitrate limits.
func (h *Hub) meter(deviceID string, uplink bool, n int) time.Duration {
	if h.conn == nil {
		return 0
	}
	dir := connectivity.Downlink
	if uplink {
		dir = connectivity.Uplink
	}
	return h.conn.Account(deviceID, dir, n)
}

// priority ranks a device's messages when the hub is saturated: its
// device group's traffic class's ARP.
func (h *Hub) priority(deviceID string) int {
	if h.conn == nil {
		return connectivity.DefaultPriority
	}
	return h.conn.Priority(deviceID)
}

// connAlerts raises connectivity's system alerts (IMEI mismatch, data
// limits) as ordinary alerts, deduplicated per kind and device like a rule's.
type connAlerts struct{ h *Hub }

func (c connAlerts) Raise(ctx context.Context, a connectivity.Alert) error {
	if c.h.rules == nil {
		c.h.log.Warn("connectivity alert (alerts service not running)", "kind", a.Kind, "iccid", a.ICCID, "message", a.Message)
		return nil
	}
	target := a.Device
	if target == "" {
		target = "sim:" + a.ICCID
	}
	sev := alerts.Severity(a.Severity)
	switch sev {
	case alerts.SeverityCritical, alerts.SeverityMajor, alerts.SeverityMinor, alerts.SeverityWarning, alerts.SeverityInfo:
	default:
		sev = alerts.SeverityMajor
	}
	_, _, err := c.h.rules.alerts.Fire(ctx, alerts.FireRequest{
		Org: a.Org, Rule: "connectivity:" + a.Kind, RuleName: "SIM " + strings.ReplaceAll(a.Kind, "_", " "),
		Device: target, Severity: sev, Message: a.Message, At: a.At,
	})
	return err
}
