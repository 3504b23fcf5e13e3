package rules

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/bus"
)

// benchEval prepares one rule and one device as the engine holds them.
func benchEval(b *testing.B, cond string) (*evaluator, *compiled, *deviceState, *ruleState) {
	b.Helper()
	c, err := compileRule(Rule{ID: "r", Org: "o", Name: "b", Condition: cond, Version: 1}, CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ev := newEvaluator(30, slog.New(slog.DiscardHandler))
	ev.setRules([]*compiled{c})
	o := ev.orgs["o"]
	var out []intent
	// Fill a few minutes of data so windows are populated.
	for i := 0; i < 600; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		ev.process(context.Background(), &bus.Telemetry{Org: "o", Device: "d", TS: at.UnixMilli(), Received: at.UnixMilli(),
			Num: map[string]float64{"temperature": 70 + float64(i%7), "spindle.rpm": 900}}, at.UnixMilli(), &out, true)
	}
	d := o.devices["d"]
	return ev, c, d, d.rules["r"]
}

// BenchmarkEvalSimple measures one evaluation of a simple condition on a
// device's prepared environment: what each in-scope rule costs per message.
func BenchmarkEvalSimple(b *testing.B) {
	ev, c, d, rs := benchEval(b, "temperature > 80")
	t := t0.Add(time.Hour).UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res, ok := ev.run("o", c, d, rs, t, t); !ok || res {
			b.Fatal("unexpected result")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "evals/s")
}

func BenchmarkEvalCompound(b *testing.B) {
	ev, c, d, rs := benchEval(b, `spindle.rpm > 1000 && temperature > 80 || device == "x"`)
	t := t0.Add(time.Hour).UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res, ok := ev.run("o", c, d, rs, t, t); !ok || res {
			b.Fatal("unexpected result")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "evals/s")
}

// BenchmarkEvalWindowed evaluates avg over a 5m sliding window (30 buckets
// merged per evaluation).
func BenchmarkEvalWindowed(b *testing.B) {
	ev, c, d, rs := benchEval(b, "avg(temperature, 5m) > 80")
	t := t0.Add(599 * time.Second).UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev.statGen++ // a new message: the window is summarised again
		if res, ok := ev.run("o", c, d, rs, t, t); !ok || res {
			b.Fatal("unexpected result")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "evals/s")
}

func BenchmarkSlidingWindowAdd(b *testing.B) {
	w := newSliding(5*time.Minute, 30)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		w.add(int64(i)*100, float64(i%100))
	}
}

func BenchmarkTumblingWindowAdd(b *testing.B) {
	w := newTumbling(5 * time.Minute)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		w.add(int64(i)*100, float64(i%100))
	}
}

type nopAlerter struct{ Alerter }

// benchEngine measures Engine.Handle per message: 1,000 devices, batches
// of 1,000 messages with changing values, one rule in scope, no firing.
func benchEngine(b *testing.B, cond string) {
	ctx := context.Background()
	store, err := NewStore(ctx, StoreConfig{DB: sqliteDB(b), Driver: "sqlite"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := store.Create(ctx, Rule{Org: "o", Name: "b", Condition: cond}); err != nil {
		b.Fatal(err)
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
	if eng.Stats().Evaluations == 0 {
		b.Fatal("nothing evaluated")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkEngineSimple(b *testing.B)   { benchEngine(b, "temperature > 80") }
func BenchmarkEngineWindowed(b *testing.B) { benchEngine(b, "avg(temperature, 5m) > 80") }
