package connectivity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// simEntry is what enforcement needs of a SIM bound to a device. Entries
// are replaced, never changed, so readers need the lock only for the map.
type simEntry struct {
	org, iccid, device string
	state              State
	system             string
	lock               bool
	imei               string
	acc                *accSlot // shared by the entry's replacements
}

// accSlot caches the accumulator a device's traffic was last counted in,
// so that metering a message takes no lock.
type accSlot struct{ p atomic.Pointer[meterAcc] }

// meterAcc accumulates one usage key's traffic until a flush takes it.
type meterAcc struct {
	key                                  usageKey
	upBytes, downBytes, upMsgs, downMsgs atomic.Int64
}

// take empties the accumulator and returns what it held.
func (a *meterAcc) take() Usage {
	return Usage{UpBytes: a.upBytes.Swap(0), DownBytes: a.downBytes.Swap(0), UpMsgs: a.upMsgs.Swap(0), DownMsgs: a.downMsgs.Swap(0)}
}

func (a *meterAcc) peek() Usage {
	return Usage{UpBytes: a.upBytes.Load(), DownBytes: a.downBytes.Load(), UpMsgs: a.upMsgs.Load(), DownMsgs: a.downMsgs.Load()}
}

// give puts usage back after a failed write.
func (a *meterAcc) give(u Usage) {
	a.upBytes.Add(u.UpBytes)
	a.downBytes.Add(u.DownBytes)
	a.upMsgs.Add(u.UpMsgs)
	a.downMsgs.Add(u.DownMsgs)
}

// devicePolicy is what a device's group and slice impose on it.
type devicePolicy struct {
	group, slice    string
	upBps, downBps  int64   // bytes per second; 0 = unlimited
	up, down        *bucket // the device's own; nil when unlimited
	quota           *Quota
	sliceUp, sliceD *bucket
	arp             int // the group's traffic class's ARP; 0 when unknown
}

type usageKey struct {
	org, iccid, device, slice string
	hour                      int64 // unix seconds of the hour
}

// enforcer keeps the in-memory index CheckConnect and Account read, in
// step with the store: every write through the Service updates it after
// its transaction commits.
type enforcer struct {
	s *Service

	mu       sync.RWMutex
	byDevice map[string]*simEntry
	byICCID  map[string]string // ICCID → device
	policy   map[string]*devicePolicy
	orgDevs  map[string][]string // devices with a policy, per org

	// umu guards the set of accumulators, not their counts.
	umu     sync.Mutex
	pending map[usageKey]*meterAcc
}

func newEnforcer(s *Service) *enforcer {
	return &enforcer{s: s, byDevice: map[string]*simEntry{}, byICCID: map[string]string{},
		policy: map[string]*devicePolicy{}, orgDevs: map[string][]string{}, pending: map[usageKey]*meterAcc{}}
}

func (e *enforcer) load(ctx context.Context) error {
	rows, err := e.s.db.QueryContext(ctx, `SELECT org, iccid, device, state, system_state, imei_lock, imei FROM conn_sims WHERE device <> ''`)
	if err != nil {
		return err
	}
	orgs := map[string]bool{}
	for rows.Next() {
		var m simEntry
		var st string
		if err := rows.Scan(&m.org, &m.iccid, &m.device, &st, &m.system, &m.lock, &m.imei); err != nil {
			rows.Close()
			return err
		}
		m.state, m.acc = State(st), &accSlot{}
		e.byDevice[m.device], e.byICCID[m.iccid] = &m, m.device
		orgs[m.org] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	orows, err := e.s.db.QueryContext(ctx, `SELECT DISTINCT org FROM conn_objects WHERE kind = $1`, kindGroup)
	if err != nil {
		return err
	}
	for orows.Next() {
		var o string
		if err := orows.Scan(&o); err != nil {
			orows.Close()
			return err
		}
		orgs[o] = true
	}
	orows.Close()
	for o := range orgs {
		if err := e.reloadPolicy(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// putSIM updates the index after a SIM changed.
func (e *enforcer) putSIM(m SIM) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.byICCID[m.ICCID]; ok && old != m.Device {
		delete(e.byDevice, old)
		delete(e.byICCID, m.ICCID)
	}
	if m.Device == "" {
		return
	}
	e.byDevice[m.Device] = &simEntry{org: m.Org, iccid: m.ICCID, device: m.Device, state: m.State,
		system: m.SystemState, lock: m.IMEILock, imei: m.IMEI, acc: &accSlot{}}
	e.byICCID[m.ICCID] = m.Device
}

func (e *enforcer) removeDevice(device string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ent, ok := e.byDevice[device]; ok {
		delete(e.byICCID, ent.iccid)
		delete(e.byDevice, device)
	}
}

// reloadPolicy rebuilds the bitrates, quotas and slice buckets of an
// organization's devices from its device groups and slices.
func (e *enforcer) reloadPolicy(ctx context.Context, org string) error {
	groups, err := listObjects[DeviceGroup](ctx, e.s.db, org, kindGroup)
	if err != nil {
		return err
	}
	slices, err := listObjects[Slice](ctx, e.s.db, org, kindSlice)
	if err != nil {
		return err
	}
	classes, err := listObjects[TrafficClass](ctx, e.s.db, org, kindClass)
	if err != nil {
		return err
	}
	arp := make(map[string]int, len(classes))
	for _, c := range classes {
		arp[c.Name] = c.ARP
	}
	now := e.s.now()
	type sliceB struct {
		name     string
		up, down *bucket
	}
	sliceOf := map[string]sliceB{}
	for _, sl := range slices {
		b := sliceB{name: sl.Name}
		if m := sl.MBR; m != nil {
			b.up = newBucket(float64(m.Uplink)/8, burstOr(m.BurstBytes, m.Uplink), now)
			b.down = newBucket(float64(m.Downlink)/8, burstOr(m.BurstBytes, m.Downlink), now)
		}
		for _, g := range sl.DeviceGroups {
			sliceOf[g] = b
		}
	}
	pol := map[string]*devicePolicy{}
	var devs []string
	for _, g := range groups {
		sb := sliceOf[g.Name]
		for _, d := range g.Devices {
			p := &devicePolicy{group: g.Name, slice: sb.name, upBps: g.MBRUplink / 8, downBps: g.MBRDownlink / 8,
				quota: g.Quota, sliceUp: sb.up, sliceD: sb.down, arp: arp[g.TrafficClass]}
			// Device buckets start afresh with the new rates, a second's
			// worth of burst.
			if p.upBps > 0 {
				p.up = newBucket(float64(p.upBps), float64(p.upBps), now)
			}
			if p.downBps > 0 {
				p.down = newBucket(float64(p.downBps), float64(p.downBps), now)
			}
			pol[d] = p
			devs = append(devs, d)
		}
	}
	e.mu.Lock()
	for _, d := range e.orgDevs[org] {
		delete(e.policy, d)
	}
	for d, p := range pol {
		e.policy[d] = p
	}
	e.orgDevs[org] = devs
	e.mu.Unlock()
	return nil
}

// burstOr is the burst in bytes, or a tenth of a second at the rate.
func burstOr(burst, bps int64) float64 {
	if burst > 0 {
		return float64(burst)
	}
	return float64(bps) / 8 / 10
}

// CheckConnect decides whether a device may connect. A device without a
// SIM is not managed here and is allowed. A device whose SIM is not
// ACTIVATED, or is over its data limit, is refused. With the IMEI lock on,
// the first connection binds the IMEI and a different IMEI is refused and
// raises unauthorized_imei. It reads only memory; binding and alerts are
// written in the background.
func (s *Service) CheckConnect(ctx context.Context, deviceID, imei string) (Decision, error) {
	e := s.enf
	e.mu.RLock()
	ent := e.byDevice[deviceID]
	e.mu.RUnlock()
	if ent == nil {
		return Decision{Allow: true, Reason: "no SIM is bound to the device"}, nil
	}
	d := Decision{ICCID: ent.iccid}
	switch {
	case ent.state != StateActivated:
		d.Reason = fmt.Sprintf("SIM %s is %s, not ACTIVATED", ent.iccid, ent.state)
		return d, nil
	case ent.system == SystemDataLimit:
		d.Reason = fmt.Sprintf("SIM %s is over its data limit for this billing cycle", ent.iccid)
		return d, nil
	case !ent.lock:
		d.Allow = true
		return d, nil
	case imei == "":
		d.Reason = fmt.Sprintf("SIM %s is locked to an IMEI and the connection did not present one", ent.iccid)
		return d, nil
	case ent.imei == imei:
		d.Allow = true
		return d, nil
	case ent.imei == "":
		if err := ValidateIMEI("imei", imei); err != nil {
			d.Reason = err.Error()
			return d, nil
		}
		e.mu.Lock()
		cur := e.byDevice[deviceID]
		if cur != nil && cur.iccid == ent.iccid && cur.imei == "" {
			n := *cur
			n.imei = imei
			e.byDevice[deviceID] = &n
			ent = &n
		}
		e.mu.Unlock()
		if ent.imei != imei {
			// Another connection bound a different IMEI first.
			return s.CheckConnect(ctx, deviceID, imei)
		}
		s.background(func(ctx context.Context) { s.bindIMEI(ctx, ent.org, ent.iccid, imei) })
		d.Allow = true
		return d, nil
	}
	d.Reason = fmt.Sprintf("SIM %s is locked to another IMEI", ent.iccid)
	s.background(func(ctx context.Context) { s.unauthorizedIMEI(ctx, ent, imei) })
	return d, nil
}

// background runs fn on its own goroutine; Close waits for it.
func (s *Service) background(fn func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		fn(ctx)
	}()
}

func (s *Service) bindIMEI(ctx context.Context, org, iccid, imei string) {
	if _, err := s.db.ExecContext(ctx, `UPDATE conn_sims SET imei = $1, updated_at = $2 WHERE iccid = $3 AND org = $4 AND imei = ''`,
		imei, s.now().UnixMicro(), iccid, org); err != nil {
		s.log.Error("store the bound IMEI", "iccid", iccid, "err", err)
	}
}

func (s *Service) unauthorizedIMEI(ctx context.Context, ent *simEntry, imei string) {
	changed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE conn_sims SET system_state = $1, updated_at = $2 WHERE iccid = $3 AND system_state = ''`,
			SystemUnauthorized, s.now().UnixMicro(), ent.iccid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		changed = true
		return s.audit(ctx, tx, ent.org, ent.iccid, "system", "", SystemUnauthorized, "connection with IMEI "+imei)
	})
	if err != nil {
		s.log.Error("record an unauthorized IMEI", "iccid", ent.iccid, "err", err)
		return
	}
	if !changed {
		return
	}
	s.enf.mu.Lock()
	if cur := s.enf.byDevice[ent.device]; cur != nil && cur.iccid == ent.iccid {
		n := *cur
		n.system = SystemUnauthorized
		s.enf.byDevice[ent.device] = &n
	}
	s.enf.mu.Unlock()
	s.raise(ctx, Alert{Org: ent.org, Kind: SystemUnauthorized, Severity: "critical", ICCID: ent.iccid, Device: ent.device,
		Message: fmt.Sprintf("SIM %s (device %s) tried to connect from IMEI %s but is locked to IMEI %s: the SIM may have been moved to another handset", ent.iccid, ent.device, imei, ent.imei)})
}

func (s *Service) raise(ctx context.Context, a Alert) {
	a.At = s.now().UTC()
	s.log.Warn("connectivity alert", "org", a.Org, "kind", a.Kind, "iccid", a.ICCID, "message", a.Message)
	if s.opt.Alerts != nil {
		if err := s.opt.Alerts.Raise(ctx, a); err != nil {
			s.log.Error("raise a connectivity alert", "kind", a.Kind, "iccid", a.ICCID, "err", err)
		}
	}
}

// DefaultPriority is the rank of a device in no device group (or whose
// group's traffic class is unknown): ARP 8, the middle of 1–15, so classes
// can rank above and below it.
const DefaultPriority = 8

// Priority is how the gateway ranks a device's messages when the hub is
// saturated: its device group's traffic class's ARP, 1 (first) to 15
// (last), or DefaultPriority.
func (s *Service) Priority(deviceID string) int {
	e := s.enf
	e.mu.RLock()
	pol := e.policy[deviceID]
	e.mu.RUnlock()
	if pol == nil || pol.arp == 0 {
		return DefaultPriority
	}
	return pol.arp
}

// Account meters n bytes (one message) of a device's traffic and returns
// how long the sender should wait before sending them to stay within the
// device group's and the slice's bitrates (0: send now). A device without
// a SIM is neither metered nor limited.
func (s *Service) Account(deviceID string, dir Direction, n int) time.Duration {
	e := s.enf
	e.mu.RLock()
	ent := e.byDevice[deviceID]
	pol := e.policy[deviceID]
	e.mu.RUnlock()
	if ent == nil {
		return 0
	}
	now := s.now()
	k := usageKey{org: ent.org, iccid: ent.iccid, device: ent.device, hour: now.Unix() / 3600 * 3600}
	if pol != nil {
		k.slice = pol.slice
	}
	// The device's accumulator stays the same within an hour, so only the
	// first message of an hour (or after a change) takes the lock.
	a := ent.acc.p.Load()
	if a == nil || a.key != k {
		a = e.accumulator(k)
		ent.acc.p.Store(a)
	}
	if dir == Uplink {
		a.upBytes.Add(int64(n))
		a.upMsgs.Add(1)
	} else {
		a.downBytes.Add(int64(n))
		a.downMsgs.Add(1)
	}
	if pol == nil {
		return 0
	}
	var wait time.Duration
	b, sb := pol.up, pol.sliceUp
	if dir == Downlink {
		b, sb = pol.down, pol.sliceD
	}
	if b != nil {
		wait = b.reserve(now, float64(n))
	}
	if sb != nil {
		wait = max(wait, sb.reserve(now, float64(n)))
	}
	return wait
}

// accumulator returns the accumulator of a usage key, creating it.
func (e *enforcer) accumulator(k usageKey) *meterAcc {
	e.umu.Lock()
	defer e.umu.Unlock()
	a := e.pending[k]
	if a == nil {
		a = &meterAcc{key: k}
		e.pending[k] = a
	}
	return a
}

// bucket is a token bucket in bytes that may go into debt: reserve takes
// the tokens at once and says how long until the debt is paid, so a sender
// that waits that long keeps to the rate.
type bucket struct {
	mu          sync.Mutex
	rate, burst float64 // bytes per second, bytes
	tokens      float64
	last        time.Time
}

func newBucket(rate, burst float64, now time.Time) *bucket {
	if burst < 1 {
		burst = 1
	}
	return &bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *bucket) reserve(now time.Time, n float64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
		b.last = now
	}
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

func (s *Service) runFlusher(ctx context.Context) {
	t := time.NewTicker(s.opt.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.enf.flush(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("write metered usage", "err", err)
		}
	}
}

// FlushUsage writes metered usage now and checks quotas; Run does it every
// FlushEvery.
func (s *Service) FlushUsage(ctx context.Context) error { return s.enf.flush(ctx) }

func (e *enforcer) flush(ctx context.Context) error {
	e.umu.Lock()
	accs := make([]*meterAcc, 0, len(e.pending))
	for _, a := range e.pending {
		accs = append(accs, a)
	}
	e.umu.Unlock()
	type taken struct {
		a *meterAcc
		u Usage
	}
	var batch []taken
	for _, a := range accs {
		if u := a.take(); u != (Usage{}) {
			batch = append(batch, taken{a, u})
		}
	}
	touched := map[[2]string]bool{}
	if len(batch) > 0 {
		err := e.s.tx(ctx, func(tx *sql.Tx) error {
			for _, t := range batch {
				if err := addUsage(ctx, tx, t.a.key, t.u); err != nil {
					return err
				}
				touched[[2]string{t.a.key.org, t.a.key.iccid}] = true
			}
			return nil
		})
		if err != nil {
			// Put it back so the next flush tries again.
			for _, t := range batch {
				t.a.give(t.u)
			}
			return err
		}
	}
	// Forget accumulators of hours before the last: nothing counts into
	// them any more.
	old := e.s.now().Unix()/3600*3600 - 3600
	e.umu.Lock()
	for k, a := range e.pending {
		if k.hour < old && a.peek() == (Usage{}) {
			delete(e.pending, k)
		}
	}
	e.umu.Unlock()
	return e.checkQuotas(ctx, touched)
}

func addUsage(ctx context.Context, q querier, k usageKey, u Usage) error {
	_, err := q.ExecContext(ctx, `INSERT INTO conn_usage (org, iccid, hour, device, slice, up_bytes, down_bytes, up_msgs, down_msgs)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (org, iccid, hour, device, slice) DO UPDATE SET
			up_bytes = conn_usage.up_bytes + excluded.up_bytes, down_bytes = conn_usage.down_bytes + excluded.down_bytes,
			up_msgs = conn_usage.up_msgs + excluded.up_msgs, down_msgs = conn_usage.down_msgs + excluded.down_msgs`,
		k.org, k.iccid, k.hour, k.device, k.slice, u.UpBytes, u.DownBytes, u.UpMsgs, u.DownMsgs)
	if err != nil {
		return fmt.Errorf("store usage: %w", err)
	}
	return nil
}

// cycleStart is the start of the billing cycle holding t: the first of
// the month, UTC.
func cycleStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func cycleUsage(ctx context.Context, q querier, org, iccid string, from time.Time) (Usage, error) {
	var u Usage
	err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(up_bytes), 0), COALESCE(SUM(down_bytes), 0), COALESCE(SUM(up_msgs), 0), COALESCE(SUM(down_msgs), 0)
		FROM conn_usage WHERE org = $1 AND iccid = $2 AND hour >= $3`, org, iccid, from.Unix()).Scan(&u.UpBytes, &u.DownBytes, &u.UpMsgs, &u.DownMsgs)
	if err != nil {
		return u, fmt.Errorf("sum the SIM's usage: %w", err)
	}
	return u, nil
}

// checkQuotas raises the 80% and 100% alerts of the touched SIMs once per
// cycle, blocks SIMs whose group says so, and unblocks SIMs whose cycle
// has turned.
func (e *enforcer) checkQuotas(ctx context.Context, touched map[[2]string]bool) error {
	s := e.s
	start := cycleStart(s.now())
	// A new cycle lifts the data limit.
	rows, err := s.db.QueryContext(ctx, `SELECT org, iccid FROM conn_quota WHERE cycle < $1 AND level >= 100`, start.Unix())
	if err != nil {
		return fmt.Errorf("read quota states: %w", err)
	}
	var lift [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return err
		}
		lift = append(lift, k)
	}
	rows.Close()
	for _, k := range lift {
		if err := s.setSystem(ctx, k[0], k[1], SystemDataLimit, "", "a new billing cycle began"); err != nil {
			return err
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE conn_quota SET cycle = $1, level = 0 WHERE org = $2 AND iccid = $3`, start.Unix(), k[0], k[1]); err != nil {
			return fmt.Errorf("reset the quota state: %w", err)
		}
	}
	keys := make([][2]string, 0, len(touched))
	for k := range touched {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][1] < keys[j][1] })
	for _, k := range keys {
		e.mu.RLock()
		dev := e.byICCID[k[1]]
		pol := e.policy[dev]
		e.mu.RUnlock()
		if dev == "" || pol == nil || pol.quota == nil {
			continue
		}
		u, err := cycleUsage(ctx, s.db, k[0], k[1], start)
		if err != nil {
			return err
		}
		level := 0
		switch pct := float64(u.Bytes()) / float64(pol.quota.Bytes) * 100; {
		case pct >= 100:
			level = 100
		case pct >= 80:
			level = 80
		}
		if level == 0 {
			continue
		}
		var have, cyc int64
		err = s.db.QueryRowContext(ctx, `SELECT level, cycle FROM conn_quota WHERE org = $1 AND iccid = $2`, k[0], k[1]).Scan(&have, &cyc)
		if errors.Is(err, sql.ErrNoRows) || cyc < start.Unix() {
			have = 0
		} else if err != nil {
			return fmt.Errorf("read the quota state: %w", err)
		}
		if int64(level) <= have {
			continue
		}
		if _, err := s.db.ExecContext(ctx, `INSERT INTO conn_quota (org, iccid, cycle, level) VALUES ($1, $2, $3, $4)
			ON CONFLICT (org, iccid) DO UPDATE SET cycle = excluded.cycle, level = excluded.level`, k[0], k[1], start.Unix(), level); err != nil {
			return fmt.Errorf("store the quota state: %w", err)
		}
		a := Alert{Org: k[0], ICCID: k[1], Device: dev}
		if level == 80 {
			a.Kind, a.Severity = "data_limit_80", "warning"
			a.Message = fmt.Sprintf("SIM %s (device %s) has used %d of its %d bytes this billing cycle (80%%)", k[1], dev, u.Bytes(), pol.quota.Bytes)
			s.raise(ctx, a)
			continue
		}
		a.Kind, a.Severity = SystemDataLimit, "critical"
		a.Message = fmt.Sprintf("SIM %s (device %s) has used %d bytes, its whole quota of %d bytes for this billing cycle", k[1], dev, u.Bytes(), pol.quota.Bytes)
		if pol.quota.Action == "block" {
			a.Message += "; it is blocked until the cycle ends or a user activates it again"
			if err := s.setSystem(ctx, k[0], k[1], "", SystemDataLimit, a.Message); err != nil {
				return err
			}
			s.disconnect(dev, "its SIM is over its data limit")
		}
		s.raise(ctx, a)
	}
	return nil
}

// setSystem moves a SIM's system state from one value to another, audited.
func (s *Service) setSystem(ctx context.Context, org, iccid, from, to, reason string) error {
	changed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE conn_sims SET system_state = $1, updated_at = $2 WHERE org = $3 AND iccid = $4 AND system_state = $5`,
			to, s.now().UnixMicro(), org, iccid, from)
		if err != nil {
			return fmt.Errorf("update SIM %q: %w", iccid, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		changed = true
		return s.audit(ctx, tx, org, iccid, "system", from, to, reason)
	})
	if err != nil || !changed {
		return err
	}
	m, err := getSIM(ctx, s.db, org, iccid)
	if err != nil {
		return err
	}
	s.enf.putSIM(m)
	return nil
}

// SIMUsage returns a SIM's usage in the current billing cycle, including
// what is metered but not yet written.
func (s *Service) SIMUsage(ctx context.Context, org, iccid string) (SIMUsage, error) {
	start := cycleStart(s.now())
	u, err := cycleUsage(ctx, s.db, org, iccid, start)
	if err != nil {
		return SIMUsage{}, err
	}
	s.enf.umu.Lock()
	for k, a := range s.enf.pending {
		if k.org == org && k.iccid == iccid && k.hour >= start.Unix() {
			u.add(a.peek())
		}
	}
	s.enf.umu.Unlock()
	out := SIMUsage{CycleStart: start, Usage: u}
	s.enf.mu.RLock()
	if pol := s.enf.policy[s.enf.byICCID[iccid]]; pol != nil && pol.quota != nil {
		out.QuotaBytes = pol.quota.Bytes
	}
	s.enf.mu.RUnlock()
	return out, nil
}

// UsageByHour returns written usage per hour for one SIM, device or slice.
func (s *Service) UsageByHour(ctx context.Context, org string, q UsageQuery) ([]UsageRow, error) {
	col, val := "", ""
	n := 0
	for _, c := range []struct{ col, val string }{{"iccid", q.ICCID}, {"device", q.Device}, {"slice", q.Slice}} {
		if c.val != "" {
			col, val = c.col, c.val
			n++
		}
	}
	if n != 1 {
		return nil, fieldErr("iccid", "give exactly one of iccid, device or slice")
	}
	if q.To.IsZero() {
		q.To = s.now().Add(time.Hour)
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-24 * time.Hour)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT hour, SUM(up_bytes), SUM(down_bytes), SUM(up_msgs), SUM(down_msgs) FROM conn_usage
		WHERE org = $1 AND `+col+` = $2 AND hour >= $3 AND hour < $4 GROUP BY hour ORDER BY hour`, org, val, q.From.Unix()/3600*3600, q.To.Unix())
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer rows.Close()
	out := []UsageRow{}
	for rows.Next() {
		var r UsageRow
		var h int64
		if err := rows.Scan(&h, &r.UpBytes, &r.DownBytes, &r.UpMsgs, &r.DownMsgs); err != nil {
			return nil, err
		}
		r.Hour = time.Unix(h, 0).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// ImportCDRs adds radio-side usage records. A record ID seen before is
// counted as a duplicate and changes nothing; a record for an unknown
// IMSI fails alone.
func (s *Service) ImportCDRs(ctx context.Context, org string, recs []CDR) (CDRReport, error) {
	rep := CDRReport{Errors: []RowError{}}
	touched := map[[2]string]bool{}
	fail := func(i int, msg string) {
		rep.Failed++
		if len(rep.Errors) < MaxJobErrors {
			rep.Errors = append(rep.Errors, RowError{Row: i + 1, Error: msg})
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for i, r := range recs {
			if r.ID == "" || len(r.ID) > 128 {
				fail(i, `field "id" is required (at most 128 characters): the record's unique id`)
				continue
			}
			if err := ValidateIMSI("imsi", r.IMSI); err != nil {
				fail(i, err.Error())
				continue
			}
			if r.Start.IsZero() || r.End.Before(r.Start) || r.UpBytes < 0 || r.DownBytes < 0 {
				fail(i, `fields "start" and "end" must be times with end not before start, and the byte counts must not be negative`)
				continue
			}
			var iccid, device string
			err := tx.QueryRowContext(ctx, `SELECT iccid, device FROM conn_sims WHERE imsi = $1 AND org = $2`, r.IMSI, org).Scan(&iccid, &device)
			if errors.Is(err, sql.ErrNoRows) {
				fail(i, fmt.Sprintf("no SIM of this organization has IMSI %s", r.IMSI))
				continue
			}
			if err != nil {
				return fmt.Errorf("look up IMSI %s: %w", r.IMSI, err)
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO conn_cdrs (org, id, iccid, start_at, end_at, up_bytes, down_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
				org, r.ID, iccid, r.Start.UnixMicro(), r.End.UnixMicro(), r.UpBytes, r.DownBytes)
			if err != nil {
				return fmt.Errorf("store record %q: %w", r.ID, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				rep.Duplicate++
				continue
			}
			slice := ""
			s.enf.mu.RLock()
			if p := s.enf.policy[device]; p != nil {
				slice = p.slice
			}
			s.enf.mu.RUnlock()
			k := usageKey{org: org, iccid: iccid, device: device, slice: slice, hour: r.Start.Unix() / 3600 * 3600}
			if err := addUsage(ctx, tx, k, Usage{UpBytes: r.UpBytes, DownBytes: r.DownBytes}); err != nil {
				return err
			}
			touched[[2]string{org, iccid}] = true
			rep.Imported++
		}
		return nil
	})
	if err != nil {
		return CDRReport{}, err
	}
	return rep, s.enf.checkQuotas(ctx, touched)
}
