package connectivity_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

func activeSIM(t testing.TB, f *fixture, n int, device string, lock bool) {
	t.Helper()
	ctx := context.Background()
	must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(n), IMSI: imsi(n)}))
	must[connectivity.SIM](t)(f.svc.UpdateSIM(ctx, "acme", "token:a", iccid(n), connectivity.SIMPatch{Device: &device, IMEILock: &lock}))
	must[connectivity.SIM](t)(f.svc.SetState(ctx, "acme", "token:a", iccid(n), connectivity.StateActivated))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckConnect(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		if d, _ := f.svc.CheckConnect(ctx, "wired-plc", ""); !d.Allow {
			t.Fatal("a device without a SIM was refused")
		}
		must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(1), IMSI: imsi(1)}))
		dev, lock := "agv-1", true
		must[connectivity.SIM](t)(f.svc.UpdateSIM(ctx, "acme", "token:a", iccid(1), connectivity.SIMPatch{Device: &dev, IMEILock: &lock}))
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", "490154203237518"); d.Allow || d.ICCID != iccid(1) {
			t.Fatalf("SIM in INVENTORY allowed: %+v", d)
		}
		must[connectivity.SIM](t)(f.svc.SetState(ctx, "acme", "token:a", iccid(1), connectivity.StateActivated))
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", "490154203237518"); !d.Allow {
			t.Fatalf("first IMEI refused: %+v", d)
		}
		waitFor(t, "the IMEI to be stored", func() bool {
			m, _ := f.svc.GetSIM(ctx, "acme", iccid(1))
			return m.IMEI == "490154203237518"
		})
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", "490154203237518"); !d.Allow {
			t.Fatalf("bound IMEI refused: %+v", d)
		}
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", "356938035643809"); d.Allow {
			t.Fatal("another IMEI allowed")
		}
		waitFor(t, "the unauthorized_imei alert", func() bool { return slices.Contains(f.alerts.kinds(), connectivity.SystemUnauthorized) })
		m := must[connectivity.SIM](t)(f.svc.GetSIM(ctx, "acme", iccid(1)))
		if m.SystemState != connectivity.SystemUnauthorized {
			t.Fatalf("system state %q", m.SystemState)
		}
		// A fresh service rebuilds the index from the store.
		svc2 := must[*connectivity.Service](t)(connectivity.New(ctx, f.opts))
		defer svc2.Close()
		if d, _ := svc2.CheckConnect(ctx, "agv-1", "356938035643809"); d.Allow {
			t.Fatal("restarted service allowed another IMEI")
		}
		if d, _ := svc2.CheckConnect(ctx, "agv-1", "490154203237518"); !d.Allow {
			t.Fatalf("restarted service refused the bound IMEI: %+v", d)
		}
		// Suspending drops the device and refuses it.
		must[connectivity.SIM](t)(f.svc.SetState(ctx, "acme", "token:a", iccid(1), connectivity.StateSuspended))
		if !slices.Contains(f.dropped(), "agv-1") {
			t.Fatalf("dropped %v", f.dropped())
		}
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", "490154203237518"); d.Allow {
			t.Fatal("suspended SIM allowed")
		}
		// Moving the SIM to another device frees the first.
		dev2 := "agv-2"
		must[connectivity.SIM](t)(f.svc.UpdateSIM(ctx, "acme", "token:a", iccid(1), connectivity.SIMPatch{Device: &dev2}))
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", ""); !d.Allow || d.ICCID != "" {
			t.Fatalf("device without its SIM: %+v", d)
		}
	})
}

func TestQuotaAlertsAndBlock(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		seedModel(t, f, &connectivity.Quota{Bytes: 10_000, Action: "block"}, nil)
		activeSIM(t, f, 1, "agv-1", false)
		f.svc.Account("agv-1", connectivity.Uplink, 5000)
		f.svc.Account("agv-1", connectivity.Downlink, 3500)
		if err := f.svc.FlushUsage(ctx); err != nil {
			t.Fatal(err)
		}
		if k := f.alerts.kinds(); !slices.Equal(k, []string{"data_limit_80"}) {
			t.Fatalf("alerts %v", k)
		}
		u := must[connectivity.SIMUsage](t)(f.svc.SIMUsage(ctx, "acme", iccid(1)))
		if u.UpBytes != 5000 || u.DownBytes != 3500 || u.UpMsgs != 1 || u.DownMsgs != 1 || u.QuotaBytes != 10_000 {
			t.Fatalf("usage %+v", u)
		}
		// Radio-side records count too, once per record id.
		cdr := connectivity.CDR{ID: "r1", IMSI: imsi(1), Start: f.clock.Now().Add(-time.Minute), End: f.clock.Now(), UpBytes: 1000, DownBytes: 600}
		rep := must[connectivity.CDRReport](t)(f.svc.ImportCDRs(ctx, "acme", []connectivity.CDR{cdr, {ID: "r2", IMSI: imsi(7), Start: cdr.Start, End: cdr.End}}))
		if rep.Imported != 1 || rep.Failed != 1 {
			t.Fatalf("report %+v", rep)
		}
		rep = must[connectivity.CDRReport](t)(f.svc.ImportCDRs(ctx, "acme", []connectivity.CDR{cdr}))
		if rep.Duplicate != 1 || rep.Imported != 0 {
			t.Fatalf("second import %+v", rep)
		}
		if k := f.alerts.kinds(); !slices.Equal(k, []string{"data_limit_80", connectivity.SystemDataLimit}) {
			t.Fatalf("alerts %v", k)
		}
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", ""); d.Allow {
			t.Fatal("SIM over its limit allowed")
		}
		if !slices.Contains(f.dropped(), "agv-1") {
			t.Fatal("device over its limit not dropped")
		}
		rows := must[[]connectivity.UsageRow](t)(f.svc.UsageByHour(ctx, "acme", connectivity.UsageQuery{Slice: "robots"}))
		// The record started at 11:59, the metered traffic at 12:00.
		if len(rows) != 2 || rows[0].Bytes() != 1600 || rows[1].Bytes() != 8500 {
			t.Fatalf("slice usage %+v", rows)
		}
		// A new month lifts the block.
		f.clock.Add(30 * 24 * time.Hour)
		if err := f.svc.FlushUsage(ctx); err != nil {
			t.Fatal(err)
		}
		if d, _ := f.svc.CheckConnect(ctx, "agv-1", ""); !d.Allow {
			t.Fatalf("new cycle still blocked: %+v", d)
		}
	})
}

// TestBitrateWithinTenPercent sends as fast as Account allows over 60
// seconds of a simulated clock and checks the achieved rate.
func TestBitrateWithinTenPercent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mbr    *connectivity.Bitrate
		device string
		want   float64 // bytes per second
	}{
		{"device group uplink 8 Mbit/s", nil, "agv-1", 1_000_000},
		{"slice aggregate 4 Mbit/s", &connectivity.Bitrate{Uplink: 4_000_000, Downlink: 4_000_000, BurstBytes: 64_000}, "agv-1", 500_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, backend{"sqlite", openSQLite})
			seedModel(t, f, nil, tc.mbr)
			activeSIM(t, f, 1, "agv-1", false)
			activeSIM(t, f, 2, "agv-2", false)
			start := f.clock.Now()
			// Two devices share the slice; each alone is under its group's rate.
			sent := 0.0
			next := map[string]time.Time{"agv-1": start, "agv-2": start}
			devs := []string{"agv-1"}
			if tc.mbr != nil {
				devs = append(devs, "agv-2")
			}
			for {
				sort.Slice(devs, func(i, j int) bool { return next[devs[i]].Before(next[devs[j]]) })
				d := devs[0]
				now := next[d]
				if now.Sub(start) >= 60*time.Second {
					break
				}
				f.clock.t = now
				w := f.svc.Account(d, connectivity.Uplink, 1500)
				sent += 1500
				next[d] = now.Add(w)
			}
			rate := sent / 60
			if math.Abs(rate-tc.want)/tc.want > 0.10 {
				t.Fatalf("achieved %.0f B/s, configured %.0f B/s", rate, tc.want)
			}
			t.Logf("achieved %.0f B/s of %.0f B/s", rate, tc.want)
		})
	}
}

// BenchmarkCheckConnect measures the decision for an activated,
// IMEI-locked SIM among 2,000 bound SIMs (the index is a map, so the count does not change the cost).
func BenchmarkCheckConnect(b *testing.B) {
	f := newFixture(b, backend{"sqlite", openSQLite}, func(o *connectivity.Options) { o.Directory = nil })
	ctx := context.Background()
	rows := make([]connectivity.SIMRow, 0, 2000)
	for i := range 2000 {
		rows = append(rows, connectivity.SIMRow{ICCID: iccid(i), IMSI: imsi(i)})
	}
	if _, _, err := f.svc.ImportSIMs(ctx, "acme", rows, nil); err != nil {
		b.Fatal(err)
	}
	lock := true
	for i := range 2000 {
		dev := fmt.Sprintf("dev-%d", i)
		must[connectivity.SIM](b)(f.svc.UpdateSIM(ctx, "acme", "t", iccid(i), connectivity.SIMPatch{Device: &dev, IMEILock: &lock}))
		must[connectivity.SIM](b)(f.svc.SetState(ctx, "acme", "t", iccid(i), connectivity.StateActivated))
	}
	if d, _ := f.svc.CheckConnect(ctx, "dev-7", "490154203237518"); !d.Allow {
		b.Fatal(d)
	}
	b.ReportAllocs()
	lat := make([]time.Duration, 0, min(b.N, 1_000_000))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		d, _ := f.svc.CheckConnect(ctx, "dev-7", "490154203237518")
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t0))
		}
		if !d.Allow {
			b.Fatal(d)
		}
	}
	b.StopTimer()
	if len(lat) > 100 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

// TestPriorityFromTrafficClass checks the rank the gateway orders work by
// under overload: the device group's traffic class's ARP.
func TestPriorityFromTrafficClass(t *testing.T) {
	f := newFixture(t, backend{"sqlite", openSQLite})
	ctx := context.Background()
	seedModel(t, f, nil, nil)
	if p := f.svc.Priority("agv-1"); p != 6 {
		t.Fatalf("agv-1 in class platinum (ARP 6): priority %d", p)
	}
	if p := f.svc.Priority("wired-plc"); p != connectivity.DefaultPriority {
		t.Fatalf("a device in no group: priority %d", p)
	}
	if _, _, err := f.svc.PutTrafficClass(ctx, "acme", connectivity.TrafficClass{Name: "platinum", ARP: 2, QCI: 9, PDB: 300, PELR: 6}); err != nil {
		t.Fatal(err)
	}
	if p := f.svc.Priority("agv-1"); p != 2 {
		t.Fatalf("after the class changed to ARP 2: priority %d", p)
	}
}

// BenchmarkAccount measures metering one message of a device with an
// activated SIM in a device group inside a slice with an aggregate
// bitrate (usage per SIM, device and slice; device and slice buckets),
// from as many goroutines as the gateway has busy connections.
func BenchmarkAccount(b *testing.B) {
	// The real clock, as in the hub: the fixture's settable one takes a lock.
	f := newFixture(b, backend{"sqlite", openSQLite}, func(o *connectivity.Options) { o.Now = nil })
	ctx := context.Background()
	check := func(_ any, _ bool, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	devs := make([]string, 16)
	for i := range devs {
		devs[i] = fmt.Sprintf("agv-%d", i)
	}
	check(f.svc.PutSiteNetwork(ctx, "acme", connectivity.SiteNetwork{Site: "plant", MCC: "001", MNC: "01"}))
	check(f.svc.PutTrafficClass(ctx, "acme", connectivity.TrafficClass{Name: "platinum", ARP: 6, QCI: 9, PDB: 300, PELR: 6}))
	check(f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "agvs", Site: "plant", Devices: devs,
		IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.250.0.0/16", MTU: 1460},
		MBRUplink: 1 << 50, MBRDownlink: 1 << 50, TrafficClass: "platinum"}))
	check(f.svc.PutSlice(ctx, "acme", connectivity.Slice{Name: "robots", Site: "plant", SST: 1, SD: "000001", DeviceGroups: []string{"agvs"},
		DefaultBehavior: connectivity.AllowAll, MBR: &connectivity.Bitrate{Uplink: 1 << 50, Downlink: 1 << 50, BurstBytes: 1 << 40}}))
	for i, d := range devs {
		activeSIM(b, f, i, d, false)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := devs[int(next.Add(1)-1)%len(devs)]
		for pb.Next() {
			if w := f.svc.Account(d, connectivity.Uplink, 170); w != 0 {
				b.Errorf("throttled %s", w)
				return
			}
		}
	})
}

// TestSliceBurst checks that a slice's aggregate bitrate lets its burst
// through at once and holds back what goes beyond it at the slice's rate.
func TestSliceBurst(t *testing.T) {
	f := newFixture(t, backend{"sqlite", openSQLite})
	// 4 Mbit/s is 500,000 B/s; the groups' 8 Mbit/s per device does not bind.
	seedModel(t, f, nil, &connectivity.Bitrate{Uplink: 4_000_000, Downlink: 4_000_000, BurstBytes: 64_000})
	activeSIM(t, f, 1, "agv-1", false)
	activeSIM(t, f, 2, "agv-2", false)
	for i := range 42 { // 63,000 bytes from two devices, at one instant
		if w := f.svc.Account([]string{"agv-1", "agv-2"}[i%2], connectivity.Uplink, 1500); w != 0 {
			t.Fatalf("message %d within the burst held back %s", i+1, w)
		}
	}
	// 500 bytes over the burst: 1 ms at 500,000 B/s.
	if w := f.svc.Account("agv-2", connectivity.Uplink, 1500); w < 999*time.Microsecond || w > 1001*time.Microsecond {
		t.Fatalf("first message beyond the burst held back %s, want 1ms", w)
	}
	// Downlink has its own bucket.
	if w := f.svc.Account("agv-1", connectivity.Downlink, 1500); w != 0 {
		t.Fatalf("downlink held back %s", w)
	}
	// After 128 ms the bucket has refilled 64,000 bytes, less the 500 owed.
	f.clock.Add(128 * time.Millisecond)
	if w := f.svc.Account("agv-1", connectivity.Uplink, 63_500); w != 0 {
		t.Fatalf("refilled burst held back %s", w)
	}
	if w := f.svc.Account("agv-1", connectivity.Uplink, 1); w == 0 {
		t.Fatal("a byte beyond the refilled burst passed")
	}
}
