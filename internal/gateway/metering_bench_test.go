package gateway

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

// BenchmarkPublishMetering measures the gateway's QoS 1 publish path with
// the connectivity service's usage metering and bitrate buckets off and on
// (the hub's Config.Meter), on the same gateway and connections, switching
// between the two every 20 ms so load from elsewhere hits both: every
// device has an activated SIM in a device group inside a slice, so each
// message is metered per SIM, device and slice and charged to both token
// buckets (rates high enough never to throttle), and usage is written
// every second. The Publisher is instant, so the bus's cost is left out
// and metering's share is overstated rather than understated. It reports
// msg/s and cpu-µs/msg (this process's CPU time per message, clients
// included) of each mode, and the cost of metering as a percentage of
// throughput and of CPU. Run it for several seconds: -benchtime 10s.
func BenchmarkPublishMetering(b *testing.B) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(b.TempDir(), "conn.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc, err := connectivity.New(ctx, connectivity.Options{DB: db, Dialect: connectivity.SQLite, FlushEvery: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { _ = svc.Run(runCtx); close(ran) }()
	defer func() { stop(); <-ran }()

	n := 16 * runtime.GOMAXPROCS(0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("press-%03d", i)
	}
	check := func(_ any, _ bool, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	check(svc.PutSiteNetwork(ctx, "acme", connectivity.SiteNetwork{Site: "plant-1", MCC: "001", MNC: "01"}))
	check(svc.PutTrafficClass(ctx, "acme", connectivity.TrafficClass{Name: "platinum", ARP: 6, QCI: 9, PDB: 300, PELR: 6}))
	check(svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "presses", Site: "plant-1", Devices: ids,
		IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.250.0.0/16", MTU: 1460},
		MBRUplink: 10_000_000_000, MBRDownlink: 10_000_000_000, TrafficClass: "platinum"}))
	check(svc.PutSlice(ctx, "acme", connectivity.Slice{Name: "machines", Site: "plant-1", SST: 1, SD: "000001", DeviceGroups: []string{"presses"},
		DefaultBehavior: connectivity.AllowAll, MBR: &connectivity.Bitrate{Uplink: 100_000_000_000, Downlink: 100_000_000_000, BurstBytes: 1 << 30}}))
	for i, id := range ids {
		iccid := luhnICCID(fmt.Sprintf("894450%012d", i))
		if _, err := svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid, IMSI: fmt.Sprintf("00101%010d", i)}); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.UpdateSIM(ctx, "acme", "bench", iccid, connectivity.SIMPatch{Device: &id}); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.SetState(ctx, "acme", "bench", iccid, connectivity.StateActivated); err != nil {
			b.Fatal(err)
		}
	}

	var metering atomic.Bool
	var metered, throttled atomic.Int64
	f := start(b, Config{Meter: func(id string, uplink bool, bytes int) time.Duration {
		if !metering.Load() {
			return 0
		}
		metered.Add(1)
		dir := connectivity.Downlink
		if uplink {
			dir = connectivity.Uplink
		}
		w := svc.Account(id, dir, bytes)
		if w > 0 {
			throttled.Add(1)
		}
		return w
	}})
	f.pub.set(func(p *fakePublisher) { p.stored = func() { p.mu.Lock(); p.got = p.got[:0]; p.mu.Unlock() } })
	clients := make([]*v5, n)
	for i, id := range ids {
		clients[i] = mustV5(b, f, id, f.device(id))
	}
	payload := fmt.Sprintf(`{"ts":%d,"temperature":21.53,"pressure":1013.2,"rpm":1450,"running":true,"state":"producing","axis":{"x":12.5,"y":-3.25}}`, recentTS())
	// Metering is switched off and on every 20 ms during the run, and the
	// messages, wall time and CPU time of each window are added to its
	// mode, so that other load on the machine weighs on both alike.
	var msgs [2]atomic.Int64
	var wall, cpu [2]time.Duration
	done := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		mode := 0
		t0, c0 := time.Now(), cpuTime()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
			case <-tick.C:
			}
			t1, c1 := time.Now(), cpuTime()
			wall[mode] += t1.Sub(t0)
			cpu[mode] += c1 - c0
			t0, c0 = t1, c1
			select {
			case <-done:
				return
			default:
			}
			mode = 1 - mode
			metering.Store(mode == 1)
		}
	}()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // one goroutine per connection
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % n
		c, topic := clients[i], "devices/"+ids[i]+"/messages/events/"
		for pb.Next() {
			mode := 0
			if metering.Load() {
				mode = 1
			}
			if _, err := c.publish(b, topic, 1, payload); err != nil {
				b.Error(err)
				return
			}
			msgs[mode].Add(1)
		}
	})
	b.StopTimer()
	close(done)
	<-toggled
	var rate, cpuPer [2]float64
	for m := range 2 {
		if msgs[m].Load() == 0 || wall[m] == 0 {
			return // a probe run of b.N = 1, shorter than one window
		}
		rate[m] = float64(msgs[m].Load()) / wall[m].Seconds()
		cpuPer[m] = float64(cpu[m]) / float64(time.Microsecond) / float64(msgs[m].Load())
	}
	b.ReportMetric(rate[0], "off-msg/s")
	b.ReportMetric(rate[1], "on-msg/s")
	b.ReportMetric(cpuPer[0], "off-cpu-µs/msg")
	b.ReportMetric(cpuPer[1], "on-cpu-µs/msg")
	// The cost of metering: the throughput lost, and the CPU added per message.
	b.ReportMetric((1-rate[1]/rate[0])*100, "throughput-cost-%")
	b.ReportMetric((cpuPer[1]/cpuPer[0]-1)*100, "cpu-cost-%")
	if metered.Load() == 0 {
		b.Fatal("nothing was metered")
	}
	if throttled.Load() > 0 {
		b.Fatalf("%d of %d messages were throttled: the benchmark's rates must not limit it", throttled.Load(), metered.Load())
	}
	if err := svc.FlushUsage(ctx); err != nil {
		b.Fatal(err)
	}
	u, err := svc.UsageByHour(ctx, "acme", connectivity.UsageQuery{Slice: "machines"})
	if err != nil || len(u) == 0 || u[len(u)-1].UpMsgs == 0 {
		b.Fatalf("no usage recorded for the slice: %+v %v", u, err)
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func luhnICCID(body string) string {
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
	return body + string(rune('0'+(10-sum%10)%10))
}
