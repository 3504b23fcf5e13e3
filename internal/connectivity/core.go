package connectivity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Core is the mobile core's configuration API (the southbound contract).
// Every call is idempotent: putting the same object twice, or deleting a
// missing one, succeeds. Names are already unique hub-wide
// (organization-name).
type Core interface {
	PutSubscriber(ctx context.Context, s CoreSubscriber) error
	DeleteSubscriber(ctx context.Context, imsi string) error
	PutDeviceGroup(ctx context.Context, g CoreDeviceGroup) error
	DeleteDeviceGroup(ctx context.Context, name string) error
	PutSlice(ctx context.Context, s CoreSlice) error
	DeleteSlice(ctx context.Context, name string) error
}

// CoreSubscriber is a SIM the core must authenticate: TEST_READY or
// ACTIVATED and not over its data limit.
type CoreSubscriber struct {
	IMSI, PLMN, Ki, OPc string
}

// CoreDeviceGroup is a device group as the core sees it: the IMSIs of its
// devices' admitted SIMs.
type CoreDeviceGroup struct {
	Name         string
	Site         string
	IMSIs        []string
	IPDomain     IPDomain
	MBRUplink    int64 // bits per second
	MBRDownlink  int64
	TrafficClass TrafficClass
}

// CoreSlice is a slice with its site's radio and user-plane settings and
// its filters expanded into rules.
type CoreSlice struct {
	Name         string
	SST          int
	SD           string
	DeviceGroups []string
	Site         string
	MCC, MNC     string
	Cells        []SmallCell // enabled cells only
	UPF          string      // the site's edge node
	MBR          *Bitrate
	Rules        []CoreRule
}

// CoreRule is one application filtering rule; lower Priority first.
type CoreRule struct {
	Name      string
	Priority  int
	Permit    bool
	Prefix    string
	PortStart int // 0: any port
	PortEnd   int
	Protocol  int // IP protocol number: 6 TCP, 17 UDP; 0 any
}

// coreName makes an object name unique across organizations.
func coreName(org, name string) string { return org + "-" + name }

func (s *Service) runPusher(ctx context.Context) {
	if s.opt.Core == nil {
		return
	}
	if err := s.markAllDirty(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("queue the full core reconcile", "err", err)
	}
	backoff := time.Duration(0)
	for {
		err := s.PushPending(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(2*backoff, s.opt.RetryMin), s.opt.RetryMax)
			s.log.Warn("push configuration to the mobile core; will retry", "in", backoff, "err", err)
		default:
			backoff = 0
		}
		var wait <-chan time.Time
		if backoff > 0 {
			wait = time.After(backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case <-s.push:
			if backoff > 0 {
				// A new change does not skip the back-off.
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
			}
		}
	}
}

// markAllDirty queues every object the core should hold, so a restart
// reconciles whatever was lost.
func (s *Service) markAllDirty(ctx context.Context) error {
	seq := s.now().UnixNano()
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`INSERT INTO conn_outbox (org, kind, name, seq) SELECT org, kind, name, $1 FROM conn_objects WHERE kind IN ('devicegroup', 'slice') ON CONFLICT DO NOTHING`,
			`INSERT INTO conn_outbox (org, kind, name, seq) SELECT org, 'subscriber', iccid, $1 FROM conn_sims WHERE state IN ('TEST_READY', 'ACTIVATED') ON CONFLICT DO NOTHING`,
		} {
			if _, err := tx.ExecContext(ctx, q, seq); err != nil {
				return fmt.Errorf("queue the reconcile: %w", err)
			}
		}
		return nil
	})
}

// PushPending pushes every queued change to the core, in the order
// subscribers, device groups, slices (a group names subscribers, a slice
// names groups). A change that fails stays queued; the first error is
// returned after the rest were tried.
func (s *Service) PushPending(ctx context.Context) error {
	type item struct {
		org, kind, name string
		seq             int64
	}
	rows, err := s.db.QueryContext(ctx, `SELECT org, kind, name, seq FROM conn_outbox ORDER BY CASE kind WHEN 'subscriber' THEN 0 WHEN 'devicegroup' THEN 1 ELSE 2 END, org, name LIMIT 5000`)
	if err != nil {
		return fmt.Errorf("read the core outbox: %w", err)
	}
	var items []item
	for rows.Next() {
		var it item
		if err := rows.Scan(&it.org, &it.kind, &it.name, &it.seq); err != nil {
			rows.Close()
			return err
		}
		items = append(items, it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var first error
	for _, it := range items {
		if err := s.pushOne(ctx, it.org, it.kind, it.name); err != nil {
			if first == nil {
				first = fmt.Errorf("%s %q: %w", kindNames[it.kind], it.name, err)
			}
			continue
		}
		// Only the version pushed leaves the outbox; a newer change stays.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM conn_outbox WHERE org = $1 AND kind = $2 AND name = $3 AND seq = $4`, it.org, it.kind, it.name, it.seq); err != nil {
			return fmt.Errorf("clear the core outbox: %w", err)
		}
	}
	if len(items) == 5000 && first == nil {
		s.wakePusher()
	}
	return first
}

func (s *Service) pushOne(ctx context.Context, org, kind, name string) error {
	core := s.opt.Core
	switch kind {
	case kindSubscriber:
		m, err := getSIM(ctx, s.db, org, name)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if (m.State == StateActivated || m.State == StateTestReady) && m.SystemState != SystemDataLimit {
			return core.PutSubscriber(ctx, CoreSubscriber{IMSI: m.IMSI, PLMN: m.IMSI[:5], Ki: m.Ki, OPc: m.OPc})
		}
		return core.DeleteSubscriber(ctx, m.IMSI)
	case kindGroup:
		g, err := s.CoreDeviceGroup(ctx, org, name)
		if errors.Is(err, ErrNotFound) {
			return core.DeleteDeviceGroup(ctx, coreName(org, name))
		}
		if err != nil {
			return err
		}
		return core.PutDeviceGroup(ctx, g)
	case kindSlice:
		sl, err := s.CoreSlice(ctx, org, name)
		if errors.Is(err, ErrNotFound) {
			return core.DeleteSlice(ctx, coreName(org, name))
		}
		if err != nil {
			return err
		}
		return core.PutSlice(ctx, sl)
	}
	return nil
}

// CoreDeviceGroup builds a device group's configuration for the core.
func (s *Service) CoreDeviceGroup(ctx context.Context, org, name string) (CoreDeviceGroup, error) {
	g, err := s.GetDeviceGroup(ctx, org, name)
	if err != nil {
		return CoreDeviceGroup{}, err
	}
	tc, err := s.GetTrafficClass(ctx, org, g.TrafficClass)
	if err != nil {
		return CoreDeviceGroup{}, fmt.Errorf("device group %q: %w", name, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT s.imsi FROM conn_sims s JOIN conn_refs r ON r.to_name = s.device
		WHERE r.org = $1 AND r.from_kind = 'devicegroup' AND r.from_name = $2 AND r.to_kind = 'device'
		AND s.org = $1 AND s.state IN ('TEST_READY', 'ACTIVATED') AND s.system_state <> 'data_limit_exceeded' ORDER BY s.imsi`, org, name)
	if err != nil {
		return CoreDeviceGroup{}, fmt.Errorf("list the group's IMSIs: %w", err)
	}
	defer rows.Close()
	out := CoreDeviceGroup{Name: coreName(org, name), Site: g.Site, IMSIs: []string{}, IPDomain: g.IPDomain,
		MBRUplink: g.MBRUplink, MBRDownlink: g.MBRDownlink, TrafficClass: tc}
	out.TrafficClass.Name = coreName(org, tc.Name)
	for rows.Next() {
		var imsi string
		if err := rows.Scan(&imsi); err != nil {
			return out, err
		}
		out.IMSIs = append(out.IMSIs, imsi)
	}
	return out, rows.Err()
}

var protoNumbers = map[string]int{"TCP": 6, "UDP": 17, "ANY": 0}

// CoreSlice builds a slice's configuration for the core. The default
// behaviour becomes the last rules: DENY-ALL denies everything,
// ALLOW-ALL permits everything, ALLOW-PUBLIC denies the private ranges of
// RFC 1918 and permits the rest.
func (s *Service) CoreSlice(ctx context.Context, org, name string) (CoreSlice, error) {
	sl, err := s.GetSlice(ctx, org, name)
	if err != nil {
		return CoreSlice{}, err
	}
	site, err := s.GetSiteNetwork(ctx, org, sl.Site)
	if err != nil {
		return CoreSlice{}, fmt.Errorf("slice %q: %w", name, err)
	}
	out := CoreSlice{Name: coreName(org, name), SST: sl.SST, SD: sl.SD, DeviceGroups: []string{}, Site: sl.Site,
		MCC: site.MCC, MNC: site.MNC, Cells: []SmallCell{}, UPF: site.EdgeNode, MBR: sl.MBR, Rules: []CoreRule{}}
	for _, g := range sl.DeviceGroups {
		out.DeviceGroups = append(out.DeviceGroups, coreName(org, g))
	}
	for _, c := range site.SmallCells {
		if c.Enabled {
			out.Cells = append(out.Cells, c)
		}
	}
	filters := append([]AppFilter(nil), sl.Filters...)
	sortFilters(filters)
	for _, f := range filters {
		app, err := s.GetApplication(ctx, org, f.Application)
		if err != nil {
			return out, fmt.Errorf("slice %q: %w", name, err)
		}
		if len(app.Endpoints) == 0 {
			out.Rules = append(out.Rules, CoreRule{Name: app.Name, Priority: f.Priority, Permit: f.Action == "allow", Prefix: app.Prefix})
		}
		for i, e := range app.Endpoints {
			end := e.PortEnd
			if end == 0 {
				end = e.Port
			}
			rn := app.Name
			if len(app.Endpoints) > 1 {
				rn = fmt.Sprintf("%s-%d", app.Name, i+1)
			}
			out.Rules = append(out.Rules, CoreRule{Name: rn, Priority: f.Priority, Permit: f.Action == "allow", Prefix: app.Prefix,
				PortStart: e.Port, PortEnd: end, Protocol: protoNumbers[e.Protocol]})
		}
	}
	switch sl.DefaultBehavior {
	case AllowAll:
		out.Rules = append(out.Rules, CoreRule{Name: "ALLOW-ALL", Priority: 251, Permit: true, Prefix: "0.0.0.0/0"})
	case DenyAll:
		out.Rules = append(out.Rules, CoreRule{Name: "DENY-ALL", Priority: 251, Prefix: "0.0.0.0/0"})
	case AllowPublic:
		out.Rules = append(out.Rules,
			CoreRule{Name: "DENY-PRIVATE-10", Priority: 251, Prefix: "10.0.0.0/8"},
			CoreRule{Name: "DENY-PRIVATE-172", Priority: 252, Prefix: "172.16.0.0/12"},
			CoreRule{Name: "DENY-PRIVATE-192", Priority: 253, Prefix: "192.168.0.0/16"},
			CoreRule{Name: "ALLOW-PUBLIC", Priority: 254, Permit: true, Prefix: "0.0.0.0/0"})
	}
	return out, nil
}

func sortFilters(f []AppFilter) {
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j].Priority < f[j-1].Priority; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
}
