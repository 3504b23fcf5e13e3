package rules

import (
	"context"
	"fmt"
	"testing"

	"github.com/shopfloor/shopfloor/internal/bus"
)

// BenchmarkEngine100Rules measures Engine.Handle per message with 100
// rules in scope of every device (half plain thresholds, half windowed),
// 1,000 devices, batches of 1,000, no firing: the consumer path the hub
// runs behind ingestion.
func BenchmarkEngine100Rules(b *testing.B) {
	ctx := context.Background()
	store, err := NewStore(ctx, StoreConfig{DB: sqliteDB(b), Driver: "sqlite"})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		cond := fmt.Sprintf("temperature > %d", 100+i)
		if i%2 == 1 {
			cond = fmt.Sprintf("avg(temperature, 5m) > %d", 100+i)
		}
		if _, err := store.Create(ctx, Rule{Org: "o", Name: fmt.Sprintf("r%03d", i), Condition: cond}); err != nil {
			b.Fatal(err)
		}
	}
	eng, err := NewEngine(ctx, Config{Store: store, Alerts: nopAlerter{}})
	if err != nil {
		b.Fatal(err)
	}
	const devices = 1000
	batch := make([]*bus.Telemetry, devices)
	for i := range batch {
		batch[i] = &bus.Telemetry{Org: "o", Device: fmt.Sprintf("d%04d", i), Num: map[string]float64{"temperature": 0, "humidity": 40}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	ts := t0.UnixMilli()
	for i := 0; i < b.N; i++ {
		m := batch[i%devices]
		if i%devices == 0 {
			ts += 1000
		}
		m.TS, m.Received = ts, ts
		m.Num["temperature"] = 60 + float64(i%13)
		if i%devices == devices-1 || i == b.N-1 {
			if err := eng.Handle(ctx, batch[:i%devices+1]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if eng.Stats().Evaluations < int64(b.N) {
		b.Fatal("rules were not evaluated")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
