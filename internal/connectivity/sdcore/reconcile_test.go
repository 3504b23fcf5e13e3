package sdcore_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore"
	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore/sdcoretest"
)

func start(t *testing.T, svc *connectivity.Service) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func status(t *testing.T, svc *connectivity.Service) connectivity.CoreStatus {
	t.Helper()
	return must[connectivity.CoreStatus](t)(svc.CoreStatus(context.Background(), "acme"))
}

func settled(t *testing.T, svc *connectivity.Service, objects int) func() bool {
	return func() bool {
		st := status(t, svc)
		return st.LastReconcile != nil && st.Counts[connectivity.CoreInSync] == objects && st.Counts[connectivity.CorePending] == 0 && st.Counts[connectivity.CoreFailed] == 0
	}
}

// holdsExactly checks the core against Shopfloor's own view of what it
// should hold.
func holdsExactly(t *testing.T, f *sdcoretest.Fake, svc *connectivity.Service, iccids []string) {
	t.Helper()
	ctx := context.Background()
	subs := f.Subscribers()
	if len(subs) != len(iccids) {
		t.Fatalf("the core holds %d subscribers, want %d", len(subs), len(iccids))
	}
	for _, id := range iccids {
		m := must[connectivity.SIM](t)(svc.GetSIM(ctx, "acme", id))
		s, ok := subs[m.IMSI]
		if !ok || s.Key != strings.ToLower(m.Ki) || s.OPc != strings.ToLower(m.OPc) {
			t.Fatalf("subscriber %s in the core: %+v, want Ki %s", m.IMSI, s, m.Ki)
		}
	}
	groups := f.DeviceGroups()
	if len(groups) != 2 {
		t.Fatalf("groups %v", groups)
	}
	for _, n := range []string{"agvs", "cameras"} {
		want := must[connectivity.CoreDeviceGroup](t)(svc.CoreDeviceGroup(ctx, "acme", n))
		got := groups["acme-"+n]
		if !slices.Equal(want.IMSIs, got.IMSIs) || got.IPDomains[0].UEIPPool != want.IPDomain.Subnet {
			t.Fatalf("group %s: core %d IMSIs %+v, want %d", n, len(got.IMSIs), got.IPDomains, len(want.IMSIs))
		}
	}
	sl := f.Slices()
	if len(sl) != 1 || len(sl["acme-robots"].Rules) != 6 {
		t.Fatalf("slices %+v", sl)
	}
}

// The test: a site with two device groups, a slice with rules and
// 100 SIMs is pushed; a SIM's key changes; the hub restarts. The core then
// holds exactly Shopfloor's state, nothing was refused, and once in sync
// nothing more is written however many reconciles pass.
func TestHundredSIMsKeyChangeAndRestart(t *testing.T) {
	f, _, url := fakeCore(t, sdcoretest.Options{User: "shopfloor", Password: "s3cret"})
	db := openDB(t)
	newSvc := func(every time.Duration) *connectivity.Service {
		c := must[*sdcore.Client](t)(sdcore.New(url, sdcore.Options{User: "shopfloor", Password: "s3cret"}))
		svc, err := connectivity.New(context.Background(), connectivity.Options{DB: db, Dialect: connectivity.SQLite, Core: c,
			RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, SchedulerEvery: time.Hour, FlushEvery: time.Hour, ReconcileEvery: every})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		return svc
	}
	svc := newSvc(time.Hour)
	iccids := seed(t, svc, 100)
	stop := start(t, svc)
	objects := 100 + 2 + 1
	waitFor(t, "the core in sync", settled(t, svc, objects))
	holdsExactly(t, f, svc, iccids)
	noRefusals(t, f)

	// The token expires; the next change logs in again.
	f.ExpireTokens()
	newKey := "00112233445566778899AABBCCDDEEFF"
	must[connectivity.SIM](t)(svc.UpdateSIM(context.Background(), "acme", "t", iccids[42], connectivity.SIMPatch{Ki: &newKey}))
	waitFor(t, "the new key in the core", func() bool {
		return f.Subscribers()["001010000000042"].Key == strings.ToLower(newKey)
	})
	waitFor(t, "the core in sync", settled(t, svc, objects))
	stop()
	svc.Close()
	if f.Stats().Logins != 2 {
		t.Fatalf("%d logins, want 2 (start, expiry)", f.Stats().Logins)
	}

	// Restart: a fresh client and service on the same database, reading
	// the core back every 50 ms.
	before := f.Stats()
	svc = newSvc(50 * time.Millisecond)
	stop = start(t, svc)
	defer stop()
	waitFor(t, "the core in sync after the restart", settled(t, svc, objects))
	time.Sleep(500 * time.Millisecond) // several reconciles
	after := f.Stats()
	holdsExactly(t, f, svc, iccids)
	noRefusals(t, f)
	if len(after.Writes) != len(before.Writes) {
		t.Fatalf("the restarted hub wrote to a core that was in sync: %v", after.Writes[len(before.Writes):])
	}
	if after.Requests-before.Requests < 2*(1+100+1+2+1+1) {
		t.Fatalf("only %d requests: the core was not read back repeatedly", after.Requests-before.Requests)
	}
}

// Drift made on the core's side is found and repaired, and the page says
// so.
func TestDriftIsRepaired(t *testing.T) {
	f, c, _ := fakeCore(t, sdcoretest.Options{})
	db := openDB(t)
	svc, err := connectivity.New(context.Background(), connectivity.Options{DB: db, Dialect: connectivity.SQLite, Core: c,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, SchedulerEvery: time.Hour, FlushEvery: time.Hour, ReconcileEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	iccids := seed(t, svc, 4)
	defer start(t, svc)()
	waitFor(t, "the core in sync", settled(t, svc, 4+3))
	f.SetSubscriberKey("001010000000001", "ffffffffffffffffffffffffffffffff")
	f.DropDeviceGroup("acme-cameras")
	waitFor(t, "the drift repaired", func() bool {
		_, ok := f.DeviceGroups()["acme-cameras"]
		return ok && f.Subscribers()["001010000000001"].Key == strings.ToLower(ki)
	})
	waitFor(t, "the core in sync", settled(t, svc, 4+3))
	holdsExactly(t, f, svc, iccids)
	st := status(t, svc)
	var notes []string
	for _, o := range st.Objects {
		if strings.HasPrefix(o.Detail, "repaired drift") {
			notes = append(notes, o.Kind+" "+o.Name+": "+o.Detail)
		}
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "devicegroup cameras: repaired drift: the core does not hold device group acme-cameras") {
		t.Fatalf("notes %v", notes)
	}
	noRefusals(t, f)
}

// A wrong password is a clear state, not a silent stall, and the client
// does not hammer the core.
func TestWrongPasswordIsAClearState(t *testing.T) {
	f, _, url := fakeCore(t, sdcoretest.Options{User: "shopfloor", Password: "right"})
	c := must[*sdcore.Client](t)(sdcore.New(url, sdcore.Options{User: "shopfloor", Password: "wrong"}))
	svc, err := connectivity.New(context.Background(), connectivity.Options{DB: openDB(t), Dialect: connectivity.SQLite, Core: c,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, SchedulerEvery: time.Hour, FlushEvery: time.Hour, ReconcileEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	seed(t, svc, 1)
	defer start(t, svc)()
	waitFor(t, "login_failed", func() bool { return status(t, svc).Link == connectivity.CoreLinkLoginFailed })
	time.Sleep(time.Second)
	st := status(t, svc)
	if !strings.Contains(st.LinkDetail, "check --sdcore-user and --sdcore-password") || !strings.Contains(st.LinkDetail, "401") {
		t.Fatalf("link detail %q", st.LinkDetail)
	}
	if st.Counts[connectivity.CoreInSync] != 0 || len(f.Subscribers()) != 0 {
		t.Fatalf("status %+v", st)
	}
	// Back-off: a second of a refused login is a handful of attempts, not
	// hundreds.
	if n := f.Stats().Requests; n > 30 {
		t.Fatalf("%d requests in a second with a wrong password", n)
	}
}

// A core before v2.1.1 keeps ip-domain-expanded only; the adapter reads
// that back and finds it in sync.
func TestLegacyCoreIsInSync(t *testing.T) {
	f, c, _ := fakeCore(t, sdcoretest.Options{Legacy: true})
	svc, err := connectivity.New(context.Background(), connectivity.Options{DB: openDB(t), Dialect: connectivity.SQLite, Core: c,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, SchedulerEvery: time.Hour, FlushEvery: time.Hour, ReconcileEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	iccids := seed(t, svc, 2)
	defer start(t, svc)()
	waitFor(t, "the core in sync", settled(t, svc, 2+3))
	g := f.DeviceGroups()["acme-agvs"]
	if g.IPDomainExpanded == nil || g.IPDomainExpanded.DNN != "internet" || len(g.IPDomains) != 0 {
		t.Fatalf("legacy group %+v", g)
	}
	w := len(f.Stats().Writes)
	time.Sleep(300 * time.Millisecond)
	if again := f.Stats().Writes[w:]; len(again) > 0 {
		t.Fatalf("a legacy core in sync was written again: %v", again)
	}
	// A key change reaches it through the SubsData half of the PUT body.
	newKey := "00112233445566778899AABBCCDDEEFF"
	must[connectivity.SIM](t)(svc.UpdateSIM(context.Background(), "acme", "t", iccids[1], connectivity.SIMPatch{Ki: &newKey}))
	waitFor(t, "the new key in the legacy core", func() bool {
		return f.Subscribers()["001010000000001"].Key == strings.ToLower(newKey)
	})
	noRefusals(t, f)
}
