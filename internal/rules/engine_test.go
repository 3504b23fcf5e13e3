package rules

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
)

func sqliteHarness(t *testing.T, mut func(*Config)) *harness {
	return newHarness(t, sqliteDB(t), "sqlite", mut)
}

func TestFireAndClear(t *testing.T) {
	h := sqliteHarness(t, nil)
	r := h.rule(Rule{Condition: "spindle.rpm > 1000 && mode == \"AUTO\"", Severity: alerts.SeverityCritical})
	h.send(msg("m1", t0, "spindle.rpm", 900, "mode", "AUTO"))
	if n := len(h.active()); n != 0 {
		t.Fatalf("no alert expected yet, got %d", n)
	}
	h.send(msg("m1", t0.Add(time.Second), "spindle.rpm", 1200))
	act := h.active()
	if len(act) != 1 || act[0].Rule != r.ID || act[0].Device != "m1" || act[0].Severity != alerts.SeverityCritical || act[0].Values["spindle.rpm"] != 1200 {
		t.Fatalf("want one critical alert on m1 carrying the value, got %+v", act)
	}
	if !act[0].FirstSeen.Equal(t0.Add(time.Second)) {
		t.Errorf("firstSeen %v, want the message time", act[0].FirstSeen)
	}
	// Still true: no second alert and no extra occurrence.
	h.send(msg("m1", t0.Add(2*time.Second), "spindle.rpm", 1300))
	if act := h.active(); len(act) != 1 || act[0].Count != 1 {
		t.Fatalf("a continuing condition must not re-fire: %+v", act)
	}
	// A message without the rule's fields changes nothing.
	h.send(msg("m1", t0.Add(3*time.Second), "temperature", 20))
	if len(h.active()) != 1 {
		t.Fatal("an unrelated message cleared the alert")
	}
	h.send(msg("m1", t0.Add(4*time.Second), "mode", "MANUAL"))
	if act := h.active(); len(act) != 0 {
		t.Fatalf("condition cleared; alert must resolve, got %+v", act)
	}
	res := h.alertList("o1", alerts.StateResolved)
	if len(res) != 1 || res[0].ResolvedBy != "rule:"+r.ID || !res[0].ResolvedAt.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("resolved alert: %+v", res)
	}
	if st := h.eng.Stats(); st.Fired != 1 || st.Cleared != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestUnknownFieldSkipsEvaluation(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Condition: "temperature > 80 || humidity > 90"})
	// humidity was never seen: the condition cannot be decided.
	h.send(msg("m1", t0, "temperature", 85))
	if len(h.active()) != 0 {
		t.Fatal("fired with a field never seen")
	}
	h.send(msg("m1", t0.Add(time.Second), "humidity", 10))
	if len(h.active()) != 1 {
		t.Fatal("with both fields known (temperature from the earlier message) the rule must fire")
	}
	if st := h.eng.Stats(); st.Skipped != 1 {
		t.Errorf("skipped = %d, want 1", st.Skipped)
	}
}

func TestForDuration(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Condition: "temperature > 80", For: Duration(2 * time.Minute)})
	step := func(d time.Duration, v float64) { h.send(msg("m1", t0.Add(d), "temperature", v)) }
	step(0, 85)
	step(time.Minute, 86)
	step(90*time.Second, 70) // dips: the timer restarts
	step(2*time.Minute, 85)
	step(3*time.Minute+59*time.Second, 85)
	if len(h.active()) != 0 {
		t.Fatal("fired before the condition held for 2m")
	}
	step(4*time.Minute, 85)
	act := h.active()
	if len(act) != 1 || !act[0].FirstSeen.Equal(t0.Add(4*time.Minute)) {
		t.Fatalf("want a firing at 4m, got %+v", act)
	}
}

func TestHysteresis(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Condition: "temperature > 80", ClearAfter: 3, ClearFor: Duration(30 * time.Second)})
	step := func(d time.Duration, v float64) { h.send(msg("m1", t0.Add(d), "temperature", v)) }
	step(0, 90)
	step(10*time.Second, 70)
	step(20*time.Second, 70)
	step(25*time.Second, 90) // true again: the clear count starts over
	step(30*time.Second, 70)
	step(40*time.Second, 70)
	step(50*time.Second, 70) // three false in a row, but only 20s
	if len(h.active()) != 1 {
		t.Fatal("cleared before 30s of false evaluations")
	}
	step(60*time.Second, 70) // 4 false over 30s
	if n := len(h.active()); n != 0 {
		t.Fatalf("must clear after 3 false evaluations over 30s, %d still active", n)
	}
	if all := h.alertList("o1", ""); len(all) != 1 {
		t.Fatalf("a dip must not open a second alert: %d alerts", len(all))
	}
}

func TestManualResolveCountsOccurrences(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Condition: "door == 1", ManualResolve: true})
	for i, v := range []float64{1, 0, 1, 0, 1} {
		h.send(msg("m1", t0.Add(time.Duration(i)*time.Second), "door", v))
	}
	act := h.active()
	if len(act) != 1 || act[0].Count != 3 || act[0].State != alerts.StateOpen {
		t.Fatalf("want one open alert with 3 occurrences, got %+v", act)
	}
	if !act[0].LastSeen.Equal(t0.Add(4 * time.Second)) {
		t.Errorf("lastSeen %v", act[0].LastSeen)
	}
}

func TestScope(t *testing.T) {
	dir := directory{
		"a": {Site: "berlin", Template: "cnc", Tags: map[string]string{"line": "1"}},
		"b": {Site: "berlin", Template: "cnc", Tags: map[string]string{"line": "2"}},
		"c": {Site: "lyon", Template: "cnc", Tags: map[string]string{"line": "1"}},
		"d": {Site: "berlin", Template: "robot", Tags: map[string]string{"line": "1"}},
	}
	h := sqliteHarness(t, func(c *Config) { c.Directory = dir })
	h.rule(Rule{Name: "site+template+tag", Condition: "x > 1", Scope: Scope{Site: "berlin", Template: "cnc", Tags: map[string]string{"line": "1"}}})
	h.rule(Rule{Name: "one device", Condition: "x > 1", Scope: Scope{Device: "c"}})
	h.rule(Rule{Name: "other org", Org: "o2", Condition: "x > 1"})
	var batch []*bus.Telemetry
	for _, d := range []string{"a", "b", "c", "d"} {
		batch = append(batch, msg(d, t0, "x", 5))
	}
	h.send(batch...)
	act := h.active()
	if len(act) != 2 || act[0].Device != "a" || act[0].RuleName != "site+template+tag" || act[1].Device != "c" || act[1].RuleName != "one device" {
		t.Fatalf("scope: %+v", act)
	}
	if o2 := h.alertList("o2", alerts.StateActive); len(o2) != 0 {
		t.Fatalf("another organization's rule fired on o1's devices: %+v", o2)
	}
}

func TestTagsPropsAndTimeOfDay(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone database")
	}
	dir := directory{"m1": {Tags: map[string]string{"shift": "night"}, Props: map[string]any{"firmware": map[string]any{"version": "1.2"}}, Location: paris}}
	h := sqliteHarness(t, func(c *Config) { c.Directory = dir })
	// 08:00 UTC on Monday is 09:00 in Paris.
	h.rule(Rule{Name: "paris nine", Condition: `hour == 9 && weekday == 1 && tags.shift == "night" && props.firmware.version == "1.2" && x > 0`})
	h.rule(Rule{Name: "utc", Condition: `hour == 8 && x > 0`})
	h.send(msg("m1", t0, "x", 1))
	act := h.active()
	if len(act) != 1 || act[0].RuleName != "paris nine" {
		t.Fatalf("time of day must be in the device's zone: %+v", act)
	}
}

func TestSlidingAverageFires(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Condition: "avg(temperature, 5m) > 80 && count(temperature, 5m) >= 3"})
	for i, v := range []float64{70, 95, 90} { // avg 85 after the third
		h.send(msg("m1", t0.Add(time.Duration(i)*time.Minute), "temperature", v))
		if i < 2 && len(h.active()) != 0 {
			t.Fatalf("fired after %d samples", i+1)
		}
	}
	act := h.active()
	if len(act) != 1 || act[0].Values["avg(temperature, 5m)"] != 85 || act[0].Values["count(temperature, 5m)"] != 3 {
		t.Fatalf("want an alert carrying the aggregates: %+v", act)
	}
	// Five minutes later only low values are in the window.
	for i := 0; i < 6; i++ {
		h.send(msg("m1", t0.Add(3*time.Minute+time.Duration(i)*time.Minute), "temperature", 60))
	}
	if len(h.active()) != 0 {
		t.Fatal("the average fell; the alert must clear")
	}
}

func TestNoDataSweep(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Condition: "nodata(5m)"})
	h.rule(Rule{Name: "field silent", Condition: "nodata(temperature, 3m)"})
	h.clock.Set(t0)
	h.send(msg("m1", t0, "temperature", 20))
	h.clock.Set(t0.Add(2 * time.Minute))
	h.send(msg("m1", t0.Add(2*time.Minute), "humidity", 40)) // data, but no temperature
	sweep := func(at time.Duration) {
		h.clock.Set(t0.Add(at))
		if err := h.eng.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	sweep(2*time.Minute + 30*time.Second)
	if len(h.active()) != 0 {
		t.Fatal("fired too early")
	}
	sweep(3*time.Minute + time.Second)
	if act := h.active(); len(act) != 1 || act[0].RuleName != "field silent" {
		t.Fatalf("temperature silent for 3m: %+v", act)
	}
	sweep(7*time.Minute + time.Second)
	if act := h.active(); len(act) != 2 {
		t.Fatalf("device silent for 5m: %+v", act)
	}
	h.clock.Set(t0.Add(8 * time.Minute))
	h.send(msg("m1", t0.Add(8*time.Minute), "temperature", 21))
	if act := h.active(); len(act) != 0 {
		t.Fatalf("data is back; both must clear: %+v", act)
	}
}

func TestDisconnected(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Condition: "disconnected(5m)", Severity: alerts.SeverityMajor})
	h.eng.ConnectionChanged("o1", "m1", true, t0)
	h.eng.ConnectionChanged("o1", "m1", false, t0.Add(time.Minute))
	sweep := func(at time.Duration) {
		h.clock.Set(t0.Add(at))
		if err := h.eng.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	sweep(5 * time.Minute)
	if len(h.active()) != 0 {
		t.Fatal("fired after 4m offline")
	}
	sweep(6*time.Minute + time.Second)
	if act := h.active(); len(act) != 1 || act[0].Device != "m1" {
		t.Fatalf("want an alert after 5m offline: %+v", act)
	}
	h.eng.ConnectionChanged("o1", "m1", true, t0.Add(7*time.Minute))
	sweep(7*time.Minute + time.Second)
	if len(h.active()) != 0 {
		t.Fatal("reconnected; must clear")
	}
}

type scores map[string]float64

func (s scores) AnomalyScore(org, device, field string) (float64, bool) {
	v, ok := s[device+"/"+field]
	return v, ok
}

func TestAnomalyHook(t *testing.T) {
	if _, err := Compile("anomaly(vibration) > 3", CompileOptions{}); err == nil || !errorsAs(err) {
		t.Fatalf("without a provider anomaly() must be a compile error, got %v", err)
	}
	h := sqliteHarness(t, func(c *Config) { c.Anomaly = scores{"m1/vibration": 4.2, "m2/vibration": 1} })
	h.rule(Rule{Condition: "anomaly(vibration) > 3 && vibration > 0"})
	h.send(msg("m1", t0, "vibration", 1), msg("m2", t0, "vibration", 1), msg("m3", t0, "vibration", 1))
	act := h.active()
	if len(act) != 1 || act[0].Device != "m1" || act[0].Values["anomaly(vibration)"] != 4.2 {
		t.Fatalf("anomaly: %+v", act)
	}
}

// anomaly(score > x) and anomaly(field, score > x) are the other way of
// writing anomaly() > x and anomaly(field) > x.
func TestAnomalyScoreComparisonForm(t *testing.T) {
	for _, c := range []struct{ cond, want string }{
		{"anomaly(score > 3) && vibration > 0", "m1"},
		{"anomaly(vibration, score >= 4.2)", "m1"},
		{"anomaly(vibration, score < 2)", "m2"},
		{"anomaly(score > 1 + 2)", "m1"},
	} {
		h := sqliteHarness(t, func(c *Config) {
			c.Anomaly = scores{"m1/": 4.2, "m1/vibration": 4.2, "m2/": 1, "m2/vibration": 1}
		})
		h.rule(Rule{Condition: c.cond})
		h.send(msg("m1", t0, "vibration", 1), msg("m2", t0, "vibration", 1), msg("m3", t0, "vibration", 1))
		if act := h.active(); len(act) != 1 || act[0].Device != c.want {
			t.Errorf("%s: alerts %+v, want one for %s", c.cond, act, c.want)
		}
	}
	for _, bad := range []string{"anomaly(1 > 2)", "anomaly(a, b, score > 1)", "anomaly(vibration, temperature)"} {
		if _, err := Compile(bad, CompileOptions{Anomaly: true}); err == nil || !errorsAs(err) {
			t.Errorf("%s: want a compile error, got %v", bad, err)
		}
	}
}

// The Before hook runs for each message just before it is evaluated, so
// anomaly() reads the score of that message even when a batch holds several
// of the same device: here the first is anomalous, the second is not.
func TestAnomalyScoredBeforeEachMessage(t *testing.T) {
	s := scores{}
	h := sqliteHarness(t, func(c *Config) {
		c.Anomaly = s
		c.Before = func(_ context.Context, m *bus.Telemetry) { s[m.Device+"/"] = m.Num["score"] }
	})
	h.rule(Rule{Condition: "anomaly() > 0.5", ManualResolve: true})
	h.send(msg("m1", t0, "score", 0.9), msg("m1", t0.Add(time.Second), "score", 0.1))
	act := h.active()
	if len(act) != 1 || act[0].Values["anomaly()"] != 0.9 {
		t.Fatalf("want one alert raised by the first message with its score 0.9: %+v", act)
	}
}

func errorsAs(err error) bool {
	var ce *CompileError
	return errors.As(err, &ce) && ce.Message != "" && errors.Is(err, ErrInvalid)
}

// flaky fails the first n alert calls.
type flaky struct {
	Alerter
	fail atomic.Int64
}

func (f *flaky) Fire(ctx context.Context, r alerts.FireRequest) (alerts.Alert, bool, error) {
	if f.fail.Add(-1) >= 0 {
		return alerts.Alert{}, false, errors.New("database is down")
	}
	return f.Alerter.Fire(ctx, r)
}

func TestAlertFailureIsRetriedNotLost(t *testing.T) {
	db := sqliteDB(t)
	var fl *flaky
	h := newHarness(t, db, "sqlite", func(c *Config) {
		fl = &flaky{Alerter: c.Alerts}
		c.Alerts = fl
	})
	h.rule(Rule{Condition: "x > 1"})
	fl.fail.Store(2)
	batch := []*bus.Telemetry{msg("m1", t0, "x", 5), msg("m2", t0, "x", 5)}
	if err := h.eng.Handle(context.Background(), batch); err == nil {
		t.Fatal("Handle must fail while alerts cannot be stored, so the bus redelivers")
	}
	if st := h.eng.Stats(); st.Pending == 0 {
		t.Fatalf("failed alert calls must stay pending: %+v", st)
	}
	// The bus redelivers the same batch: nothing is evaluated twice, the
	// pending firings are stored.
	h.send(batch...)
	act := h.active()
	if len(act) != 2 || act[0].Count != 1 || act[1].Count != 1 {
		t.Fatalf("want two alerts with one occurrence each: %+v", act)
	}
	if st := h.eng.Stats(); st.Pending != 0 || st.Duplicates != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRuleChangesAreReloaded(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.ReloadEvery = 10 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.eng.Run(ctx) }()
	// Another process (here: the store directly) creates a rule.
	if _, err := h.store.Create(ctx, Rule{Org: "o1", Name: "late", Condition: "x > 1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.eng.Stats().Rules != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the engine did not pick up the new rule")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.send(msg("m1", t0, "x", 2))
	if len(h.active()) != 1 {
		t.Fatal("the reloaded rule did not fire")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRuleStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm of 10,000 alerts")
	}
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			h := newHarness(t, d.open(t), d.driver, nil)
			h.rule(Rule{Condition: "temperature > 80"})
			const n = 10000
			batch := make([]*bus.Telemetry, n)
			for i := range batch {
				batch[i] = msg(fmt.Sprintf("dev-%05d", i), t0, "temperature", 90)
			}
			h.send(batch...)
			h.send(batch...) // bus redelivery of the same batch
			// A restart without state (crash before any snapshot) and the
			// same batch again: the alerts service deduplicates.
			h.start()
			h.send(batch...)
			act := h.active()
			if len(act) != n {
				t.Fatalf("want exactly %d alerts, got %d", n, len(act))
			}
			seen := map[string]bool{}
			for _, a := range act {
				if seen[a.Device] {
					t.Fatalf("two alerts for %s", a.Device)
				}
				seen[a.Device] = true
			}
			if all := h.alertList("o1", ""); len(all) != n {
				t.Fatalf("%d alerts in total, want %d", len(all), n)
			}
		})
	}
}

func TestRestartMidWindowKeepsWindows(t *testing.T) {
	// 3 minutes at 90, restart, 2 minutes at 75: avg over 5m is 84 > 80
	// only if the first minutes survived the restart.
	first := func(h *harness) {
		for i := 0; i < 180; i += 10 {
			h.send(msg("m1", t0.Add(time.Duration(i)*time.Second), "temperature", 90))
		}
	}
	second := func(h *harness) {
		for i := 180; i < 300; i += 10 {
			h.send(msg("m1", t0.Add(time.Duration(i)*time.Second), "temperature", 75))
		}
	}
	cond := Rule{Condition: "avg(temperature, 5m) > 80 && temperature < 80"}

	t.Run("snapshot", func(t *testing.T) {
		h := sqliteHarness(t, nil)
		h.rule(cond)
		first(h)
		if err := h.eng.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.start()
		second(h)
		if act := h.active(); len(act) != 1 {
			t.Fatalf("after a restart mid-window the rule must still fire, got %d alerts", len(act))
		}
	})
	t.Run("history after a crash", func(t *testing.T) {
		hist := &memHistory{}
		h := sqliteHarness(t, func(c *Config) { c.History = hist })
		h.rule(cond)
		for i := 0; i < 180; i += 10 {
			m := msg("m1", t0.Add(time.Duration(i)*time.Second), "temperature", 90)
			hist.add(m) // the tsdb stored it too
			h.send(m)
		}
		h.start() // no Close: no snapshot
		second(h)
		if act := h.active(); len(act) != 1 {
			t.Fatalf("windows must be rebuilt from history after a crash, got %d alerts", len(act))
		}
	})
	t.Run("control: state lost", func(t *testing.T) {
		h := sqliteHarness(t, nil)
		h.rule(cond)
		first(h)
		h.start() // no snapshot, no history
		second(h)
		if act := h.active(); len(act) != 0 {
			t.Fatalf("without snapshot or history the window restarts and must not fire; got %d alerts", len(act))
		}
	})
}

// TestRulesShareWindows: rules reading the same (field, duration, kind)
// keep one window per device; a rule added later sees the data already in
// it; an edited condition keeps the window.
func TestRulesShareWindows(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Name: "avg", Condition: "avg(temperature, 5m) > 80"})
	h.rule(Rule{Name: "max", Condition: "max(temperature, 5m) > 100"})
	h.rule(Rule{Name: "short", Condition: "avg(temperature, 1m) > 1000"})
	for i, v := range []float64{70, 95, 90} {
		h.send(msg("m1", t0.Add(time.Duration(i)*time.Minute), "temperature", v))
	}
	h.eng.mu.Lock()
	d := h.eng.ev.orgs["o1"].devices["m1"]
	n := 0
	for _, w := range d.wins {
		if w != nil {
			n++
		}
	}
	h.eng.mu.Unlock()
	if n != 2 {
		t.Fatalf("three rules over two distinct windows keep %d windows, want 2", n)
	}
	if act := h.active(); len(act) != 1 || act[0].Values["avg(temperature, 5m)"] != 82.5 {
		t.Fatalf("want the avg rule fired at 82.5 (70, 95): %+v", act)
	}
	// A rule created now over the same window fires on the next message,
	// because the window already holds 70, 95, 90 (and now 96: max 96).
	h.rule(Rule{Name: "late", Condition: "count(temperature, 5m) >= 4"})
	h.send(msg("m1", t0.Add(3*time.Minute), "temperature", 96))
	names := map[string]bool{}
	for _, a := range h.active() {
		names[a.RuleName] = true
	}
	if !names["late"] || !names["avg"] {
		t.Fatalf("a new rule over a shared window must see its history: active %v", names)
	}
}

// TestFieldTypeChangesAndRestart: a field a fast condition reads switches
// between text and numbers, and its last value survives a restart.
func TestFieldTypeChangesAndRestart(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Name: "hot", Condition: "temperature > 80"})
	h.rule(Rule{Name: "pair", Condition: "temperature > 80 && pressure < 2"})
	h.send(msg("m1", t0, "temperature", "sensor fault", "pressure", 1))
	if len(h.active()) != 0 || h.eng.Stats().Errors == 0 {
		t.Fatalf("text compared with a number must count an error and fire nothing: %+v", h.eng.Stats())
	}
	h.send(msg("m1", t0.Add(time.Second), "temperature", 90))
	if n := len(h.active()); n != 2 {
		t.Fatalf("both rules must fire once the value is a number again, %d active", n)
	}
	if err := h.eng.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.eng.mu.Lock()
	d := h.eng.ev.orgs["o1"].devices["m1"]
	v, ok := d.env["temperature"].(float64)
	h.eng.mu.Unlock()
	if !ok || v != 90 {
		t.Fatalf("after a restart the last temperature is %v, want 90", d.env["temperature"])
	}
	// Falling below clears both, from the restored state.
	h.send(msg("m1", t0.Add(2*time.Second), "temperature", 20))
	if n := len(h.active()); n != 0 {
		t.Fatalf("%d alerts still active after the value fell", n)
	}
}

// TestReloadKeepsFieldValues: a value only fast conditions read survives a
// rule change, and a condition the VM evaluates that is added later sees it.
func TestReloadKeepsFieldValues(t *testing.T) {
	h := sqliteHarness(t, nil)
	h.rule(Rule{Name: "hot", Condition: "temperature > 80"})
	h.send(msg("m1", t0, "temperature", 90))
	h.rule(Rule{Name: "hot and pressurised", Condition: `temperature > 85 && pressure >= 0 || device == "none"`})
	h.send(msg("m1", t0.Add(time.Second), "pressure", 1))
	names := map[string]bool{}
	for _, a := range h.active() {
		names[a.RuleName] = true
	}
	if !names["hot"] || !names["hot and pressurised"] {
		t.Fatalf("active %v: the new rule must see the temperature sent before it existed", names)
	}
}
