package hubtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/bench"
	"github.com/shopfloor/shopfloor/internal/simulate"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

func TestFleetAgainstHub(t *testing.T) {
	h := testutil.StartHub(t, testutil.Options{})
	cfg := simulate.Config{URL: h.URL, Token: h.Token, MQTTAddr: h.MQTTAddr(), Sites: []string{"plant-north", "plant-south"},
		Devices: 8, Rate: 5, QoS: 1, Seed: 1, Logger: testutil.Logger(t)}
	fleet, err := simulate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Provisioning twice, and from a second fleet, creates nothing twice.
	if err := fleet.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	again, _ := simulate.New(cfg)
	if err := again.Provision(ctx); err != nil {
		t.Fatalf("second provision: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()

	client := simulate.NewClient(h.URL, h.Token, nil)
	want := map[simulate.Kind]string{simulate.KindCNC: "spindle_temp", simulate.KindCompressor: "discharge_pressure",
		simulate.KindRobot: "j2_torque", simulate.KindAGV: "position.x"}
	for _, d := range fleet.Devices() {
		testutil.Eventually(t, 30*time.Second, d.ID+" telemetry queryable", func() bool {
			l, err := client.Latest(ctx, d.ID)
			if err != nil {
				return false
			}
			_, ok := l.Value(want[d.Kind])
			return ok
		})
	}
	s := fleet.Stats()
	if s.Connected != 8 || s.Errors != 0 || s.Sent == 0 {
		t.Fatalf("stats %+v", s)
	}
	series, err := client.Telemetry(ctx, fleet.Devices()[0].ID, simulate.TelemetryQuery{Names: []string{"spindle_temp"}})
	if err != nil || len(series) == 0 || len(series[0].Points) == 0 {
		t.Fatalf("telemetry of %s: %v %+v", fleet.Devices()[0].ID, err, series)
	}
	cancel()
	<-done
}

func TestBenchAgainstHub(t *testing.T) {
	h := testutil.StartHub(t, testutil.Options{})
	res, err := bench.Run(context.Background(), bench.Options{Target: bench.TargetShopfloor, MQTTAddr: h.MQTTAddr(),
		URL: h.URL, Token: h.Token, Connections: 4, Duration: 2 * time.Second, QoS: 1, Fields: 5, Verify: 2,
		Drain: 20 * time.Second, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	bench.WriteText(&out, res)
	t.Log("\n" + out.String())
	if res.Errors != 0 || res.Sent == 0 || res.Acked != res.Sent || !res.DrainComplete {
		t.Fatalf("unclean run: %+v", res)
	}
	if res.Ack.Count == 0 || res.Queryable.Count == 0 || res.Queryable.P50 <= 0 || res.Queryable.P99 > res.Queryable.Max*1.01 {
		t.Fatalf("latencies: ack %+v queryable %+v", res.Ack, res.Queryable)
	}
	if res.VerifiedDevices != 2 || res.VerifiedFound != res.VerifiedAcked {
		t.Fatalf("acknowledged messages missing from the store: %d of %d found (%s)", res.VerifiedFound, res.VerifiedAcked, res.VerifyError)
	}
}
