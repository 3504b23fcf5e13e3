package interop

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/bench"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// TestJobTelemetryImpact measures the issue #3 target "a job over 10,000
// devices at the job's configured rate, without hurting telemetry
// throughput by more than 10%". It runs only with SHOPFLOOR_JOB_BENCH=1:
//
//	SHOPFLOOR_JOB_BENCH=1 go test -count=1 -run TestJobTelemetryImpact -v -timeout 600s ./test/interop/
//
// A `shopfloor serve` built by the test holds 10,000 registered devices.
// The internal/bench generator publishes telemetry as fast as the hub
// acknowledges it (QoS 1) three times: before the job, while a
// desired-patch job over the 10,000 devices runs at its rate
// (SHOPFLOOR_JOB_BENCH_RATE devices/s, default 200), and after it. It logs
// the throughputs, their ratio (during / mean of before and after) and the
// job's achieved rate. It asserts only that the job reached every device.
func TestJobTelemetryImpact(t *testing.T) {
	if os.Getenv("SHOPFLOOR_JOB_BENCH") != "1" {
		t.Skip("set SHOPFLOOR_JOB_BENCH=1 to measure a 10,000-device job against telemetry throughput")
	}
	const devices = 10000
	rate := 200.0
	if v := os.Getenv("SHOPFLOOR_JOB_BENCH_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("SHOPFLOOR_JOB_BENCH_RATE=%q: give devices per second, e.g. 200", v)
		}
		rate = f
	}
	window := 15 * time.Second
	lh := startLatencyHub(t, false)
	a := lh.api

	// Register the job's devices with the CSV import, 1,000 rows a request.
	start := time.Now()
	for lo := 0; lo < devices; lo += 1000 {
		var b bytes.Buffer
		b.WriteString("id,site,template,tags,auth,thumbprint\n")
		for i := lo; i < lo+1000; i++ {
			fmt.Fprintf(&b, "job-%05d,,,fleet=jobs,sas,\n", i)
		}
		req, err := http.NewRequest("POST", a.Base+"/api/v1/devices/import", &b)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+a.Token)
		req.Header.Set("Content-Type", "text/csv")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("import devices %d…: status %d", lo, resp.StatusCode)
		}
	}
	t.Logf("registered %d devices in %v", devices, time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	var telCores []float64
	telemetry := func(phase string) float64 {
		t.Helper()
		cpu0 := lh.cpu()
		res, err := bench.Run(ctx, bench.Options{Target: bench.TargetShopfloor, MQTTAddr: lh.mqtt, URL: a.Base, Token: a.Token,
			Connections: 50, QoS: 1, Inflight: 16, Duration: window, Drain: 10 * time.Second, PollInterval: 50 * time.Millisecond,
			Prefix: "tel-"})
		if err != nil {
			t.Fatalf("telemetry %s: %v", phase, err)
		}
		used := lh.cpu() - cpu0
		telCores = append(telCores, used.Seconds()/(window.Seconds()+res.DrainSeconds))
		t.Logf("telemetry %s the job: %.0f msg/s acknowledged (%d messages, %d errors, ack p99 %.1f ms), hub CPU %.2f cores",
			phase, res.Throughput, res.Acked, res.Errors, res.Ack.P99, used.Seconds()/(window.Seconds()+res.DrainSeconds))
		return res.Throughput
	}
	before := telemetry("before")

	type jobView struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Progress struct {
			Total, Pending, Succeeded, Failed int
		} `json:"progress"`
		CreatedAt time.Time  `json:"createdAt"`
		EndedAt   *time.Time `json:"endedAt"`
	}
	var j jobView
	a.MustDo(t, http.StatusAccepted, "POST", "/api/v1/jobs", map[string]any{"type": "desired",
		"query": map[string]any{"tags": map[string]string{"fleet": "jobs"}}, "desired": map[string]any{"mode": "eco"}, "rate": rate}, &j)
	if j.Progress.Total != devices {
		t.Fatalf("the job selects %d devices, want %d", j.Progress.Total, devices)
	}
	done := func() int {
		a.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID, nil, &j)
		return j.Progress.Succeeded + j.Progress.Failed
	}
	time.Sleep(2 * time.Second) // the job is under way
	n0, t0 := done(), time.Now()
	during := telemetry("during")
	n1, t1 := done(), time.Now()
	t.Logf("job during the telemetry window: %.0f devices/s (configured %.0f)", float64(n1-n0)/t1.Sub(t0).Seconds(), rate)
	// The hub's CPU with the job alone, and idle after it, tell what the
	// job costs whatever else the machine runs.
	var jobCores float64
	if float64(devices-n1)/rate > 12 {
		c0, w0 := lh.cpu(), time.Now()
		time.Sleep(8 * time.Second)
		jobCores = (lh.cpu() - c0).Seconds() / time.Since(w0).Seconds()
	}
	testutil.Eventually(t, time.Duration(2*float64(devices)/rate)*time.Second+time.Minute, "the job to complete", func() bool {
		done()
		return j.State == "completed"
	})
	if j.Progress.Succeeded != devices {
		t.Errorf("job progress %+v: want all %d devices succeeded", j.Progress, devices)
	}
	if j.EndedAt != nil {
		took := j.EndedAt.Sub(j.CreatedAt)
		t.Logf("job over %d devices took %v: %.0f devices/s (configured %.0f)", devices, took.Round(time.Millisecond), float64(devices)/took.Seconds(), rate)
	}
	c0, w0 := lh.cpu(), time.Now()
	time.Sleep(5 * time.Second)
	idleCores := (lh.cpu() - c0).Seconds() / time.Since(w0).Seconds()
	if jobCores > 0 {
		t.Logf("hub CPU with the job alone %.3f cores, idle %.3f cores: the job costs %.3f cores at %.0f devices/s",
			jobCores, idleCores, jobCores-idleCores, rate)
	} else {
		t.Logf("the job ended too soon after the telemetry window to measure its CPU alone (at 200 devices/s it can)")
	}
	after := telemetry("after")
	t.Logf("telemetry during the job / without it: %.3f (before %.0f, during %.0f, after %.0f msg/s); the target is at least 0.90",
		during/((before+after)/2), before, during, after)
	if jobCores > 0 {
		// On a machine others share, throughput follows the CPU the hub
		// gets; the job's share of the hub's CPU at full telemetry load is
		// the throughput it takes away when CPU is the limit.
		t.Logf("the job's CPU is %.1f%% of the hub's at full telemetry load (%.2f cores before, %.2f after)",
			100*(jobCores-idleCores)/((telCores[0]+telCores[2])/2), telCores[0], telCores[2])
	}
}
