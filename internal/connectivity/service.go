package connectivity

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Service. DB and Dialect are required.
type Options struct {
	DB        *sql.DB
	Dialect   Dialect
	Directory Directory // sites and devices; nil accepts every reference to them
	Alerts    Alerter   // nil: alerts are only logged
	Core      Core      // nil: nothing is pushed to a mobile core
	// Disconnect is told which device to drop when its SIM stops being
	// allowed (suspended, terminated, over its data limit); the hub wires
	// it to the gateway.
	Disconnect func(deviceID, reason string)
	Logger     *slog.Logger
	Now        func() time.Time
	// FlushEvery is how often metered usage is written and quotas checked
	// (default 10s); SchedulerEvery how often scheduled changes are looked
	// for (default 1s); RetryMin/RetryMax bound the core push back-off
	// (default 1s and 1m).
	FlushEvery, SchedulerEvery, RetryMin, RetryMax time.Duration
	// ReconcileEvery is how often a Core that is also a CoreReader is read
	// back and compared (default 5 minutes; also at start).
	ReconcileEvery time.Duration
}

// Service manages the connectivity model of every organization.
type Service struct {
	db   *sql.DB
	d    Dialect
	opt  Options
	log  *slog.Logger
	now  func() time.Time
	enf  *enforcer
	push chan struct{} // wakes the core pusher
	seq  atomic.Uint32
	core coreHealth

	ctx    context.Context // ends with Close; bulk jobs run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Object kinds, as stored in conn_objects and conn_refs.
const (
	kindSite        = "sitenet"
	kindGroup       = "devicegroup"
	kindClass       = "trafficclass"
	kindSlice       = "slice"
	kindApplication = "application"
	kindDevice      = "device"     // a registry device, only as a reference target
	kindRegSite     = "site"       // a registry site, checked but not stored as a reference
	kindSubscriber  = "subscriber" // outbox only: a SIM, by ICCID
)

// New migrates the conn_ tables and loads the enforcement index.
func New(ctx context.Context, opt Options) (*Service, error) {
	if opt.DB == nil || opt.Dialect.Name == "" {
		return nil, errors.New("connectivity: Options.DB and Options.Dialect are required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opt.FlushEvery, 10*time.Second)
	def(&opt.SchedulerEvery, time.Second)
	def(&opt.RetryMin, time.Second)
	def(&opt.RetryMax, time.Minute)
	def(&opt.ReconcileEvery, 5*time.Minute)
	if err := migrate(ctx, opt.DB, opt.Dialect); err != nil {
		return nil, fmt.Errorf("connectivity: %w", err)
	}
	s := &Service{db: opt.DB, d: opt.Dialect, opt: opt, log: opt.Logger, now: opt.Now, push: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.enf = newEnforcer(s)
	if err := s.enf.load(ctx); err != nil {
		return nil, fmt.Errorf("connectivity: load the enforcement index: %w", err)
	}
	return s, nil
}

// Close stops bulk jobs and waits for background writes. The database is
// the caller's.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Run runs the scheduler, the usage flusher and the core pusher until ctx
// ends. It starts with a full reconcile of the core.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.runScheduler(ctx) }()
	go func() { defer wg.Done(); s.runFlusher(ctx) }()
	go func() { defer wg.Done(); s.runPusher(ctx) }()
	wg.Wait()
	// Metered usage not yet written is written now.
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.enf.flush(fctx); err != nil {
		s.log.Error("write metered usage at shutdown", "err", err)
	}
	return nil
}

func (s *Service) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin a %s transaction: %w", s.d.Name, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit a %s transaction: %w", s.d.Name, err)
	}
	return nil
}

// newID is an id that sorts by creation time, and within one process by
// creation order; the random tail keeps processes apart.
func (s *Service) newID(t time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%014x%08x%04x", t.UnixMicro(), s.seq.Add(1), binary.BigEndian.Uint16(b[:]))
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ref is one reference an object holds.
type ref struct {
	field, kind, name string
}

// markDirty records in the outbox that the core's copy of (kind, name)
// must be brought up to date.
func (s *Service) markDirty(ctx context.Context, q querier, org, kind, name string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO conn_outbox (org, kind, name, seq) VALUES ($1, $2, $3, $4)
		ON CONFLICT (org, kind, name) DO UPDATE SET seq = excluded.seq`, org, kind, name, s.now().UnixNano())
	if err != nil {
		return fmt.Errorf("queue a core update: %w", err)
	}
	return nil
}

func (s *Service) wakePusher() {
	select {
	case s.push <- struct{}{}:
	default:
	}
}

// referrers lists who references (kind, name), as "kind name".
func referrers(ctx context.Context, q querier, org, kind, name string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT from_kind, from_name FROM conn_refs WHERE org = $1 AND to_kind = $2 AND to_name = $3 ORDER BY from_kind, from_name`, org, kind, name)
	if err != nil {
		return nil, fmt.Errorf("look up references: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k, n string
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out = append(out, kindNames[k]+" "+n)
	}
	return out, rows.Err()
}

var kindNames = map[string]string{
	kindSite: "site network", kindGroup: "device group", kindClass: "traffic class",
	kindSlice: "slice", kindApplication: "application", kindDevice: "device",
}

func objectExists(ctx context.Context, q querier, org, kind, name string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM conn_objects WHERE org = $1 AND kind = $2 AND name = $3`, org, kind, name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up %s %q: %w", kindNames[kind], name, err)
	}
	return true, nil
}

// getObject decodes the stored object into dst.
func getObject(ctx context.Context, q querier, org, kind, name string, dst any) error {
	var body string
	var upd int64
	err := q.QueryRowContext(ctx, `SELECT body, updated_at FROM conn_objects WHERE org = $1 AND kind = $2 AND name = $3`, org, kind, name).Scan(&body, &upd)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s %q not found: %w", kindNames[kind], name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("read %s %q: %w", kindNames[kind], name, err)
	}
	if err := json.Unmarshal([]byte(body), dst); err != nil {
		return fmt.Errorf("decode stored %s %q: %w", kindNames[kind], name, err)
	}
	return nil
}

func listObjects[T any](ctx context.Context, q querier, org, kind string) ([]T, error) {
	rows, err := q.QueryContext(ctx, `SELECT body FROM conn_objects WHERE org = $1 AND kind = $2 ORDER BY name`, org, kind)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", kindNames[kind], err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var v T
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			return nil, fmt.Errorf("decode stored %s: %w", kindNames[kind], err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// putObject checks refs, stores the object and its references, and returns
// whether it was created. check runs inside the transaction with the
// previous version (nil when new) for immutability checks.
func (s *Service) putObject(ctx context.Context, org, kind, name string, obj any, refs []ref, prev any, check func(q querier, existed bool) error) (bool, error) {
	// Registry lookups happen before the transaction: they use another
	// connection, which SQLite's single writer would make wait.
	for _, r := range refs {
		if err := s.checkExternal(ctx, org, r); err != nil {
			return false, err
		}
	}
	created := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		existed := true
		if err := getObject(ctx, tx, org, kind, name, prev); errors.Is(err, ErrNotFound) {
			existed = false
		} else if err != nil {
			return err
		}
		created = !existed
		if check != nil {
			if err := check(tx, existed); err != nil {
				return err
			}
		}
		for _, r := range refs {
			if r.kind == kindDevice || r.kind == kindRegSite {
				continue
			}
			ok, err := objectExists(ctx, tx, org, r.kind, r.name)
			if err != nil {
				return err
			}
			if !ok {
				return fieldErr(r.field, "%s %q does not exist: create it first", kindNames[r.kind], r.name)
			}
		}
		body, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encode %s: %w", kindNames[kind], err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO conn_objects (org, kind, name, body, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (org, kind, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
			org, kind, name, string(body), s.now().UnixMicro()); err != nil {
			return fmt.Errorf("store %s %q: %w", kindNames[kind], name, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM conn_refs WHERE org = $1 AND from_kind = $2 AND from_name = $3`, org, kind, name); err != nil {
			return fmt.Errorf("replace references: %w", err)
		}
		for _, r := range refs {
			if r.kind == kindRegSite {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO conn_refs (org, from_kind, from_name, to_kind, to_name) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT DO NOTHING`, org, kind, name, r.kind, r.name); err != nil {
				return fmt.Errorf("store a reference: %w", err)
			}
		}
		return s.markDependents(ctx, tx, org, kind, name)
	})
	if err != nil {
		return false, err
	}
	s.wakePusher()
	return created, s.enf.reloadPolicy(ctx, org)
}

// markDependents queues the core objects whose pushed form includes (kind,
// name).
func (s *Service) markDependents(ctx context.Context, q querier, org, kind, name string) error {
	switch kind {
	case kindSlice:
		return s.markDirty(ctx, q, org, kind, name)
	case kindGroup:
		// A slice's rules carry the traffic class of its groups.
		if err := s.markDirty(ctx, q, org, kind, name); err != nil {
			return err
		}
		_, err := s.markReferrers(ctx, q, org, kind, name, kindSlice)
		return err
	case kindClass:
		groups, err := s.markReferrers(ctx, q, org, kind, name, kindGroup)
		if err != nil {
			return err
		}
		for _, g := range groups {
			if _, err := s.markReferrers(ctx, q, org, kindGroup, g, kindSlice); err != nil {
				return err
			}
		}
		return nil
	case kindApplication, kindSite:
		_, err := s.markReferrers(ctx, q, org, kind, name, kindSlice)
		return err
	}
	return nil
}

// markReferrers queues the objects of fromKind that reference (kind,
// name) and returns their names.
func (s *Service) markReferrers(ctx context.Context, q querier, org, kind, name, fromKind string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT from_name FROM conn_refs WHERE org = $1 AND to_kind = $2 AND to_name = $3 AND from_kind = $4`, org, kind, name, fromKind)
	if err != nil {
		return nil, fmt.Errorf("find dependents: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := s.markDirty(ctx, q, org, fromKind, n); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func (s *Service) checkExternal(ctx context.Context, org string, r ref) error {
	dir := s.opt.Directory
	if dir == nil {
		return nil
	}
	var ok bool
	var err error
	switch r.kind {
	case kindDevice:
		ok, err = dir.DeviceExists(ctx, org, r.name)
	case kindRegSite:
		ok, err = dir.SiteExists(ctx, org, r.name)
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s %q: %w", kindNames[r.kind], r.name, err)
	}
	if !ok {
		what := "device"
		if r.kind == kindRegSite {
			what = "site"
		}
		return fieldErr(r.field, "%s %q does not exist in this organization", what, r.name)
	}
	return nil
}

func (s *Service) deleteObject(ctx context.Context, org, kind, name string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		ok, err := objectExists(ctx, tx, org, kind, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s %q not found: %w", kindNames[kind], name, ErrNotFound)
		}
		refs, err := referrers(ctx, tx, org, kind, name)
		if err != nil {
			return err
		}
		if len(refs) > 0 {
			return fmt.Errorf("%s %q is still used by %s: change those first: %w", kindNames[kind], name, strings.Join(refs, ", "), ErrConflict)
		}
		if err := s.markDependents(ctx, tx, org, kind, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM conn_refs WHERE org = $1 AND from_kind = $2 AND from_name = $3`, org, kind, name); err != nil {
			return fmt.Errorf("delete references: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM conn_objects WHERE org = $1 AND kind = $2 AND name = $3`, org, kind, name); err != nil {
			return fmt.Errorf("delete %s %q: %w", kindNames[kind], name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.wakePusher()
	return s.enf.reloadPolicy(ctx, org)
}

// PutSiteNetwork creates or replaces a site's network settings; the site
// must exist in the registry.
func (s *Service) PutSiteNetwork(ctx context.Context, org string, n SiteNetwork) (SiteNetwork, bool, error) {
	if err := validateRef("site", n.Site); err != nil {
		return n, false, err
	}
	if err := validateSiteNetwork(n); err != nil {
		return n, false, err
	}
	if n.SmallCells == nil {
		n.SmallCells = []SmallCell{}
	}
	n.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	var prev SiteNetwork
	created, err := s.putObject(ctx, org, kindSite, n.Site, n, []ref{{"site", kindRegSite, n.Site}}, &prev, func(q querier, _ bool) error {
		// The SIMs the site already serves must fit the new PLMN and range.
		groups, err := listObjects[DeviceGroup](ctx, q, org, kindGroup)
		if err != nil {
			return err
		}
		for _, g := range groups {
			if g.Site != n.Site {
				continue
			}
			for _, d := range g.Devices {
				iccid, imsi, err := deviceSIM(ctx, q, org, d)
				if err != nil {
					return err
				}
				if field, why := imsiMisfit(n, imsi); iccid != "" && field != "" {
					return fieldErr(field, "%s, but SIM %s of device %q (device group %q) is served there; move that SIM or device first", why, iccid, d, g.Name)
				}
			}
		}
		return nil
	})
	return n, created, err
}

// deviceSIM returns the ICCID and IMSI of the SIM bound to a device, or
// empty strings when none is.
func deviceSIM(ctx context.Context, q querier, org, device string) (iccid, imsi string, err error) {
	err = q.QueryRowContext(ctx, `SELECT iccid, imsi FROM conn_sims WHERE device = $1 AND org = $2`, device, org).Scan(&iccid, &imsi)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("look up the SIM of device %q: %w", device, err)
	}
	return iccid, imsi, nil
}

// siteNetworkOf returns a site's network settings, or nil when it has none.
func siteNetworkOf(ctx context.Context, q querier, org, site string) (*SiteNetwork, error) {
	var n SiteNetwork
	err := getObject(ctx, q, org, kindSite, site, &n)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// groupOfDevice names the device group a device belongs to; "" for none.
func groupOfDevice(ctx context.Context, q querier, org, device string) (string, error) {
	var group string
	err := q.QueryRowContext(ctx, `SELECT from_name FROM conn_refs WHERE org = $1 AND to_kind = $2 AND to_name = $3 AND from_kind = $4`, org, kindDevice, device, kindGroup).Scan(&group)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up the device's group: %w", err)
	}
	return group, nil
}

// checkIMSIForDevice refuses binding a SIM to a device whose device group
// is at a site whose PLMN or IMSI range the SIM's IMSI does not fit.
func (s *Service) checkIMSIForDevice(ctx context.Context, q querier, org, device, iccid, imsi string) error {
	group, err := groupOfDevice(ctx, q, org, device)
	if err != nil || group == "" {
		return err
	}
	var g DeviceGroup
	if err := getObject(ctx, q, org, kindGroup, group, &g); err != nil {
		return err
	}
	n, err := siteNetworkOf(ctx, q, org, g.Site)
	if err != nil || n == nil {
		return err
	}
	if _, why := imsiMisfit(*n, imsi); why != "" {
		return fieldErr("device", "SIM %s cannot serve device %q: %s, where the device's group %q is; use a SIM from that range", iccid, device, why, group)
	}
	return nil
}

// GetSiteNetwork returns a site's network settings.
func (s *Service) GetSiteNetwork(ctx context.Context, org, site string) (SiteNetwork, error) {
	var n SiteNetwork
	return n, getObject(ctx, s.db, org, kindSite, site, &n)
}

// ListSiteNetworks lists the organization's site network settings.
func (s *Service) ListSiteNetworks(ctx context.Context, org string) ([]SiteNetwork, error) {
	return listObjects[SiteNetwork](ctx, s.db, org, kindSite)
}

// DeleteSiteNetwork deletes a site's settings unless a slice uses them.
func (s *Service) DeleteSiteNetwork(ctx context.Context, org, site string) error {
	return s.deleteObject(ctx, org, kindSite, site)
}

// PutTrafficClass creates or replaces a traffic class.
func (s *Service) PutTrafficClass(ctx context.Context, org string, c TrafficClass) (TrafficClass, bool, error) {
	if err := validateTrafficClass(c); err != nil {
		return c, false, err
	}
	c.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	var prev TrafficClass
	created, err := s.putObject(ctx, org, kindClass, c.Name, c, nil, &prev, nil)
	return c, created, err
}

func (s *Service) GetTrafficClass(ctx context.Context, org, name string) (TrafficClass, error) {
	var c TrafficClass
	return c, getObject(ctx, s.db, org, kindClass, name, &c)
}

func (s *Service) ListTrafficClasses(ctx context.Context, org string) ([]TrafficClass, error) {
	return listObjects[TrafficClass](ctx, s.db, org, kindClass)
}

func (s *Service) DeleteTrafficClass(ctx context.Context, org, name string) error {
	return s.deleteObject(ctx, org, kindClass, name)
}

// PutApplication creates or replaces an application.
func (s *Service) PutApplication(ctx context.Context, org string, a Application) (Application, bool, error) {
	if err := validateApplication(a); err != nil {
		return a, false, err
	}
	if a.Endpoints == nil {
		a.Endpoints = []Endpoint{}
	}
	a.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	var prev Application
	created, err := s.putObject(ctx, org, kindApplication, a.Name, a, nil, &prev, nil)
	return a, created, err
}

func (s *Service) GetApplication(ctx context.Context, org, name string) (Application, error) {
	var a Application
	return a, getObject(ctx, s.db, org, kindApplication, name, &a)
}

func (s *Service) ListApplications(ctx context.Context, org string) ([]Application, error) {
	return listObjects[Application](ctx, s.db, org, kindApplication)
}

func (s *Service) DeleteApplication(ctx context.Context, org, name string) error {
	return s.deleteObject(ctx, org, kindApplication, name)
}

// PutDeviceGroup creates or replaces a device group. Its site must exist
// in the registry, its devices too, its traffic class here; a device
// belongs to at most one group.
func (s *Service) PutDeviceGroup(ctx context.Context, org string, g DeviceGroup) (DeviceGroup, bool, error) {
	if err := validateDeviceGroup(g); err != nil {
		return g, false, err
	}
	if g.Devices == nil {
		g.Devices = []string{}
	}
	g.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	refs := []ref{{"site", kindRegSite, g.Site}, {"trafficClass", kindClass, g.TrafficClass}}
	for i, d := range g.Devices {
		refs = append(refs, ref{fmt.Sprintf("devices[%d]", i), kindDevice, d})
	}
	var prev DeviceGroup
	created, err := s.putObject(ctx, org, kindGroup, g.Name, g, refs, &prev, func(q querier, existed bool) error {
		// A device in two groups would have two bitrates and two IP domains.
		for i, d := range g.Devices {
			var other string
			err := q.QueryRowContext(ctx, `SELECT from_name FROM conn_refs WHERE org = $1 AND to_kind = $2 AND to_name = $3 AND from_kind = $4 AND from_name <> $5`,
				org, kindDevice, d, kindGroup, g.Name).Scan(&other)
			if err == nil {
				return &FieldError{Field: fmt.Sprintf("devices[%d]", i), Msg: fmt.Sprintf("device %q is already in device group %q; remove it there first", d, other), Kind: ErrConflict}
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("look up the device's group: %w", err)
			}
		}
		// The devices' SIMs must fit the site's PLMN and IMSI range.
		n, err := siteNetworkOf(ctx, q, org, g.Site)
		if err != nil {
			return err
		}
		for i := 0; n != nil && i < len(g.Devices); i++ {
			iccid, imsi, err := deviceSIM(ctx, q, org, g.Devices[i])
			if err != nil {
				return err
			}
			if _, why := imsiMisfit(*n, imsi); iccid != "" && why != "" {
				return fieldErr(fmt.Sprintf("devices[%d]", i), "device %q holds SIM %s: %s; bind it a SIM from that range or put it in a group at its own site", g.Devices[i], iccid, why)
			}
		}
		// Devices that joined or left change their subscribers' groups.
		for _, d := range symmetricDiff(prev.Devices, g.Devices) {
			if err := s.markDeviceSIM(ctx, q, org, d); err != nil {
				return err
			}
		}
		return nil
	})
	return g, created, err
}

func (s *Service) markDeviceSIM(ctx context.Context, q querier, org, device string) error {
	var iccid string
	err := q.QueryRowContext(ctx, `SELECT iccid FROM conn_sims WHERE device = $1 AND org = $2`, device, org).Scan(&iccid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up the device's SIM: %w", err)
	}
	return s.markDirty(ctx, q, org, kindSubscriber, iccid)
}

func symmetricDiff(a, b []string) []string {
	in := map[string]int{}
	for _, x := range a {
		in[x] |= 1
	}
	for _, x := range b {
		in[x] |= 2
	}
	var out []string
	for x, v := range in {
		if v != 3 {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

func (s *Service) GetDeviceGroup(ctx context.Context, org, name string) (DeviceGroup, error) {
	var g DeviceGroup
	return g, getObject(ctx, s.db, org, kindGroup, name, &g)
}

func (s *Service) ListDeviceGroups(ctx context.Context, org string) ([]DeviceGroup, error) {
	return listObjects[DeviceGroup](ctx, s.db, org, kindGroup)
}

func (s *Service) DeleteDeviceGroup(ctx context.Context, org, name string) error {
	return s.deleteObject(ctx, org, kindGroup, name)
}

// PutSlice creates or replaces a slice. SST and SD cannot change; the
// site needs network settings; device groups and applications must exist;
// a device group belongs to at most one slice.
func (s *Service) PutSlice(ctx context.Context, org string, sl Slice) (Slice, bool, error) {
	if err := validateSlice(sl); err != nil {
		return sl, false, err
	}
	sd, _ := ParseSD(sl.SD)
	sl.SD = fmt.Sprintf("%06X", sd)
	if sl.DeviceGroups == nil {
		sl.DeviceGroups = []string{}
	}
	if sl.Filters == nil {
		sl.Filters = []AppFilter{}
	}
	sl.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	refs := []ref{{"site", kindSite, sl.Site}}
	for i, g := range sl.DeviceGroups {
		refs = append(refs, ref{fmt.Sprintf("deviceGroups[%d]", i), kindGroup, g})
	}
	for i, f := range sl.Filters {
		refs = append(refs, ref{fmt.Sprintf("filters[%d].application", i), kindApplication, f.Application})
	}
	var prev Slice
	created, err := s.putObject(ctx, org, kindSlice, sl.Name, sl, refs, &prev, func(q querier, existed bool) error {
		if existed && prev.SST != sl.SST {
			return fieldErr("sst", "cannot change from %d to %d: a slice's SST is fixed when it is created; create a new slice instead", prev.SST, sl.SST)
		}
		if existed && prev.SD != sl.SD {
			return fieldErr("sd", "cannot change from %s to %s: a slice's SD is fixed when it is created; create a new slice instead", prev.SD, sl.SD)
		}
		for i, g := range sl.DeviceGroups {
			var other string
			err := q.QueryRowContext(ctx, `SELECT from_name FROM conn_refs WHERE org = $1 AND to_kind = $2 AND to_name = $3 AND from_kind = $4 AND from_name <> $5`,
				org, kindGroup, g, kindSlice, sl.Name).Scan(&other)
			if err == nil {
				return &FieldError{Field: fmt.Sprintf("deviceGroups[%d]", i), Msg: fmt.Sprintf("device group %q is already in slice %q", g, other), Kind: ErrConflict}
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("look up the group's slice: %w", err)
			}
		}
		return nil
	})
	return sl, created, err
}

func (s *Service) GetSlice(ctx context.Context, org, name string) (Slice, error) {
	var sl Slice
	return sl, getObject(ctx, s.db, org, kindSlice, name, &sl)
}

func (s *Service) ListSlices(ctx context.Context, org string) ([]Slice, error) {
	return listObjects[Slice](ctx, s.db, org, kindSlice)
}

func (s *Service) DeleteSlice(ctx context.Context, org, name string) error {
	return s.deleteObject(ctx, org, kindSlice, name)
}
