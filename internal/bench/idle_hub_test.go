package bench_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/bench"
	"github.com/shopfloor/shopfloor/internal/simulate"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

func TestIdleAgainstHub(t *testing.T) {
	h := testutil.StartHub(t, testutil.Options{})
	ctx := context.Background()
	var progress strings.Builder
	o := bench.IdleOptions{MQTTAddr: h.MQTTAddr(), URL: h.URL, Token: h.Token, Devices: 50,
		Hold: 2500 * time.Millisecond, KeepAlive: 2 * time.Second, Concurrency: 8, Progress: &progress, Logger: testutil.Logger(t)}
	res, err := bench.RunIdle(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 50 || res.Alive != 50 || res.Dropped != 0 || res.Failures != 0 || res.Created != 50 || res.Existing != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.ConnectLatency.Count != 50 || res.ConnectRate <= 0 {
		t.Fatalf("connect figures %+v, rate %v", res.ConnectLatency, res.ConnectRate)
	}
	for _, phase := range []string{bench.PhaseBefore, bench.PhaseProvisioned, bench.PhaseConnected, bench.PhaseEnd} {
		s, ok := res.Sample(phase)
		if !ok {
			t.Fatalf("no hub sample %q in %+v", phase, res.Hub)
		}
		if s.RSSBytes <= 0 || s.HeapInuseBytes <= 0 || s.Goroutines <= 0 || s.MaxFDs <= 0 || len(s.Missing) != 0 {
			t.Fatalf("sample %+v", s)
		}
	}
	// The hub's own count agrees: nobody before, all 50 while held.
	before, _ := res.Sample(bench.PhaseBefore)
	end, _ := res.Sample(bench.PhaseEnd)
	if before.GatewayConnections != 0 || end.GatewayConnections != 50 {
		t.Fatalf("hub counted %v devices before, %v at the end of the hold", before.GatewayConnections, end.GatewayConnections)
	}
	if !strings.Contains(progress.String(), "connected 50 of 50") {
		t.Fatalf("progress %q", progress.String())
	}
	if d, err := simulate.NewClient(h.URL, h.Token, nil).Device(ctx, "bench-idle-00050"); err != nil || d.Site != "bench" {
		t.Fatalf("provisioned device %+v: %v", d, err)
	}

	// A second run reuses the devices and leaves nothing connected after.
	again, err := bench.RunIdle(ctx, bench.IdleOptions{MQTTAddr: h.MQTTAddr(), URL: h.URL, Token: h.Token, Devices: 50})
	if err != nil {
		t.Fatal(err)
	}
	if again.Created != 0 || again.Existing != 50 || again.Alive != 50 {
		t.Fatalf("second run %+v", again)
	}
	testutil.Eventually(t, 10*time.Second, "the hub to see every device disconnected", func() bool {
		return h.Gateway.Stats().Connections == 0
	})
}

func TestIdleFailures(t *testing.T) {
	h := testutil.StartHub(t, testutil.Options{})
	ctx := context.Background()

	_, err := bench.RunIdle(ctx, bench.IdleOptions{MQTTAddr: h.MQTTAddr(), URL: h.URL, Token: "sft_wrong", Devices: 5})
	if !errors.Is(err, simulate.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}

	// Nothing listens on the MQTT address: every connection is refused at
	// the TCP level and counted as such.
	res, err := bench.RunIdle(ctx, bench.IdleOptions{MQTTAddr: testutil.FreeAddr(t), URL: h.URL, Token: h.Token, Devices: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 0 || res.Failures != 20 || res.FailuresByKind["connection_refused"] != 20 || len(res.Diagnosis) == 0 {
		t.Fatalf("result %+v", res)
	}
}
