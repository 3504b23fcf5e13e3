package connectivity_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

// memCore is a mobile core in memory that can be read back.
type memCore struct {
	mu     sync.Mutex
	subs   map[string]connectivity.CoreSubscriber
	groups map[string]connectivity.CoreDeviceGroup
	slices map[string]connectivity.CoreSlice
	writes int
	refuse string // refuse the device group of this name (ErrCoreRefused)
}

func newMemCore() *memCore {
	return &memCore{subs: map[string]connectivity.CoreSubscriber{}, groups: map[string]connectivity.CoreDeviceGroup{}, slices: map[string]connectivity.CoreSlice{}}
}

func (m *memCore) write() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
}

func (m *memCore) PutSubscriber(_ context.Context, s connectivity.CoreSubscriber) error {
	m.write()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[s.IMSI] = s
	return nil
}

func (m *memCore) DeleteSubscriber(_ context.Context, imsi string) error {
	m.write()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, imsi)
	return nil
}

func (m *memCore) PutDeviceGroup(_ context.Context, g connectivity.CoreDeviceGroup) error {
	m.mu.Lock()
	m.writes++
	refused := g.Name == m.refuse
	if !refused {
		m.groups[g.Name] = g
	}
	m.mu.Unlock()
	if refused {
		return errors.Join(errors.New("POST /config/v1/device-group/"+g.Name+": 400 bad group"), connectivity.ErrCoreRefused)
	}
	return nil
}

func (m *memCore) DeleteDeviceGroup(_ context.Context, name string) error {
	m.write()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.groups, name)
	return nil
}

func (m *memCore) PutSlice(_ context.Context, s connectivity.CoreSlice) error {
	m.write()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.slices[s.Name] = s
	return nil
}

func (m *memCore) DeleteSlice(_ context.Context, name string) error {
	m.write()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.slices, name)
	return nil
}

func (m *memCore) Snapshot(context.Context) (connectivity.CoreSnapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return connectivity.CoreSnapshot{Subscribers: maps.Clone(m.subs), DeviceGroups: maps.Clone(m.groups), Slices: maps.Clone(m.slices)}, nil
}

func (m *memCore) count() (int, int, int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subs), len(m.groups), len(m.slices), m.writes
}

func runSvc(t *testing.T, svc *connectivity.Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Reconcile on both databases: the core is filled, drift on its side is
// repaired (a lost subscriber, a stale key, a left-over group of ours),
// an object of another tool is left alone, and a refusal is a failed
// state with the core's words, not a retry loop.
func TestReconcileRepairsDrift(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		core := newMemCore()
		// First without a core, as a hub before --sdcore was set.
		f := newFixture(t, b)
		ctx := context.Background()
		seedModel(t, f, nil, nil)
		for i := range 3 {
			m := must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(i), IMSI: imsi(i),
				Ki: "465B5CE8B199B49FAA5F0A2EE238A6BC", OPc: "D4416644F6154936193433DD20A0ACE0"}))
			dev := "agv-" + string(rune('0'+i))
			must[connectivity.SIM](t)(f.svc.UpdateSIM(ctx, "acme", "t", m.ICCID, connectivity.SIMPatch{Device: &dev}))
			must[connectivity.SIM](t)(f.svc.SetState(ctx, "acme", "t", m.ICCID, connectivity.StateActivated))
		}
		// A SIM activated without keys cannot be a subscriber: failed, said
		// plainly. (With a core configured, activating it is refused.)
		m := must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(9), IMSI: imsi(9)}))
		must[connectivity.SIM](t)(f.svc.SetState(ctx, "acme", "t", m.ICCID, connectivity.StateActivated))
		core.groups["other-tools-group"] = connectivity.CoreDeviceGroup{Name: "other-tools-group"}
		core.groups["acme-gone"] = connectivity.CoreDeviceGroup{Name: "acme-gone"}
		f.svc.Close()
		opts := f.opts
		opts.Core, opts.ReconcileEvery, opts.RetryMin, opts.RetryMax = core, 30*time.Millisecond, 10*time.Millisecond, 40*time.Millisecond
		f.svc = must[*connectivity.Service](t)(connectivity.New(ctx, opts))
		t.Cleanup(f.svc.Close)
		m = must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(8), IMSI: imsi(8)}))
		_, err := f.svc.SetState(ctx, "acme", "t", m.ICCID, connectivity.StateActivated)
		wantField(t, err, "state", connectivity.ErrInvalid)
		runSvc(t, f.svc)

		status := func() connectivity.CoreStatus { return must[connectivity.CoreStatus](t)(f.svc.CoreStatus(ctx, "acme")) }
		eventually(t, "in sync", func() bool {
			st := status()
			return st.LastReconcile != nil && st.Counts[connectivity.CoreInSync] == 5 && st.Counts[connectivity.CoreFailed] == 1 && st.Counts[connectivity.CorePending] == 0
		})
		subs, groups, slc, _ := core.count()
		if subs != 3 || groups != 2 || slc != 1 {
			t.Fatalf("core holds %d subscribers, %d groups, %d slices", subs, groups, slc)
		}
		if _, ok := core.groups["acme-gone"]; ok {
			t.Fatal("the left-over group acme-gone was not deleted")
		}
		st := status()
		if st.Link != connectivity.CoreLinkOK || st.Unmanaged != 1 {
			t.Fatalf("link %s, unmanaged %d", st.Link, st.Unmanaged)
		}
		if st.Objects[0].State != connectivity.CoreFailed || !strings.Contains(st.Objects[0].Detail, "no Ki or OPc") {
			t.Fatalf("first object %+v", st.Objects[0])
		}
		// The slice's rules carry the group's traffic class.
		for _, r := range core.slices["acme-robots"].Rules {
			if r.TrafficClass.Name != "acme-platinum" || r.TrafficClass.ARP != 6 {
				t.Fatalf("rule %+v", r)
			}
		}

		// Drift on the core's side.
		core.mu.Lock()
		delete(core.subs, imsi(1))
		s := core.subs[imsi(2)]
		s.Ki = "ffffffffffffffffffffffffffffffff"
		core.subs[imsi(2)] = s
		core.mu.Unlock()
		eventually(t, "drift repaired", func() bool {
			core.mu.Lock()
			defer core.mu.Unlock()
			_, back := core.subs[imsi(1)]
			return back && strings.EqualFold(core.subs[imsi(2)].Ki, "465B5CE8B199B49FAA5F0A2EE238A6BC")
		})

		// Once in sync nothing is written, whatever the reconciles.
		eventually(t, "in sync", func() bool { return status().Counts[connectivity.CorePending] == 0 })
		_, _, _, w := core.count()
		time.Sleep(200 * time.Millisecond)
		if _, _, _, w2 := core.count(); w2 != w {
			t.Fatalf("%d writes to a core in sync", w2-w)
		}

		// A refused group is failed with the core's words, not retried.
		core.mu.Lock()
		core.refuse = "acme-agvs"
		core.mu.Unlock()
		put := func(_ any, _ bool, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		put(f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "agvs", Site: "plant", Devices: []string{"agv-0", "agv-1", "agv-2"},
			IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.250.0.0/16", MTU: 1400},
			MBRUplink: 8_000_000, MBRDownlink: 16_000_000, TrafficClass: "platinum"}))
		eventually(t, "the refusal shown", func() bool {
			for _, o := range status().Objects {
				if o.Kind == "devicegroup" && o.State == connectivity.CoreFailed && strings.Contains(o.Detail, "400 bad group") && !strings.Contains(o.Detail, "retrying") {
					return true
				}
			}
			return false
		})
		_, _, _, w = core.count()
		time.Sleep(100 * time.Millisecond)
		// Each reconcile finds the group still differs and tries once more:
		// a few writes in 100 ms at a 30 ms reconcile, not a tight loop.
		if _, _, _, w2 := core.count(); w2-w > 6 {
			t.Fatalf("%d writes in 100 ms for a refused group", w2-w)
		}
	})
}

// What the core refuses is refused when it is entered, with the core's
// rule in the message.
func TestCoreRulesCheckedOnInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		seedModel(t, f, nil, nil)
		_, _, err := f.svc.PutSiteNetwork(ctx, "acme", connectivity.SiteNetwork{Site: "plant", MCC: "001", MNC: "01",
			SmallCells: []connectivity.SmallCell{{ID: "gnb.1", TAC: 1, Address: "10.0.0.10", Enabled: true}}})
		wantField(t, err, "smallCells[0].id", connectivity.ErrInvalid)
		if !strings.Contains(err.Error(), connectivity.CoreNameRule) {
			t.Fatalf("message %q lacks the core's rule", err)
		}
		_, _, err = f.svc.PutSiteNetwork(ctx, "acme", connectivity.SiteNetwork{Site: "plant", MCC: "001", MNC: "01",
			SmallCells: []connectivity.SmallCell{{ID: "gnb1", TAC: 16777216, Address: "10.0.0.10", Enabled: true}}})
		wantField(t, err, "smallCells[0].tac", connectivity.ErrInvalid)
		_, _, err = f.svc.PutSlice(ctx, "acme", connectivity.Slice{Name: "fast", Site: "plant", SST: 1, SD: "1", DefaultBehavior: connectivity.AllowAll,
			MBR: &connectivity.Bitrate{Uplink: 3_000_000_000, Downlink: 1}})
		wantField(t, err, "mbr", connectivity.ErrInvalid)
		_, _, err = f.svc.PutSlice(ctx, "acme", connectivity.Slice{Name: "3d-printers", Site: "plant", SST: 1, SD: "1", DefaultBehavior: connectivity.AllowAll})
		wantField(t, err, "name", connectivity.ErrInvalid)
		if !strings.Contains(err.Error(), connectivity.CoreNameRule) {
			t.Fatalf("message %q lacks the core's rule", err)
		}
		bad := "xyz"
		m := must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(1), IMSI: imsi(1)}))
		_, err = f.svc.UpdateSIM(ctx, "acme", "t", m.ICCID, connectivity.SIMPatch{Ki: &bad})
		wantField(t, err, "ki", connectivity.ErrInvalid)
	})
}

// Organization ids the core's name rule refuses are mapped, not sent as
// they are.
func TestCoreNamesOfOddOrganizations(t *testing.T) {
	core := newMemCore()
	// No directory: every site reference is accepted.
	f := newFixture(t, backends(t)[0], func(o *connectivity.Options) { o.Core, o.Directory = core, nil })
	ctx := context.Background()
	for _, org := range []string{"3m", "acme.eu"} {
		must[connectivity.TrafficClass](t)(func() (connectivity.TrafficClass, error) {
			c, _, err := f.svc.PutTrafficClass(ctx, org, connectivity.TrafficClass{Name: "gold", ARP: 2, QCI: 9, PDB: 100, PELR: 6})
			return c, err
		}())
		g, err := f.svc.CoreDeviceGroup(ctx, org, "missing")
		if !errors.Is(err, connectivity.ErrNotFound) {
			t.Fatalf("%v %v", g, err)
		}
	}
	// The names as the core sees them, through a slice of each org.
	names := []string{}
	for _, org := range []string{"3m", "acme.eu"} {
		if _, _, err := f.svc.PutSiteNetwork(ctx, org, connectivity.SiteNetwork{Site: "plant", MCC: "001", MNC: "01"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.PutSlice(ctx, org, connectivity.Slice{Name: "robots", Site: "plant", SST: 1, SD: "1", DefaultBehavior: connectivity.AllowAll}); err != nil {
			t.Fatal(err)
		}
		sl := must[connectivity.CoreSlice](t)(f.svc.CoreSlice(ctx, org, "robots"))
		names = append(names, sl.Name, sl.Rules[0].TrafficClass.Name)
	}
	if want := []string{"o3m-robots", "o3m-best-effort", "acme_eu-robots", "acme_eu-best-effort"}; !slices.Equal(names, want) {
		t.Fatalf("core names %v, want %v", names, want)
	}
}
