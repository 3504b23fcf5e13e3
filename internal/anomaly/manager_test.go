package anomaly

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/anomaly/synth"
)

func feed(t *testing.T, m *Manager, org, dev, tmpl string, rows [][]float64, names []string, t0 time.Time) []DeviceScore {
	t.Helper()
	out := make([]DeviceScore, len(rows))
	var ds DeviceScore
	for i, row := range rows {
		vals := make(map[string]float64, len(row))
		for j, v := range row {
			vals[names[j]] = v
		}
		if err := m.Observe(Update{Org: org, Device: dev, Template: tmpl, Time: t0.Add(time.Duration(i) * time.Second), Values: vals}, &ds); err != nil {
			t.Fatal(err)
		}
		out[i] = ds
		out[i].Contributions = append([]Contribution(nil), ds.Contributions...)
	}
	return out
}

func TestManagerScoresAndExplains(t *testing.T) {
	m, err := NewManager(ManagerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"flow", "pressure", "current", "vibration"}
	if err := m.SetTemplate("acme", "pump", Template{Fields: names}); err != nil {
		t.Fatal(err)
	}
	rows, _ := synth.Correlated{N: 1500, D: 4, K: 2, Noise: 0.1, At: 1200, Field: 1, Break: 1, Seed: 11}.Rows()
	res := feed(t, m, "acme", "p1", "pump", rows, names, time.Unix(1e9, 0))
	if res[0].Warm || res[0].WarmupRemaining != 400 {
		t.Fatalf("first update: %+v", res[0])
	}
	alerts := 0
	for _, r := range res[1200:] {
		if r.Alert {
			alerts++
			if r.Contributions[0].Field != "pressure" {
				t.Fatalf("alert blames %+v, want pressure", r.Contributions)
			}
		}
	}
	if alerts < 150 {
		t.Fatalf("only %d of 300 faulty updates alerted", alerts)
	}
	info, ok := m.Device(Key{"acme", "p1"})
	if !ok || info.Kind != KindPCA || len(info.Fields) != 4 || info.MemoryBytes <= 0 {
		t.Fatalf("device info %+v", info)
	}
}

func TestManagerTemplateChanges(t *testing.T) {
	m, _ := NewManager(ManagerConfig{Default: Template{Warmup: 50}})
	names := []string{"a", "b"}
	rows, _ := synth.Correlated{N: 120, D: 2, K: 1, Noise: 0.1, Seed: 2}.Rows()
	t0 := time.Unix(1e9, 0)
	res := feed(t, m, "o", "d", "t", rows, names, t0)
	if !res[len(res)-1].Warm {
		t.Fatal("not warm after 120 updates with a 50-update warm-up")
	}
	// A new sensitivity keeps what was learned.
	if err := m.SetTemplate("o", "t", Template{Warmup: 50, Sensitivity: 0.2}); err != nil {
		t.Fatal(err)
	}
	res = feed(t, m, "o", "d", "t", rows[:1], names, t0.Add(time.Hour))
	if !res[0].Warm {
		t.Fatal("changing only the sensitivity made the device relearn")
	}
	// New fields start again.
	if err := m.SetTemplate("o", "t", Template{Warmup: 50, Fields: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	res = feed(t, m, "o", "d", "t", rows[:1], names, t0.Add(2*time.Hour))
	if res[0].Warm || res[0].WarmupRemaining != 50 {
		t.Fatalf("after a field change: %+v", res[0])
	}
	// Late data is flagged, not learned.
	res = feed(t, m, "o", "d", "t", rows[:1], names, t0)
	if !res[0].Late {
		t.Fatal("an update older than the last one was not flagged late")
	}
	if err := m.SetTemplate("o", "bad", Template{Sensitivity: 2}); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad sensitivity: %v", err)
	}
	if err := m.SetTemplate("o", "bad", Template{Kind: "lstm"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad kind: %v", err)
	}
}

func TestManagerDeviceLimit(t *testing.T) {
	m, _ := NewManager(ManagerConfig{MaxDevices: 2})
	var ds DeviceScore
	for i := 0; i < 2; i++ {
		if err := m.Observe(Update{Org: "o", Device: fmt.Sprint(i), Values: map[string]float64{"x": 1}}, &ds); err != nil {
			t.Fatal(err)
		}
	}
	err := m.Observe(Update{Org: "o", Device: "third", Values: map[string]float64{"x": 1}}, &ds)
	if !errors.Is(err, ErrTooManyDevices) {
		t.Fatalf("third device: %v", err)
	}
	m.Forget(Key{"o", "0"})
	if err := m.Observe(Update{Org: "o", Device: "third", Values: map[string]float64{"x": 1}}, &ds); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
	if m.Len() != 2 {
		t.Fatalf("Len %d", m.Len())
	}
}

func TestManagerSnapshotRestore(t *testing.T) {
	names := []string{"a", "b", "c"}
	rows, _ := synth.Correlated{N: 900, D: 3, K: 1, Noise: 0.2, At: 700, Field: 0, Break: 1, Seed: 8}.Rows()
	t0 := time.Unix(1e9, 0)
	mk := func() *Manager {
		m, err := NewManager(ManagerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		m.SetTemplate("o", "uni", Template{Kind: KindUnivariate, Fields: names})
		return m
	}
	a := mk()
	feed(t, a, "o", "pca-dev", "", rows[:500], names, t0)
	feed(t, a, "o", "uni-dev", "uni", rows[:500], names, t0)
	var buf bytes.Buffer
	if err := a.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	refs, err := SnapshotTemplates(buf.Bytes())
	if err != nil || len(refs) != 2 || !slices.Contains(refs, TemplateRef{"o", ""}) || !slices.Contains(refs, TemplateRef{"o", "uni"}) {
		t.Fatalf("snapshot templates %v, err %v; want o/\"\" and o/uni", refs, err)
	}
	if _, err := SnapshotTemplates(buf.Bytes()[:buf.Len()-5]); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("templates of a corrupt snapshot: err %v", err)
	}
	b := mk()
	skipped, err := b.Restore(bytes.NewReader(buf.Bytes()))
	if err != nil || skipped != 0 {
		t.Fatalf("restore: skipped %d, err %v", skipped, err)
	}
	if b.Len() != 2 {
		t.Fatalf("restored %d devices", b.Len())
	}
	for _, dev := range []struct{ name, tmpl string }{{"pca-dev", ""}, {"uni-dev", "uni"}} {
		ra := feed(t, a, "o", dev.name, dev.tmpl, rows[500:], names, t0.Add(500*time.Second))
		rb := feed(t, b, "o", dev.name, dev.tmpl, rows[500:], names, t0.Add(500*time.Second))
		for i := range ra {
			if ra[i].Score != rb[i].Score || ra[i].Alert != rb[i].Alert {
				t.Fatalf("%s update %d: original %+v, restored %+v", dev.name, 500+i, ra[i].Result, rb[i].Result)
			}
		}
	}
	// A corrupt snapshot changes nothing.
	c := mk()
	if _, err := c.Restore(bytes.NewReader(buf.Bytes()[:buf.Len()-5])); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("corrupt snapshot: %v", err)
	}
	if c.Len() != 0 {
		t.Fatalf("corrupt snapshot restored %d devices", c.Len())
	}
	// A changed template makes its devices relearn.
	d := mk()
	d.SetTemplate("o", "uni", Template{Kind: KindUnivariate, Fields: names[:2]})
	if skipped, err := d.Restore(bytes.NewReader(buf.Bytes())); err != nil || skipped != 1 {
		t.Fatalf("changed template: skipped %d err %v", skipped, err)
	}
}

func TestManagerConcurrent(t *testing.T) {
	m, _ := NewManager(ManagerConfig{Default: Template{Warmup: 50}})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var ds DeviceScore
			for i := 0; i < 300; i++ {
				dev := fmt.Sprint("d", (g+i)%5) // devices shared between goroutines
				vals := map[string]float64{"x": r.NormFloat64(), "y": r.NormFloat64()}
				if err := m.Observe(Update{Org: "o", Device: dev, Time: time.Unix(int64(i), 0), Values: vals}, &ds); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	var snap bytes.Buffer
	if err := m.Snapshot(&snap); err != nil { // concurrently with updates
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m.Len() != 5 {
		t.Fatalf("Len %d, want 5", m.Len())
	}
}

// A gross value during warm-up (an error code) is kept out of the PCA and
// RCF models, so faults after warm-up are still found (a broken
// correlation for PCA, a level shift for RCF, which does not see broken
// correlations); the same values fed to the bare detectors blind them.
func TestManagerWarmupIgnoresGrossValues(t *testing.T) {
	names := []string{"flow", "pressure", "current", "vibration"}
	rows, _ := synth.Correlated{N: 1500, D: 4, K: 2, Noise: 0.1, At: 1200, Field: 1, Break: 1, Seed: 11}.Rows()
	shifted, _ := synth.Correlated{N: 1500, D: 4, K: 2, Noise: 0.1, Seed: 12}.Rows()
	for i := 1200; i < 1500; i++ {
		shifted[i][0] += 3
	}
	for _, at := range []int{3, 150, 300} {
		rows[at][2], shifted[at][0] = 65535, 65535 // RCF scales each field alone: spoil the shifted one
	}
	for _, c := range []struct {
		kind string
		rows [][]float64
		bare func() (Detector, error)
	}{
		{KindPCA, rows, func() (Detector, error) { return NewPCA(PCAConfig{Fields: names}) }},
		{KindRCF, shifted, func() (Detector, error) { return NewRCF(RCFConfig{Fields: names}) }},
	} {
		count := func(res []Result) (alerts, early int) {
			for i, r := range res {
				switch {
				case r.Alert && i >= 1200:
					alerts++
				case r.Alert:
					early++
				}
			}
			return
		}
		m, err := NewManager(ManagerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetTemplate("acme", "pump", Template{Fields: names, Kind: c.kind}); err != nil {
			t.Fatal(err)
		}
		var res []Result
		for _, ds := range feed(t, m, "acme", "p1", "pump", c.rows, names, time.Unix(1e9, 0)) {
			res = append(res, ds.Result)
		}
		if alerts, early := count(res); alerts < 150 || early > 10 {
			t.Errorf("%s: %d of 300 faulty updates alerted, %d alerts before the fault", c.kind, alerts, early)
		}
		det, err := c.bare()
		if err != nil {
			t.Fatal(err)
		}
		res = res[:0]
		for _, row := range c.rows {
			var r Result
			det.Observe(row, &r)
			res = append(res, r)
		}
		if alerts, _ := count(res); alerts >= 150 {
			t.Errorf("bare %s alerted on %d faulty updates despite the error codes; the test no longer shows the guard's use", c.kind, alerts)
		}
	}
}
