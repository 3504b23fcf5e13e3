package connectivity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// The states of one object in the mobile core, as the connectivity page
// shows them.
const (
	CoreInSync  = "in_sync" // the core holds exactly what Shopfloor holds
	CorePending = "pending" // a change (or repaired drift) is queued
	CoreFailed  = "failed"  // the last push failed; Detail has the core's words
)

// The states of the link to the mobile core.
const (
	CoreLinkStarting      = "starting"       // nothing asked yet
	CoreLinkOK            = "ok"             // the last request was answered
	CoreLinkUnreachable   = "unreachable"    // no answer, or a server error
	CoreLinkLoginFailed   = "login_failed"   // the core refused the user name or password
	CoreLinkNotConfigured = "not_configured" // no --sdcore
)

// coreHealth is the link state, kept in memory: it describes this
// process's last conversation with the core.
type coreHealth struct {
	mu            sync.Mutex
	state, detail string
	since         time.Time
	lastReconcile time.Time
	unmanaged     int
}

// CoreStatus is how the mobile core stands with one organization's
// configuration.
type CoreStatus struct {
	// Link is the state of the connection: ok, unreachable, login_failed,
	// starting or not_configured; LinkDetail says why in plain words.
	Link       string    `json:"link"`
	LinkDetail string    `json:"linkDetail,omitempty"`
	LinkSince  time.Time `json:"linkSince"`
	// LastReconcile is when the core was last read back and compared.
	LastReconcile *time.Time `json:"lastReconcile,omitempty"`
	// Unmanaged counts objects in the core that no organization here owns
	// (left alone).
	Unmanaged int `json:"unmanaged"`
	// Counts has the number of objects in_sync, pending and failed.
	Counts map[string]int `json:"counts"`
	// Objects lists every device group and slice, and the subscribers
	// (by ICCID) that are not in sync, at most 1000.
	Objects []CoreObjectStatus `json:"objects"`
}

// CoreObjectStatus is one object's state in the core.
type CoreObjectStatus struct {
	Kind   string    `json:"kind"` // subscriber (named by ICCID), devicegroup or slice
	Name   string    `json:"name"`
	State  string    `json:"state"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
}

func (s *Service) noteCoreResult(err error) {
	h := &s.core
	state, detail := CoreLinkOK, ""
	switch {
	case err == nil, errors.Is(err, ErrCoreRefused):
		// The core answered; a refusal is about the object, not the link.
	case errors.Is(err, ErrCoreLogin):
		state, detail = CoreLinkLoginFailed, err.Error()
	case errors.Is(err, context.Canceled):
		return
	default:
		state, detail = CoreLinkUnreachable, err.Error()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != state {
		h.since = s.now().UTC()
	}
	h.state, h.detail = state, detail
}

// recordPush stores the outcome of one push.
func (s *Service) recordPush(ctx context.Context, org, kind, name string, gone bool, perr error) error {
	var err error
	switch {
	case perr == nil && gone:
		_, err = s.db.ExecContext(ctx, `DELETE FROM conn_core_state WHERE org = $1 AND kind = $2 AND name = $3`, org, kind, name)
	case perr == nil:
		// Drift that was repaired stays visible until the next change.
		_, err = s.db.ExecContext(ctx, `INSERT INTO conn_core_state (org, kind, name, state, detail, at) VALUES ($1, $2, $3, $4, '', $5)
			ON CONFLICT (org, kind, name) DO UPDATE SET state = excluded.state, at = excluded.at,
			detail = CASE WHEN conn_core_state.detail LIKE 'drift: %' THEN 'repaired ' || conn_core_state.detail ELSE '' END`,
			org, kind, name, CoreInSync, s.now().UnixMicro())
	default:
		detail := perr.Error()
		if !errors.Is(perr, ErrCoreRefused) {
			detail += " (retrying)"
		}
		err = s.setCoreState(ctx, s.db, org, kind, name, CoreFailed, detail)
	}
	if err != nil {
		return fmt.Errorf("record the core's answer: %w", err)
	}
	return nil
}

func (s *Service) setCoreState(ctx context.Context, q querier, org, kind, name, state, detail string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO conn_core_state (org, kind, name, state, detail, at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (org, kind, name) DO UPDATE SET state = excluded.state, detail = excluded.detail, at = excluded.at`,
		org, kind, name, state, detail, s.now().UnixMicro())
	return err
}

// key of an object in the outbox and in conn_core_state.
type objKey struct{ org, kind, name string }

// reconcile reads everything the core holds, compares it with what it
// should hold, queues what differs (drift: missing, different, or left
// over) and marks the rest in sync. Objects in the core that belong to no
// organization here are counted and left alone: the core may serve others.
func (s *Service) reconcile(ctx context.Context, reader CoreReader) error {
	snap, err := reader.Snapshot(ctx)
	s.noteCoreResult(err)
	if err != nil {
		return err
	}
	drift := map[objKey]string{}
	inSync := map[objKey]bool{}
	noKeys := map[objKey]bool{}
	unmanaged := 0
	// What is queued goes out anyway; it is a change, not drift.
	queued := map[objKey]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT org, kind, name FROM conn_outbox`)
	if err != nil {
		return fmt.Errorf("read the core outbox: %w", err)
	}
	for rows.Next() {
		var k objKey
		if err := rows.Scan(&k.org, &k.kind, &k.name); err != nil {
			rows.Close()
			return err
		}
		queued[k] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	// Subscribers.
	rows, err = s.db.QueryContext(ctx, `SELECT org, iccid, imsi, state, system_state, ki, opc FROM conn_sims`)
	if err != nil {
		return fmt.Errorf("list SIMs for the reconcile: %w", err)
	}
	known := map[string]bool{}
	for rows.Next() {
		var m SIM
		var st string
		if err := rows.Scan(&m.Org, &m.ICCID, &m.IMSI, &st, &m.SystemState, &m.Ki, &m.OPc); err != nil {
			rows.Close()
			return err
		}
		m.State = State(st)
		known[m.IMSI] = true
		k := objKey{m.Org, kindSubscriber, m.ICCID}
		got, there := snap.Subscribers[m.IMSI]
		switch {
		case !coreAdmits(m) && there:
			drift[k] = fmt.Sprintf("the core still holds IMSI %s but the SIM is %s", m.IMSI, m.State)
		case !coreAdmits(m):
		case !there && (m.Ki == "" || m.OPc == ""):
			// Nothing to send: say why instead of queueing it again.
			noKeys[k] = true
		case !there:
			drift[k] = fmt.Sprintf("the core does not hold IMSI %s", m.IMSI)
		case !strings.EqualFold(got.Ki, m.Ki) || !strings.EqualFold(got.OPc, m.OPc):
			drift[k] = fmt.Sprintf("the core holds a different Ki or OPc for IMSI %s", m.IMSI)
		default:
			inSync[k] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for imsi := range snap.Subscribers {
		if !known[imsi] {
			unmanaged++
		}
	}

	// Device groups and slices.
	rows, err = s.db.QueryContext(ctx, `SELECT org, kind, name FROM conn_objects WHERE kind IN ('devicegroup', 'slice')`)
	if err != nil {
		return fmt.Errorf("list device groups and slices for the reconcile: %w", err)
	}
	var objs []objKey
	orgs := map[string]bool{}
	for rows.Next() {
		var k objKey
		if err := rows.Scan(&k.org, &k.kind, &k.name); err != nil {
			rows.Close()
			return err
		}
		objs = append(objs, k)
		orgs[k.org] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	wanted := map[string]bool{} // kind + core name
	for _, k := range objs {
		cn := coreName(k.org, k.name)
		wanted[k.kind+" "+cn] = true
		var diff []string
		switch k.kind {
		case kindGroup:
			want, err := s.CoreDeviceGroup(ctx, k.org, k.name)
			if err != nil {
				return fmt.Errorf("device group %q: %w", k.name, err)
			}
			got, there := snap.DeviceGroups[cn]
			if !there {
				drift[k] = fmt.Sprintf("the core does not hold device group %s", cn)
				continue
			}
			diff = diffGroup(want, got)
		case kindSlice:
			want, err := s.CoreSlice(ctx, k.org, k.name)
			if err != nil {
				return fmt.Errorf("slice %q: %w", k.name, err)
			}
			got, there := snap.Slices[cn]
			if !there {
				drift[k] = fmt.Sprintf("the core does not hold slice %s", cn)
				continue
			}
			diff = diffSlice(want, got)
		}
		if len(diff) > 0 {
			drift[k] = fmt.Sprintf("the core's copy of %s differs in %s", cn, strings.Join(diff, ", "))
		} else {
			inSync[k] = true
		}
	}
	// Left-overs: objects named for one of our organizations that it no
	// longer has. The longest matching prefix owns the name.
	owner := func(cn string) (org, name string) {
		best := 0
		for o := range orgs {
			p := coreOrg(o) + "-"
			if strings.HasPrefix(cn, p) && len(p) > best {
				best, org, name = len(p), o, cn[len(p):]
			}
		}
		return org, name
	}
	for kind, names := range map[string][]string{kindGroup: mapKeys(snap.DeviceGroups), kindSlice: mapKeys(snap.Slices)} {
		for _, cn := range names {
			if wanted[kind+" "+cn] {
				continue
			}
			org, name := owner(cn)
			if org == "" {
				unmanaged++
				continue
			}
			drift[objKey{org, kind, name}] = fmt.Sprintf("the core holds %s %s, which Shopfloor no longer has", kindNames[kind], cn)
		}
	}

	for k := range queued {
		delete(drift, k)
		delete(inSync, k)
		delete(noKeys, k)
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		for k, why := range drift {
			if err := s.markDirty(ctx, tx, k.org, k.kind, k.name); err != nil {
				return err
			}
			if err := s.setCoreState(ctx, tx, k.org, k.kind, k.name, CorePending, "drift: "+why); err != nil {
				return fmt.Errorf("record drift: %w", err)
			}
		}
		for k := range noKeys {
			if err := s.setCoreState(ctx, tx, k.org, k.kind, k.name, CoreFailed, "the SIM has no Ki or OPc, and the core cannot authenticate a subscriber without both; set them with shopfloor sim keys"); err != nil {
				return fmt.Errorf("record the reconcile: %w", err)
			}
		}
		for k := range inSync {
			// An object with a change queued stays pending.
			if _, err := tx.ExecContext(ctx, `INSERT INTO conn_core_state (org, kind, name, state, detail, at)
				SELECT $1, $2, $3, $4, '', $5 WHERE NOT EXISTS (SELECT 1 FROM conn_outbox WHERE org = $1 AND kind = $2 AND name = $3)
				ON CONFLICT (org, kind, name) DO UPDATE SET state = excluded.state, detail = excluded.detail, at = excluded.at
				WHERE conn_core_state.state <> 'in_sync'`, k.org, k.kind, k.name, CoreInSync, s.now().UnixMicro()); err != nil {
				return fmt.Errorf("record the reconcile: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	h := &s.core
	h.mu.Lock()
	h.lastReconcile, h.unmanaged = s.now().UTC(), unmanaged
	h.mu.Unlock()
	if len(drift) > 0 {
		s.log.Info("the mobile core differed from Shopfloor; repairing", "objects", len(drift))
		s.wakePusher()
	}
	return nil
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// diffGroup names the fields in which the core's copy of a group differs.
func diffGroup(want, got CoreDeviceGroup) []string {
	var d []string
	a, b := slices.Clone(want.IMSIs), slices.Clone(got.IMSIs)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		d = append(d, "IMSIs")
	}
	if want.Site != got.Site {
		d = append(d, "site")
	}
	if !reflect.DeepEqual(normDomain(want.IPDomain), normDomain(got.IPDomain)) {
		d = append(d, "IP domain")
	}
	if want.MBRUplink != got.MBRUplink || want.MBRDownlink != got.MBRDownlink {
		d = append(d, "bitrate")
	}
	if normClass(want.TrafficClass) != normClass(got.TrafficClass) {
		d = append(d, "traffic class")
	}
	return d
}

// normDomain is the domain as the core can hold it: two DNS servers.
func normDomain(d IPDomain) IPDomain {
	if len(d.DNS) > 2 {
		d.DNS = d.DNS[:2]
	}
	if len(d.DNS) == 0 {
		d.DNS = nil
	}
	return d
}

func normClass(c TrafficClass) TrafficClass {
	c.UpdatedAt = time.Time{}
	return c
}

// diffSlice names the fields in which the core's copy of a slice differs.
func diffSlice(want, got CoreSlice) []string {
	var d []string
	if want.SST != got.SST || !strings.EqualFold(want.SD, got.SD) {
		d = append(d, "slice id")
	}
	a, b := slices.Clone(want.DeviceGroups), slices.Clone(got.DeviceGroups)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		d = append(d, "device groups")
	}
	if want.Site != got.Site || want.MCC != got.MCC || want.MNC != got.MNC || want.UPF != got.UPF {
		d = append(d, "site")
	}
	if !reflect.DeepEqual(cells(want.Cells), cells(got.Cells)) {
		d = append(d, "gNodeBs")
	}
	if len(want.Rules) != len(got.Rules) {
		d = append(d, "rules")
	} else {
		for i := range want.Rules {
			w, g := want.Rules[i], got.Rules[i]
			w.TrafficClass, g.TrafficClass = normClass(w.TrafficClass), normClass(g.TrafficClass)
			if w != g {
				d = append(d, "rules")
				break
			}
		}
	}
	return d
}

func cells(c []SmallCell) []SmallCell {
	out := []SmallCell{}
	for _, x := range c {
		out = append(out, SmallCell{ID: x.ID, TAC: x.TAC})
	}
	return out
}

// CoreStatus reports the link to the mobile core and the state of each of
// the organization's objects there.
func (s *Service) CoreStatus(ctx context.Context, org string) (CoreStatus, error) {
	out := CoreStatus{Link: CoreLinkNotConfigured, Counts: map[string]int{CoreInSync: 0, CorePending: 0, CoreFailed: 0}, Objects: []CoreObjectStatus{}}
	if s.opt.Core == nil {
		return out, nil
	}
	h := &s.core
	h.mu.Lock()
	out.Link, out.LinkDetail, out.LinkSince, out.Unmanaged = h.state, h.detail, h.since, h.unmanaged
	if !h.lastReconcile.IsZero() {
		t := h.lastReconcile
		out.LastReconcile = &t
	}
	h.mu.Unlock()
	if out.Link == "" {
		out.Link = CoreLinkStarting
	}
	objs := map[objKey]*CoreObjectStatus{}
	rows, err := s.db.QueryContext(ctx, `SELECT kind, name, state, detail, at FROM conn_core_state WHERE org = $1`, org)
	if err != nil {
		return out, fmt.Errorf("read the core states: %w", err)
	}
	for rows.Next() {
		var o CoreObjectStatus
		var at int64
		if err := rows.Scan(&o.Kind, &o.Name, &o.State, &o.Detail, &at); err != nil {
			rows.Close()
			return out, err
		}
		o.At = time.UnixMicro(at).UTC()
		objs[objKey{org, o.Kind, o.Name}] = &o
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT kind, name, seq FROM conn_outbox WHERE org = $1`, org)
	if err != nil {
		return out, fmt.Errorf("read the core outbox: %w", err)
	}
	for rows.Next() {
		var kind, name string
		var seq int64
		if err := rows.Scan(&kind, &name, &seq); err != nil {
			rows.Close()
			return out, err
		}
		o := objs[objKey{org, kind, name}]
		switch {
		case o == nil:
			objs[objKey{org, kind, name}] = &CoreObjectStatus{Kind: kind, Name: name, State: CorePending, Detail: "a change is queued", At: time.Unix(0, seq).UTC()}
		case o.State == CoreInSync:
			o.State, o.Detail, o.At = CorePending, "a change is queued", time.Unix(0, seq).UTC()
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, err
	}
	for _, o := range objs {
		out.Counts[o.State]++
		if o.Kind != kindSubscriber || o.State != CoreInSync {
			out.Objects = append(out.Objects, *o)
		}
	}
	rank := map[string]int{CoreFailed: 0, CorePending: 1, CoreInSync: 2}
	sort.Slice(out.Objects, func(i, j int) bool {
		a, b := out.Objects[i], out.Objects[j]
		if rank[a.State] != rank[b.State] {
			return rank[a.State] < rank[b.State]
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	if len(out.Objects) > 1000 {
		out.Objects = out.Objects[:1000]
	}
	return out, nil
}
