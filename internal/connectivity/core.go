package connectivity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Core is the mobile core's configuration API (the southbound contract).
// Every call is idempotent: putting the same object twice, or deleting a
// missing one, succeeds. Names are already unique hub-wide
// (organization-name) and already fit the core's name rule.
//
// An error that wraps ErrCoreRefused is the core's verdict on this very
// request (a malformed or invalid object): sending it again cannot help,
// so the pusher records it as failed and waits for the object to change
// or for the next reconcile. An error that wraps ErrCoreLogin means the
// core refused the credentials. Any other error is taken as passing (the
// core down, a timeout) and retried with back-off.
type Core interface {
	PutSubscriber(ctx context.Context, s CoreSubscriber) error
	DeleteSubscriber(ctx context.Context, imsi string) error
	PutDeviceGroup(ctx context.Context, g CoreDeviceGroup) error
	DeleteDeviceGroup(ctx context.Context, name string) error
	PutSlice(ctx context.Context, s CoreSlice) error
	DeleteSlice(ctx context.Context, name string) error
}

// CoreReader is a Core that can also be read back. With it the service
// reconciles: it compares what the core holds with what it should hold,
// queues only what differs, and repairs drift made behind its back (a
// subscriber key changed on the core's own console is the classic one).
type CoreReader interface {
	Snapshot(ctx context.Context) (CoreSnapshot, error)
}

// CoreSnapshot is everything the core holds, as the Core types describe
// it. Subscribers are keyed by IMSI, groups and slices by their core name.
type CoreSnapshot struct {
	Subscribers  map[string]CoreSubscriber
	DeviceGroups map[string]CoreDeviceGroup
	Slices       map[string]CoreSlice
}

// Errors a Core wraps; see Core.
// Their messages end the adapter's sentence, so they are short.
var (
	ErrCoreRefused = errors.New("not sent again until it changes")
	ErrCoreLogin   = errors.New("login refused")
)

// CoreSubscriber is a SIM the core must authenticate: TEST_READY or
// ACTIVATED and not over its data limit. Ki and OPc are 32 lower-case hex
// digits.
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
	Cells        []SmallCell // enabled cells only; Address is not sent
	UPF          string      // the site's edge node
	Rules        []CoreRule
}

// CoreRule is one application filtering rule; lower Priority first.
// SD-Core requires a traffic class on every rule (since webconsole
// v2.1.0) and enforces a bitrate per rule: the slice's bitrate goes on
// every permitting rule (the core dropped the slice-wide qos).
type CoreRule struct {
	Name         string
	Priority     int
	Permit       bool
	Prefix       string
	PortStart    int // 0: any port
	PortEnd      int
	Protocol     int // IP protocol number: 6 TCP, 17 UDP; 0 any
	MBRUplink    int64
	MBRDownlink  int64 // bits per second; 0: no limit
	TrafficClass TrafficClass
}

// coreName makes an object name unique across organizations and fit for
// the core, whose names must match ^[a-zA-Z][a-zA-Z0-9-_]{1,255}$. Object
// names are checked against that rule when they are entered; organization
// ids are not this package's to check, so one that starts with a digit or
// holds other characters (3m.agvs) is mapped: "o" in front, _ for each
// character the core refuses.
func coreName(org, name string) string { return coreOrg(org) + "-" + name }

func coreOrg(org string) string {
	b := []byte(org)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || !(b[0] >= 'a' && b[0] <= 'z' || b[0] >= 'A' && b[0] <= 'Z') {
		b = append([]byte("o"), b...)
	}
	return string(b)
}

func (s *Service) runPusher(ctx context.Context) {
	if s.opt.Core == nil {
		return
	}
	reader, canRead := s.opt.Core.(CoreReader)
	if !canRead {
		// A core that cannot be read back gets everything again: it may
		// have lost what it had.
		if err := s.markAllDirty(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("queue the full core reconcile", "err", err)
		}
	}
	var backoff, rbackoff time.Duration
	// Scheduling runs on the wall clock, not Options.Now, which only
	// stamps what is stored.
	nextReconcile := time.Now()
	for {
		if canRead && !time.Now().Before(nextReconcile) {
			if err := s.reconcile(ctx, reader); err != nil {
				if ctx.Err() != nil {
					return
				}
				rbackoff = min(max(2*rbackoff, s.opt.RetryMin), s.opt.RetryMax)
				nextReconcile = time.Now().Add(rbackoff)
				s.log.Warn("read the mobile core's configuration; will retry", "in", rbackoff, "err", err)
			} else {
				rbackoff = 0
				nextReconcile = time.Now().Add(s.opt.ReconcileEvery)
			}
		}
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
		var reconcileAt <-chan time.Time
		if canRead {
			reconcileAt = time.After(max(time.Until(nextReconcile), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case <-reconcileAt:
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
// names groups). A change that fails for a passing reason stays queued and
// the first such error is returned after the rest were tried; one the
// core refused leaves the queue, marked failed, until it changes again.
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
		gone, err := s.pushOne(ctx, it.org, it.kind, it.name)
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		s.noteCoreResult(err)
		if err := s.recordPush(ctx, it.org, it.kind, it.name, gone, err); err != nil {
			return err
		}
		if err != nil && !errors.Is(err, ErrCoreRefused) {
			if first == nil {
				first = fmt.Errorf("%s %q: %w", kindNames[it.kind], it.name, err)
			}
			// A refused login or no answer at all fails every other item
			// the same way: wait for the back-off instead of asking again.
			var uerr *url.Error
			if errors.Is(err, ErrCoreLogin) || errors.As(err, &uerr) {
				return first
			}
			continue
		}
		if err != nil {
			s.log.Warn("the mobile core refused a configuration; not retrying until it changes", "kind", it.kind, "name", it.name, "err", err)
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

// pushOne brings the core's copy of one object up to date. gone says the
// object was deleted from the core (it no longer exists here, or the SIM
// is not admitted).
func (s *Service) pushOne(ctx context.Context, org, kind, name string) (gone bool, err error) {
	core := s.opt.Core
	switch kind {
	case kindSubscriber:
		m, err := getSIM(ctx, s.db, org, name)
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if !coreAdmits(m) {
			return true, core.DeleteSubscriber(ctx, m.IMSI)
		}
		if m.Ki == "" || m.OPc == "" {
			return false, fmt.Errorf("SIM %s has no Ki or OPc, and the core cannot authenticate a subscriber without both; set them with shopfloor sim keys: %w", m.ICCID, ErrCoreRefused)
		}
		return false, core.PutSubscriber(ctx, coreSubscriber(m))
	case kindGroup:
		g, err := s.CoreDeviceGroup(ctx, org, name)
		if errors.Is(err, ErrNotFound) {
			return true, core.DeleteDeviceGroup(ctx, coreName(org, name))
		}
		if err != nil {
			return false, err
		}
		return false, core.PutDeviceGroup(ctx, g)
	case kindSlice:
		sl, err := s.CoreSlice(ctx, org, name)
		if errors.Is(err, ErrNotFound) {
			return true, core.DeleteSlice(ctx, coreName(org, name))
		}
		if err != nil {
			return false, err
		}
		return false, core.PutSlice(ctx, sl)
	}
	return false, nil
}

// coreAdmits says whether the core should hold the SIM as a subscriber.
func coreAdmits(m SIM) bool {
	return (m.State == StateActivated || m.State == StateTestReady) && m.SystemState != SystemDataLimit
}

func coreSubscriber(m SIM) CoreSubscriber {
	return CoreSubscriber{IMSI: m.IMSI, PLMN: m.IMSI[:5], Ki: strings.ToLower(m.Ki), OPc: strings.ToLower(m.OPc)}
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
	out.TrafficClass.UpdatedAt = time.Time{}
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

// bestEffort is the traffic class of a slice's rules when the slice has
// no device group to take one from: QCI 9 with ARP 9, 300 ms and 10^-6,
// the non-GBR default bearer of 3GPP TS 23.203.
func bestEffort() TrafficClass {
	return TrafficClass{Name: "best-effort", QCI: 9, ARP: 9, PDB: 300, PELR: 6}
}

// CoreSlice builds a slice's configuration for the core. The default
// behaviour becomes the last rules: DENY-ALL denies everything,
// ALLOW-ALL permits everything, ALLOW-PUBLIC denies the private ranges of
// RFC 1918 and permits the rest. Every rule carries the traffic class of
// the slice's device group with the highest priority (lowest ARP), and
// every permitting rule the slice's bitrate, which is how the core
// enforces a slice bitrate today.
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
		MCC: site.MCC, MNC: site.MNC, Cells: []SmallCell{}, UPF: site.EdgeNode, Rules: []CoreRule{}}
	var tc *TrafficClass
	for _, g := range sl.DeviceGroups {
		out.DeviceGroups = append(out.DeviceGroups, coreName(org, g))
		dg, err := s.GetDeviceGroup(ctx, org, g)
		if err != nil {
			return out, fmt.Errorf("slice %q: %w", name, err)
		}
		c, err := s.GetTrafficClass(ctx, org, dg.TrafficClass)
		if err != nil {
			return out, fmt.Errorf("slice %q: device group %q: %w", name, g, err)
		}
		if tc == nil || c.ARP < tc.ARP {
			tc = &c
		}
	}
	class := bestEffort()
	if tc != nil {
		class = *tc
	}
	class.Name, class.UpdatedAt = coreName(org, class.Name), time.Time{}
	for _, c := range site.SmallCells {
		if c.Enabled {
			c.Address, c.Enabled = "", false
			out.Cells = append(out.Cells, c)
		}
	}
	rule := func(r CoreRule) {
		r.TrafficClass = class
		if r.Permit && sl.MBR != nil {
			r.MBRUplink, r.MBRDownlink = sl.MBR.Uplink, sl.MBR.Downlink
		}
		out.Rules = append(out.Rules, r)
	}
	filters := append([]AppFilter(nil), sl.Filters...)
	sortFilters(filters)
	for _, f := range filters {
		app, err := s.GetApplication(ctx, org, f.Application)
		if err != nil {
			return out, fmt.Errorf("slice %q: %w", name, err)
		}
		if len(app.Endpoints) == 0 {
			rule(CoreRule{Name: app.Name, Priority: f.Priority, Permit: f.Action == "allow", Prefix: app.Prefix})
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
			rule(CoreRule{Name: rn, Priority: f.Priority, Permit: f.Action == "allow", Prefix: app.Prefix,
				PortStart: e.Port, PortEnd: end, Protocol: protoNumbers[e.Protocol]})
		}
	}
	switch sl.DefaultBehavior {
	case AllowAll:
		rule(CoreRule{Name: "ALLOW-ALL", Priority: 251, Permit: true, Prefix: "0.0.0.0/0"})
	case DenyAll:
		rule(CoreRule{Name: "DENY-ALL", Priority: 251, Prefix: "0.0.0.0/0"})
	case AllowPublic:
		rule(CoreRule{Name: "DENY-PRIVATE-10", Priority: 251, Prefix: "10.0.0.0/8"})
		rule(CoreRule{Name: "DENY-PRIVATE-172", Priority: 252, Prefix: "172.16.0.0/12"})
		rule(CoreRule{Name: "DENY-PRIVATE-192", Priority: 253, Prefix: "192.168.0.0/16"})
		rule(CoreRule{Name: "ALLOW-PUBLIC", Priority: 254, Permit: true, Prefix: "0.0.0.0/0"})
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
