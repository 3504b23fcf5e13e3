package sdcore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore"
	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore/sdcoretest"
)

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func setup(t *testing.T, core connectivity.Core, db *sql.DB) *connectivity.Service {
	t.Helper()
	svc, err := connectivity.New(context.Background(), connectivity.Options{DB: db, Dialect: connectivity.SQLite, Core: core,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, SchedulerEvery: time.Hour, FlushEvery: time.Hour,
		ReconcileEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

func openDB(t *testing.T) *sql.DB {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "c.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fakeCore starts a fake web console and a client logged in to it.
func fakeCore(t *testing.T, opt sdcoretest.Options) (*sdcoretest.Fake, *sdcore.Client, string) {
	t.Helper()
	f := sdcoretest.New(opt)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := must[*sdcore.Client](t)(sdcore.New(srv.URL, sdcore.Options{User: opt.User, Password: opt.Password}))
	return f, c, srv.URL
}

const (
	ki  = "465B5CE8B199B49FAA5F0A2EE238A6BC"
	opc = "D4416644F6154936193433DD20A0ACE0"
)

// seed makes a site with two cells (one enabled), two device groups, an
// application with two endpoints, a slice over both groups with a
// bitrate, and n activated SIMs split between the groups' devices.
func seed(t *testing.T, svc *connectivity.Service, n int) []string {
	ctx := context.Background()
	chk := func(_ any, _ bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	chk(svc.PutSiteNetwork(ctx, "acme", connectivity.SiteNetwork{Site: "plant", MCC: "001", MNC: "01",
		SmallCells: []connectivity.SmallCell{{ID: "gnb1", TAC: 1, Address: "10.0.0.10", Enabled: true}, {ID: "gnb2", TAC: 2, Address: "10.0.0.11"}},
		EdgeNode:   "upf.plant.example"}))
	chk(svc.PutTrafficClass(ctx, "acme", connectivity.TrafficClass{Name: "platinum", ARP: 6, QCI: 9, PDB: 300, PELR: 6}))
	chk(svc.PutTrafficClass(ctx, "acme", connectivity.TrafficClass{Name: "silver", ARP: 8, QCI: 9, PDB: 300, PELR: 6}))
	chk(svc.PutApplication(ctx, "acme", connectivity.Application{Name: "mes", Prefix: "10.20.0.0/24",
		Endpoints: []connectivity.Endpoint{{Port: 443, Protocol: "TCP"}, {Port: 5000, PortEnd: 5010, Protocol: "UDP"}}}))
	var agvs, cams, iccids []string
	for i := range n {
		dev := fmt.Sprintf("dev-%03d", i)
		if i%2 == 0 {
			agvs = append(agvs, dev)
		} else {
			cams = append(cams, dev)
		}
	}
	chk(svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "agvs", Site: "plant", Devices: agvs,
		IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.250.0.0/16", DNS: []string{"8.8.8.8", "8.8.4.4"}, MTU: 1460},
		MBRUplink: 4_000_000, MBRDownlink: 20_000_000, TrafficClass: "platinum"}))
	chk(svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "cameras", Site: "plant", Devices: cams,
		IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.251.0.0/16", MTU: 1400},
		MBRUplink: 10_000_000, MBRDownlink: 2_000_000, TrafficClass: "silver"}))
	chk(svc.PutSlice(ctx, "acme", connectivity.Slice{Name: "robots", Site: "plant", SST: 1, SD: "010203", DeviceGroups: []string{"agvs", "cameras"},
		DefaultBehavior: connectivity.AllowPublic, Filters: []connectivity.AppFilter{{Application: "mes", Priority: 10, Action: "allow"}},
		MBR: &connectivity.Bitrate{Uplink: 50_000_000, Downlink: 100_000_000, BurstBytes: 1 << 20}}))
	for i := range n {
		iccid := luhn(fmt.Sprintf("894450000000%06d", i))
		sim := must[connectivity.SIM](t)(svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid, IMSI: fmt.Sprintf("0010100000%05d", i), Ki: ki, OPc: opc}))
		dev := fmt.Sprintf("dev-%03d", i)
		must[connectivity.SIM](t)(svc.UpdateSIM(ctx, "acme", "t", sim.ICCID, connectivity.SIMPatch{Device: &dev}))
		must[connectivity.SIM](t)(svc.SetState(ctx, "acme", "t", sim.ICCID, connectivity.StateActivated))
		iccids = append(iccids, iccid)
	}
	return iccids
}

func luhn(body string) string {
	sum := 0
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + fmt.Sprint((10-sum%10)%10)
}

func noRefusals(t *testing.T, f *sdcoretest.Fake) {
	t.Helper()
	if r := f.Stats().Refused; len(r) > 0 {
		t.Fatalf("the core refused %d requests, first: %s", len(r), r[0])
	}
}

// The payloads are the upstream model and pass the console's own checks:
// a traffic class on every rule, the IP domain as ip-domains, the slice's
// bitrate on the permitting rules, the enabled gNodeB only.
func TestPushedConfigurationIsWhatTheCoreTakes(t *testing.T) {
	f, c, _ := fakeCore(t, sdcoretest.Options{})
	svc := setup(t, c, openDB(t))
	seed(t, svc, 2)
	if err := svc.PushPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	noRefusals(t, f)
	g, ok := f.DeviceGroups()["acme-agvs"]
	if !ok {
		t.Fatalf("groups %v", f.DeviceGroups())
	}
	if len(g.IPDomains) != 1 || g.IPDomains[0].DNN != "internet" || g.IPDomains[0].UEIPPool != "172.250.0.0/16" ||
		g.IPDomains[0].DNSSecondary != "8.8.4.4" || g.IPDomains[0].QoS == nil || g.IPDomains[0].QoS.Uplink != 4_000_000 ||
		g.IPDomains[0].QoS.TrafficClass == nil || g.IPDomains[0].QoS.TrafficClass.ARP != 6 || fmt.Sprint(g.IMSIs) != "[001010000000000]" {
		t.Fatalf("device group as stored: %+v", g)
	}
	s := f.Slices()["acme-robots"]
	if s.ID.SST != "1" || s.ID.SD != "010203" || fmt.Sprint(s.DeviceGroups) != "[acme-agvs acme-cameras]" ||
		len(s.SiteInfo.GNodeBs) != 1 || s.SiteInfo.GNodeBs[0] != (sdcore.GNodeB{Name: "gnb1", TAC: 1}) || s.SiteInfo.UPF.Name != "upf.plant.example" {
		t.Fatalf("slice as stored: %+v", s)
	}
	want := []string{"mes-1 permit 10.20.0.0/24 6 443-443", "mes-2 permit 10.20.0.0/24 17 5000-5010",
		"DENY-PRIVATE-10 deny 10.0.0.0/8 0 0-0", "DENY-PRIVATE-172 deny 172.16.0.0/12 0 0-0", "DENY-PRIVATE-192 deny 192.168.0.0/16 0 0-0",
		"ALLOW-PUBLIC permit 0.0.0.0/0 0 0-0"}
	if len(s.Rules) != len(want) {
		t.Fatalf("rules %+v", s.Rules)
	}
	for i, r := range s.Rules {
		if got := fmt.Sprintf("%s %s %s %d %d-%d", r.Name, r.Action, r.Endpoint, r.Protocol, r.PortStart, r.PortEnd); got != want[i] {
			t.Errorf("rule %d: %s, want %s", i, got, want[i])
		}
		// The group with the highest priority (platinum, ARP 6) sets the class.
		if r.TrafficClass == nil || r.TrafficClass.Name != "acme-platinum" || r.TrafficClass.ARP != 6 || r.TrafficClass.PELR != 6 {
			t.Errorf("rule %s traffic class %+v", r.Name, r.TrafficClass)
		}
		permit := r.Action == "permit"
		if permit != (r.MBRUplink == 50_000_000 && r.MBRDownlink == 100_000_000 && r.BitrateUnit == "bps") {
			t.Errorf("rule %s bitrate %d/%d %s", r.Name, r.MBRUplink, r.MBRDownlink, r.BitrateUnit)
		}
	}
	sub, ok := f.Subscribers()["001010000000000"]
	if !ok || sub.Key != strings.ToLower(ki) || sub.OPc != strings.ToLower(opc) || sub.SequenceNumber == "" {
		t.Fatalf("subscriber %+v", sub)
	}
	// Every payload also passes the validators on its own.
	for _, p := range []error{
		sdcore.ValidateDeviceGroup("acme-agvs", g), sdcore.ValidateSlice("acme-robots", s), sdcore.ValidateSubscriber(sub),
	} {
		if p != nil {
			t.Fatal(p)
		}
	}
}

// The fake refuses what the real console refuses, so the tests above can
// fail.
func TestFakeRefusesWhatTheCoreRefuses(t *testing.T) {
	f, c, _ := fakeCore(t, sdcoretest.Options{})
	ctx := context.Background()
	class := connectivity.TrafficClass{Name: "x", QCI: 9, ARP: 8, PDB: 300, PELR: 6}
	okSlice := connectivity.CoreSlice{Name: "acme-s", SST: 1, SD: "1", Site: "p", MCC: "001", MNC: "01",
		Cells: []connectivity.SmallCell{{ID: "gnb1", TAC: 1}}, Rules: []connectivity.CoreRule{{Name: "r", Permit: true, Prefix: "0.0.0.0/0", TrafficClass: class}}}
	if err := c.PutSlice(ctx, okSlice); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"rule without traffic class": func() error {
			s := okSlice
			s.Rules = []connectivity.CoreRule{{Name: "r", Permit: true, Prefix: "0.0.0.0/0"}}
			return c.PutSlice(ctx, s)
		},
		"name with a dot":     func() error { s := okSlice; s.Name = "acme.s"; return c.PutSlice(ctx, s) },
		"name led by a digit": func() error { s := okSlice; s.Name = "3m-s"; return c.PutSlice(ctx, s) },
		"gNodeB name with dot": func() error {
			s := okSlice
			s.Cells = []connectivity.SmallCell{{ID: "gnb.1", TAC: 1}}
			return c.PutSlice(ctx, s)
		},
		"TAC 0": func() error {
			s := okSlice
			s.Cells = []connectivity.SmallCell{{ID: "gnb1", TAC: 0}}
			return c.PutSlice(ctx, s)
		},
		"group name with space": func() error { return c.PutDeviceGroup(ctx, connectivity.CoreDeviceGroup{Name: "a b"}) },
		"subscriber without keys": func() error {
			return c.PutSubscriber(ctx, connectivity.CoreSubscriber{IMSI: "001010000000009", PLMN: "00101"})
		},
	}
	for name, fn := range cases {
		err := fn()
		if !errors.Is(err, connectivity.ErrCoreRefused) || !errors.Is(err, sdcore.ErrRejected) {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
	if n := len(f.Stats().Refused); n != len(cases) {
		t.Errorf("%d refusals recorded, want %d: %v", n, len(cases), f.Stats().Refused)
	}
}

// POST creates, PUT updates; a client that does not know the core's
// subscribers answers the 409 with PUT, and one that thinks a deleted
// subscriber is still there answers the 404 with POST.
func TestSubscriberCreateVersusUpdate(t *testing.T) {
	f, c, url := fakeCore(t, sdcoretest.Options{})
	ctx := context.Background()
	s := connectivity.CoreSubscriber{IMSI: "001010000000001", PLMN: "00101", Ki: strings.ToLower(ki), OPc: strings.ToLower(opc)}
	if err := c.PutSubscriber(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Ki = "00112233445566778899aabbccddeeff"
	if err := c.PutSubscriber(ctx, s); err != nil {
		t.Fatal(err)
	}
	noRefusals(t, f)
	if got := f.Subscribers()[s.IMSI].Key; got != s.Ki {
		t.Fatalf("key %s after the update", got)
	}
	// A second client (a restarted hub that has not read the core yet).
	c2 := must[*sdcore.Client](t)(sdcore.New(url, sdcore.Options{}))
	s.Ki = "ffeeddccbbaa99887766554433221100"
	if err := c2.PutSubscriber(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := f.Subscribers()[s.IMSI].Key; got != s.Ki {
		t.Fatalf("key %s after the 409 and PUT", got)
	}
	if r := f.Stats().Refused; len(r) != 1 || !strings.Contains(r[0], "409") {
		t.Fatalf("refusals %v, want the one 409", r)
	}
	// After a snapshot the client knows, and sends PUT straight away.
	if _, err := c2.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.PutSubscriber(ctx, s); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Stats().Refused); n != 1 {
		t.Fatalf("refusals %v", f.Stats().Refused)
	}
	// Deleted behind its back: PUT gets 404, POST follows.
	if err := c.DeleteSubscriber(ctx, s.IMSI); err != nil {
		t.Fatal(err)
	}
	if err := c2.PutSubscriber(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Subscribers()[s.IMSI]; !ok {
		t.Fatal("not created again after the 404")
	}
	// Deleting what is not there is fine.
	if err := c.DeleteSlice(ctx, "missing"); err != nil {
		t.Fatalf("deleting a missing slice: %v", err)
	}
	// The PUT body reads as the 3.0 line's SubsOverrideData and as the
	// SubsData of older releases.
	b, _ := json.Marshal(sdcore.SubscriberUpdatePayload(s))
	for _, want := range []string{`"key":"` + s.Ki + `"`, `"opc":"` + s.OPc + `"`, `"sequenceNumber":"16f3b3f70fc2"`,
		`"ueId":"imsi-001010000000001"`, `"permanentKey":{"permanentKeyValue":"` + s.Ki + `"}`, `"opc":{"opcValue":"` + s.OPc + `"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("PUT body %s lacks %s", b, want)
		}
	}
	if _, err := sdcore.New("ftp://x", sdcore.Options{}); err == nil {
		t.Fatal("accepted a non-HTTP URL")
	}
}

// The name rule Shopfloor checks on input is the core's.
func TestInputNameRuleIsTheCores(t *testing.T) {
	for _, n := range []string{"ab", "a1", "A-b_c", "3m", "m", "gnb.1", "a b", "-a", "_a", "a-", strings.Repeat("a", 256), strings.Repeat("a", 257), "été"} {
		if connectivity.ValidCoreName(n) != sdcore.ValidName(n) {
			t.Errorf("%q: Shopfloor says %v, the core %v", n, connectivity.ValidCoreName(n), sdcore.ValidName(n))
		}
	}
	if connectivity.CoreNameRule != sdcore.NamePattern {
		t.Fatalf("rule %s, the core's %s", connectivity.CoreNameRule, sdcore.NamePattern)
	}
}
