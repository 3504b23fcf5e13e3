package simulate

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

// tuesday8 is a working-day morning, when machines are busy.
var tuesday8 = time.Date(2025, 3, 4, 8, 0, 0, 0, time.Local)

func mustModel(t *testing.T, k Kind, seed int64, faultRate float64) *Model {
	t.Helper()
	m, err := NewModel(k, seed, faultRate)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func num(t *testing.T, s map[string]any, field string) float64 {
	t.Helper()
	switch v := s[field].(type) {
	case float64:
		return v
	case int64:
		return float64(v)
	}
	t.Fatalf("field %s = %#v (%T), want a number", field, s[field], s[field])
	return 0
}

func TestModelDeterministic(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			a, b, c := mustModel(t, k, 42, 3), mustModel(t, k, 42, 3), mustModel(t, k, 43, 3)
			differs := false
			for i := range 2000 {
				ts := tuesday8.Add(time.Duration(i) * 3 * time.Second)
				sa, sb, sc := a.Next(ts), b.Next(ts), c.Next(ts)
				if !reflect.DeepEqual(sa, sb) {
					t.Fatalf("step %d: same seed gave different samples:\n%v\n%v", i, sa, sb)
				}
				if !reflect.DeepEqual(sa, sc) {
					differs = true
				}
			}
			if !differs {
				t.Fatal("seeds 42 and 43 gave identical signals")
			}
			if !reflect.DeepEqual(a.ActiveFaults(), b.ActiveFaults()) {
				t.Fatalf("same seed gave different faults: %v vs %v", a.ActiveFaults(), b.ActiveFaults())
			}
		})
	}
}

func TestModelUnknownKind(t *testing.T) {
	if _, err := NewModel("lathe", 1, 0); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("err = %v, want ErrUnknownKind", err)
	}
}

// TestModelPhysicalRanges runs every kind through two days with progressive
// faults (but no spikes, which are outliers on purpose) and checks every
// field against the physics of the machine.
func TestModelPhysicalRanges(t *testing.T) {
	type rng struct{ lo, hi float64 }
	ranges := map[Kind]map[string]rng{
		KindCNC: {"spindle_speed": {0, 24000}, "spindle_load": {0, 120}, "spindle_temp": {10, 90},
			"vibration": {0, 20}, "tool_wear": {0, 100}, "part_count": {0, 1e7}},
		KindCompressor: {"discharge_pressure": {0, 8}, "motor_current": {0, 110}, "oil_temp": {10, 105}, "vibration_rms": {0, 15}},
		KindRobot: {"j1_torque": {-100, 100}, "j2_torque": {-100, 250}, "j3_torque": {-100, 200}, "j4_torque": {-50, 50},
			"j5_torque": {-50, 50}, "j6_torque": {-50, 50}, "j1_temp": {10, 90}, "j2_temp": {10, 90}, "j3_temp": {10, 110},
			"j4_temp": {10, 90}, "j5_temp": {10, 90}, "j6_temp": {10, 90}, "cycle_time": {10, 120}, "cycles": {0, 1e7}},
		KindAGV: {"battery": {0, 100}, "speed": {0, 1.6}},
	}
	states := map[Kind][]string{
		KindCNC:   {"RUNNING", "IDLE", "SETUP", "ALARM"},
		KindRobot: {"RUNNING", "IDLE", "STOPPED"},
		KindAGV:   {"MOVING", "LOADING", "CHARGING", "IDLE", "BLOCKED"},
	}
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			m := mustModel(t, k, 7, 0)
			seen := map[string]bool{}
			var lastCount float64
			for i := range 2 * 24 * 720 { // 2 days at 5 s
				ts := tuesday8.Add(time.Duration(i) * 5 * time.Second)
				if i%(3*720) == 100 { // every 3 hours a fault
					kinds := []FaultKind{FaultBearingWear, FaultStuckSensor, FaultPressureLeak}
					fk := kinds[(i/(3*720))%len(kinds)]
					if m.supports(fk) {
						if err := m.Inject(fk, "", ts, 0); err != nil {
							t.Fatal(err)
						}
					}
				}
				s := m.Next(ts)
				for field, r := range ranges[k] {
					if v := num(t, s, field); v < r.lo || v > r.hi || math.IsNaN(v) {
						t.Fatalf("%s at %s: %s = %g, outside [%g, %g]; sample %v", k, ts.Format(time.DateTime), field, v, r.lo, r.hi, s)
					}
				}
				if st, ok := s["state"].(string); ok {
					if !contains(states[k], st) {
						t.Fatalf("state %q not one of %v", st, states[k])
					}
					seen[st] = true
				}
				switch k {
				case KindCNC, KindRobot:
					counter := map[Kind]string{KindCNC: "part_count", KindRobot: "cycles"}[k]
					if c := num(t, s, counter); c < lastCount {
						t.Fatalf("%s went backwards: %g after %g", counter, c, lastCount)
					} else {
						lastCount = c
					}
				case KindCompressor:
					if _, ok := s["running"].(bool); !ok {
						t.Fatalf("running = %#v, want a bool", s["running"])
					}
				case KindAGV:
					pos, ok := s["position"].(map[string]any)
					if !ok {
						t.Fatalf("position = %#v, want a nested object", s["position"])
					}
					if x, y := num(t, pos, "x"), num(t, pos, "y"); x < 0 || x > 120 || y < 0 || y > 60 {
						t.Fatalf("AGV left the hall: (%g, %g)", x, y)
					}
				}
				if _, err := json.Marshal(s); err != nil {
					t.Fatal(err)
				}
			}
			// The machines must actually work, not sit in one state.
			if want := map[Kind][]string{KindCNC: {"RUNNING", "IDLE"}, KindRobot: {"RUNNING", "IDLE"}, KindAGV: {"MOVING", "LOADING", "CHARGING"}}[k]; want != nil {
				for _, st := range want {
					if !seen[st] {
						t.Errorf("never in state %s in two days (seen %v)", st, seen)
					}
				}
			}
		})
	}
}

// twins returns two identical machines; faults go into the second one.
func twins(t *testing.T, k Kind) (*Model, *Model) {
	return mustModel(t, k, 11, 0), mustModel(t, k, 11, 0)
}

// runTwins steps both machines every second from..to and returns their last
// samples.
func runTwins(a, b *Model, from time.Time, d time.Duration) (sa, sb map[string]any) {
	for ts := from; !ts.After(from.Add(d)); ts = ts.Add(time.Second) {
		sa, sb = a.Next(ts), b.Next(ts)
	}
	return sa, sb
}

func TestBearingWearRaisesVibrationAndTemperature(t *testing.T) {
	cases := []struct {
		kind      Kind
		vib, temp string
	}{
		{KindCNC, "vibration", "spindle_temp"},
		{KindCompressor, "vibration_rms", "oil_temp"},
		{KindRobot, "j3_torque", "j3_temp"},
	}
	for _, c := range cases {
		t.Run(string(c.kind), func(t *testing.T) {
			healthy, worn := twins(t, c.kind)
			start := tuesday8.Add(2 * time.Hour)
			runTwins(healthy, worn, tuesday8, 2*time.Hour)
			if err := worn.Inject(FaultBearingWear, "", start, time.Hour); err != nil {
				t.Fatal(err)
			}
			// Average the last minutes after 12 minutes of wear (severity
			// 0.8, just below the CNC's vibration trip).
			runTwins(healthy, worn, start, 9*time.Minute)
			var hv, wv, ht, wt float64
			for i := range 180 {
				ts := start.Add(9*time.Minute + time.Duration(i)*time.Second)
				sh, sw := healthy.Next(ts), worn.Next(ts)
				hv += math.Abs(num(t, sh, c.vib))
				wv += math.Abs(num(t, sw, c.vib))
				ht += num(t, sh, c.temp)
				wt += num(t, sw, c.temp)
			}
			hv, wv, ht, wt = hv/180, wv/180, ht/180, wt/180
			if wv < hv*1.15 || wv-hv < 0.5 {
				t.Errorf("%s: worn %.3f vs healthy %.3f, want clearly higher", c.vib, wv, hv)
			}
			if wt-ht < 3 {
				t.Errorf("%s: worn %.2f vs healthy %.2f, want at least 3 °C higher", c.temp, wt, ht)
			}
			if got := worn.ActiveFaults(); len(got) != 1 || got[0].Kind != FaultBearingWear {
				t.Errorf("active faults = %v", got)
			}
			// After the fault ends (maintenance) the drift goes away.
			runTwins(healthy, worn, start.Add(12*time.Minute), 50*time.Minute)
			if got := worn.ActiveFaults(); len(got) != 0 {
				t.Errorf("fault still active after its end: %v", got)
			}
		})
	}
}

func TestPressureLeak(t *testing.T) {
	healthy, leaky := twins(t, KindCompressor)
	runTwins(healthy, leaky, tuesday8, 30*time.Minute)
	start := tuesday8.Add(30 * time.Minute)
	if err := leaky.Inject(FaultPressureLeak, "", start, time.Hour); err != nil {
		t.Fatal(err)
	}
	runTwins(healthy, leaky, start, 5*time.Minute)
	minHealthy, minLeaky, loaded := 99.0, 99.0, 0
	for i := range 600 {
		ts := start.Add(5*time.Minute + time.Duration(i)*time.Second)
		sh, sl := healthy.Next(ts), leaky.Next(ts)
		minHealthy = math.Min(minHealthy, num(t, sh, "discharge_pressure"))
		minLeaky = math.Min(minLeaky, num(t, sl, "discharge_pressure"))
		if sl["running"] == true && num(t, sl, "motor_current") > 70 {
			loaded++
		}
	}
	if minHealthy < 6.3 {
		t.Errorf("healthy compressor fell to %.2f bar; it should hold the 6.5–7.5 bar band", minHealthy)
	}
	if minLeaky > 6.0 {
		t.Errorf("leaking net held %.2f bar; a leak larger than the supply must pull pressure down", minLeaky)
	}
	if loaded < 590 {
		t.Errorf("compressor loaded in %d of 600 s during the leak, want all the time", loaded)
	}
}

func TestStuckSensor(t *testing.T) {
	m := mustModel(t, KindCNC, 3, 0)
	ts := tuesday8
	for range 600 {
		m.Next(ts)
		ts = ts.Add(time.Second)
	}
	if err := m.Inject(FaultStuckSensor, "spindle_temp", ts, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	first := num(t, m.Next(ts), "spindle_temp")
	for range 110 {
		ts = ts.Add(time.Second)
		if v := num(t, m.Next(ts), "spindle_temp"); v != first {
			t.Fatalf("stuck sensor moved from %g to %g", first, v)
		}
	}
	varied := false
	for range 60 {
		ts = ts.Add(time.Second)
		if num(t, m.Next(ts), "spindle_temp") != first {
			varied = true
		}
	}
	if !varied {
		t.Fatal("sensor still stuck after the fault ended")
	}
}

func TestSpike(t *testing.T) {
	a, b := twins(t, KindCompressor)
	runTwins(a, b, tuesday8, 10*time.Minute)
	ts := tuesday8.Add(10*time.Minute + time.Second)
	if err := b.Inject(FaultSpike, "motor_current", ts, 0); err != nil {
		t.Fatal(err)
	}
	sa, sb := a.Next(ts), b.Next(ts)
	base, spiked := math.Max(num(t, sa, "motor_current"), 1), num(t, sb, "motor_current")
	if r := spiked / base; r < 2.9 || r > 6.1 {
		t.Fatalf("spike %g over %g: ratio %.2f, want 3–6", spiked, base, r)
	}
	next := num(t, b.Next(ts.Add(time.Second)), "motor_current")
	if next > 120 {
		t.Fatalf("spike lasted more than one sample: %g", next)
	}
}

func TestFaultNotSupported(t *testing.T) {
	m := mustModel(t, KindCNC, 1, 0)
	if err := m.Inject(FaultPressureLeak, "", tuesday8, 0); !errors.Is(err, ErrFaultNotSupported) {
		t.Fatalf("leak on a CNC: err = %v", err)
	}
	if err := m.Inject(FaultStuckSensor, "part_count", tuesday8, 0); !errors.Is(err, ErrFaultNotSupported) {
		t.Fatalf("stuck counter: err = %v", err)
	}
	agv := mustModel(t, KindAGV, 1, 0)
	if err := agv.Inject(FaultBearingWear, "", tuesday8, 0); !errors.Is(err, ErrFaultNotSupported) {
		t.Fatalf("bearing wear on an AGV: err = %v", err)
	}
}

func TestRandomFaultRate(t *testing.T) {
	m := mustModel(t, KindCompressor, 5, 2) // 2 per hour
	var got []Fault
	m.OnFault(func(f Fault) { got = append(got, f) })
	for i := range 24 * 360 { // one day at 10 s
		m.Next(tuesday8.Add(time.Duration(i) * 10 * time.Second))
	}
	if len(got) < 25 || len(got) > 80 {
		t.Fatalf("%d faults in 24 h at 2 per hour, want about 48", len(got))
	}
	kinds := map[FaultKind]bool{}
	for _, f := range got {
		kinds[f.Kind] = true
	}
	for _, k := range []FaultKind{FaultBearingWear, FaultPressureLeak, FaultStuckSensor, FaultSpike} {
		if !kinds[k] {
			t.Errorf("no %s among %d random faults", k, len(got))
		}
	}
	if n := len(mustModelFaults(t, 0)); n != 0 {
		t.Fatalf("fault rate 0 started %d faults", n)
	}
}

func mustModelFaults(t *testing.T, rate float64) []Fault {
	m := mustModel(t, KindRobot, 5, rate)
	var got []Fault
	m.OnFault(func(f Fault) { got = append(got, f) })
	for i := range 24 * 360 {
		m.Next(tuesday8.Add(time.Duration(i) * 10 * time.Second))
	}
	return got
}

func TestUtilizationShifts(t *testing.T) {
	if u := utilization(time.Tuesday, 10); u < 0.8 {
		t.Errorf("weekday morning utilization %g", u)
	}
	if u := utilization(time.Tuesday, 12.2); u > 0.2 {
		t.Errorf("lunch break utilization %g", u)
	}
	if u := utilization(time.Sunday, 10); u > 0.1 {
		t.Errorf("Sunday utilization %g", u)
	}
	if u := utilization(time.Wednesday, 2); u < 0.2 || u > 0.5 {
		t.Errorf("night shift utilization %g", u)
	}
}

func BenchmarkModelNext(b *testing.B) {
	for _, k := range Kinds() {
		b.Run(string(k), func(b *testing.B) {
			m, _ := NewModel(k, 1, 1)
			ts := tuesday8
			b.ReportAllocs()
			for b.Loop() {
				ts = ts.Add(time.Second)
				m.Next(ts)
			}
		})
	}
}

// A machine's first sample comes from a warmed-up state: on a busy morning
// most machines are already running and warm.
func TestModelStartsWarm(t *testing.T) {
	running, warm := 0, 0
	for seed := range int64(20) {
		s := mustModel(t, KindCNC, seed, 0).Next(tuesday8.Add(2 * time.Hour))
		if s["state"] == "RUNNING" {
			running++
		}
		if num(t, s, "spindle_temp") > 32 {
			warm++
		}
	}
	if running < 8 || warm < 8 {
		t.Fatalf("of 20 machines at 10:00 on a Tuesday %d are running and %d warm; want most", running, warm)
	}
}
