package rules

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
)

// TestPublishToAlertLatency measures, at a fixed message rate, the time
// from a message's publish stamp to the alert it raises being stored in
// SQLite and handed to the alert publisher, through a consumer goroutine
// that batches whatever is queued into Engine.Handle (as the hub's bus
// consumer does). 100 rules are active (half windowed). It is a
// measurement, not a performance assertion: run it with
// SHOPFLOOR_RULES_LATENCY=1 go test ./internal/rules/ -run PublishToAlert -v
// (SHOPFLOOR_RULES_RATE sets msg/s, default 20000). Alerts raised in the
// first second (warm-up) are not counted.
func TestPublishToAlertLatency(t *testing.T) {
	if os.Getenv("SHOPFLOOR_RULES_LATENCY") == "" {
		t.Skip("measurement; set SHOPFLOOR_RULES_LATENCY=1 to run")
	}
	rate := 20000
	if s := os.Getenv("SHOPFLOOR_RULES_RATE"); s != "" {
		if _, err := fmt.Sscan(s, &rate); err != nil {
			t.Fatalf("SHOPFLOOR_RULES_RATE=%q: %v", s, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := sqliteDB(t)
	store, err := NewStore(ctx, StoreConfig{DB: db, Driver: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 99 {
		cond := fmt.Sprintf("f%d > %d", i%5, 100000+i)
		if i%2 == 1 {
			cond = fmt.Sprintf("avg(f%d, 5m) > %d", i%5, 100000+i)
		}
		if _, err := store.Create(ctx, Rule{Org: "o1", Name: fmt.Sprintf("r%03d", i), Condition: cond}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Create(ctx, Rule{Org: "o1", Name: "hot", Condition: "f0 > 1000"}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	sent := map[string]time.Time{} // marker device → publish time of its firing message
	var lat []time.Duration
	svc, err := alerts.New(ctx, alerts.Config{DB: db, Driver: "sqlite", Publisher: publisherFunc(func(ctx context.Context, ev alerts.AlertEvent) error {
		if ev.Type != alerts.EventOpened {
			return nil
		}
		now := time.Now()
		mu.Lock()
		if at, ok := sent[ev.Alert.Device]; ok {
			lat = append(lat, now.Sub(at))
			delete(sent, ev.Alert.Device)
		}
		mu.Unlock()
		return nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(ctx, Config{Store: store, Alerts: svc})
	if err != nil {
		t.Fatal(err)
	}

	queue := make(chan *bus.Telemetry, 1<<20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		batch := make([]*bus.Telemetry, 0, 1000)
		for m := range queue {
			batch = append(batch[:0], m)
		more:
			for len(batch) < cap(batch) {
				select {
				case m, ok := <-queue:
					if !ok {
						break more
					}
					batch = append(batch, m)
				default:
					break more
				}
			}
			if err := eng.Handle(ctx, batch); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	const devices, tick = 1000, 5 * time.Millisecond
	perTick := rate * int(tick) / int(time.Second)
	dur := 10 * time.Second
	start := time.Now()
	n, markers := 0, 0
	tk := time.NewTicker(tick)
	for now := range tk.C {
		if now.Sub(start) > dur {
			break
		}
		for range perTick {
			ts := time.Now().UnixMilli()
			queue <- &bus.Telemetry{Org: "o1", Device: fmt.Sprintf("d%04d", n%devices), TS: ts, Received: ts,
				Num: map[string]float64{"f0": float64(n % 97), "f1": 1, "f2": 2, "f3": 3, "f4": 4}}
			n++
		}
		// Every 50 ms a new device runs hot: one alert each, never
		// deduplicated. The first second is warm-up: 1,000 devices are new
		// to the engine and the database is cold.
		if n/perTick%10 == 0 && now.Sub(start) > time.Second {
			dev := fmt.Sprintf("hot%04d", markers)
			markers++
			ts := time.Now()
			mu.Lock()
			sent[dev] = ts
			mu.Unlock()
			queue <- &bus.Telemetry{Org: "o1", Device: dev, TS: ts.UnixMilli(), Received: ts.UnixMilli(), Num: map[string]float64{"f0": 5000}}
		}
	}
	tk.Stop()
	elapsed := time.Since(start)
	close(queue)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 || len(lat) < markers*9/10 {
		t.Fatalf("only %d of %d hot devices raised an alert", len(lat), markers)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	t.Logf("rate %d msg/s asked, %.0f msg/s sent (%d messages, 100 rules, %d devices); publish-to-alert over %d alerts: p50 %v p95 %v p99 %v max %v; engine evaluations %d",
		rate, float64(n)/elapsed.Seconds(), n, devices, len(lat), q(0.50), q(0.95), q(0.99), lat[len(lat)-1], eng.Stats().Evaluations)
}
