package anomaly

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shopfloor/shopfloor/internal/anomaly/synth"
)

func TestSymEigen(t *testing.T) {
	// A symmetric matrix with known eigenvalues 6, 3, 1 (built as Q·diag·Qᵀ).
	a := []float64{
		3.5, 1.5, -1,
		1.5, 3.5, 1,
		-1, 1, 3,
	}
	orig := append([]float64(nil), a...)
	vals := make([]float64, 3)
	vecs := make([]float64, 9)
	symEigen(a, 3, vals, vecs)
	if !(vals[0] >= vals[1] && vals[1] >= vals[2]) {
		t.Fatalf("eigenvalues not sorted: %v", vals)
	}
	// Check A·v = λ·v for each pair.
	for c := 0; c < 3; c++ {
		for i := 0; i < 3; i++ {
			av := 0.0
			for j := 0; j < 3; j++ {
				av += orig[i*3+j] * vecs[j*3+c]
			}
			if d := av - vals[c]*vecs[i*3+c]; math.Abs(d) > 1e-9 {
				t.Fatalf("A·v != λ·v for eigenvalue %v (row %d off by %g)", vals[c], i, d)
			}
		}
	}
	tr := vals[0] + vals[1] + vals[2]
	if math.Abs(tr-10) > 1e-9 {
		t.Fatalf("trace %v, want 10", tr)
	}
}

// run feeds a univariate series and returns per-row results (copied).
func runUni(t *testing.T, u *Univariate, values []float64) []Result {
	t.Helper()
	out := make([]Result, len(values))
	var r Result
	for i, v := range values {
		u.ObserveValue(v, &r)
		out[i] = r
		out[i].Contributions = append([]Contribution(nil), r.Contributions...)
	}
	return out
}

func TestUnivariateDetectsFaults(t *testing.T) {
	cases := []struct {
		fault   synth.Fault
		size    float64
		within  int // rows after onset by which an alert must come
		reasons []Reason
	}{
		{synth.Spike, 12, 1, []Reason{ReasonSpike}},
		{synth.Shift, 4, 20, []Reason{ReasonShift, ReasonSpike}},
		// 20 σ over the last 1,000 rows: 0.02 σ a row. Slower drift is
		// learned as wander (TestUnivariateSlowDriftIsWander).
		{synth.Drift, 20, 300, []Reason{ReasonShift, ReasonSpike}},
		{synth.Variance, 4, 40, []Reason{ReasonSpread, ReasonShift, ReasonSpike}},
		{synth.Stuck, 0, 30, []Reason{ReasonStuck, ReasonShift}},
	}
	for _, c := range cases {
		t.Run(c.fault.String(), func(t *testing.T) {
			const at = 2000
			vals, _ := synth.Series(synth.Spec{N: 3000, Level: 50, Noise: 2, SeasonAmp: 0, Fault: c.fault, At: at, Size: c.size, Seed: 7})
			u, err := NewUnivariate(UnivariateConfig{Field: "temp"})
			if err != nil {
				t.Fatal(err)
			}
			res := runUni(t, u, vals)
			falseAlarms := 0
			for i := 0; i < at; i++ {
				if res[i].Alert {
					falseAlarms++
				}
			}
			if falseAlarms > 2 {
				t.Errorf("%d false alarms on %d rows of clean noise before the fault", falseAlarms, at)
			}
			first := -1
			for i := at; i < at+c.within && i < len(res); i++ {
				if res[i].Alert {
					first = i
					break
				}
			}
			if first < 0 {
				t.Fatalf("no alert within %d rows of a %s fault", c.within, c.fault)
			}
			got := res[first].Contributions
			if len(got) != 1 || got[0].Field != "temp" {
				t.Fatalf("explanation %+v, want the field temp", got)
			}
			ok := false
			for _, r := range c.reasons {
				ok = ok || got[0].Reason == r
			}
			if !ok {
				t.Errorf("reason %v, want one of %v", got[0].Reason, c.reasons)
			}
		})
	}
}

func TestUnivariateFalseAlarmsOnNoise(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	u, _ := NewUnivariate(UnivariateConfig{})
	var res Result
	alerts := 0
	const n = 50000
	for i := 0; i < n; i++ {
		u.ObserveValue(100+3*r.NormFloat64(), &res)
		if res.Alert {
			alerts++
		}
		if res.Score < 0 || res.Score > 1 {
			t.Fatalf("score %v outside [0,1]", res.Score)
		}
	}
	if alerts > 5 { // 1 per 10,000
		t.Fatalf("%d alerts in %d points of Gaussian noise", alerts, n)
	}
}

func TestWarmupIsVisible(t *testing.T) {
	p, err := NewPCA(PCAConfig{Fields: []string{"a", "b"}, Warmup: 100})
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	for i := 0; i < 100; i++ {
		// Wild values during warm-up must never alert.
		p.Observe([]float64{float64(i % 7 * 1000), float64(i)}, &res)
		if res.Warm || res.Alert || res.Score != 0 {
			t.Fatalf("point %d: warm=%v alert=%v score=%v during warm-up", i, res.Warm, res.Alert, res.Score)
		}
		if res.WarmupRemaining != 100-i {
			t.Fatalf("point %d: WarmupRemaining %d, want %d", i, res.WarmupRemaining, 100-i)
		}
	}
	p.Observe([]float64{3000, 50}, &res)
	if !res.Warm || res.WarmupRemaining != 0 {
		t.Fatalf("after warm-up: warm=%v remaining=%d", res.Warm, res.WarmupRemaining)
	}
}

func TestPCADetectsBrokenCorrelation(t *testing.T) {
	const at = 1500
	rows, _ := synth.Correlated{N: 2500, D: 8, K: 3, Noise: 0.1, At: at, Field: 5, Break: 1, Seed: 3}.Rows()
	fields := []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"}
	p, err := NewPCA(PCAConfig{Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	before, after := 0, 0
	blamed := map[string]int{}
	for i, row := range rows {
		p.Observe(row, &res)
		if !res.Alert {
			continue
		}
		if i < at {
			before++
			continue
		}
		after++
		blamed[res.Contributions[0].Field]++
	}
	if before > 3 {
		t.Errorf("%d alerts before the fault on %d normal rows", before, at-400)
	}
	if after < (len(rows)-at)/2 {
		t.Fatalf("only %d of %d rows after the correlation broke alerted", after, len(rows)-at)
	}
	if blamed["f5"] < after*8/10 {
		t.Errorf("broken field f5 blamed first in %d of %d alerts: %v", blamed["f5"], after, blamed)
	}
}

func TestPCADetectsShiftInOneField(t *testing.T) {
	const at = 1200
	rows, _ := synth.Correlated{N: 1600, D: 4, K: 2, Noise: 0.2, Seed: 9}.Rows()
	for i := at; i < len(rows); i++ {
		rows[i][2] += 3 // about 1.5 standard deviations of that sensor
	}
	p, _ := NewPCA(PCAConfig{Fields: []string{"a", "b", "c", "d"}})
	var res Result
	first := -1
	for i, row := range rows {
		p.Observe(row, &res)
		if i >= at && res.Alert && first < 0 {
			first = i
			if res.Contributions[0].Field != "c" {
				t.Errorf("first alert blames %+v, want c", res.Contributions)
			}
			sum := 0.0
			for _, c := range res.Contributions {
				sum += c.Share
			}
			if sum > 1+1e-9 || sum < 0.8 {
				t.Errorf("shares sum to %v", sum)
			}
		}
	}
	if first < 0 || first > at+30 {
		t.Fatalf("shift detected at row %d, want within 30 rows of %d", first, at)
	}
}

func TestPCAMissingFieldDoesNotAlert(t *testing.T) {
	rows, _ := synth.Correlated{N: 1500, D: 3, K: 1, Noise: 0.1, Seed: 4}.Rows()
	p, _ := NewPCA(PCAConfig{Fields: []string{"a", "b", "c"}})
	var res Result
	for i, row := range rows {
		if i > 1000 && i%3 == 0 {
			row[1] = math.NaN()
		}
		p.Observe(row, &res)
		if res.Alert && i > 1000 {
			t.Fatalf("row %d alerted because a field was missing: %+v", i, res)
		}
	}
}

// snapshotCase runs a detector over the first half of x, snapshots it into
// a fresh detector, and checks both give bit-identical results after.
func snapshotCase(t *testing.T, a, b Detector, x [][]float64) {
	t.Helper()
	var ra, rb Result
	half := len(x) / 2
	for _, row := range x[:half] {
		a.Observe(row, &ra)
	}
	blob, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.UnmarshalBinary(blob); err != nil {
		t.Fatal(err)
	}
	for i, row := range x[half:] {
		a.Observe(row, &ra)
		b.Observe(row, &rb)
		if ra.Score != rb.Score || ra.Alert != rb.Alert || ra.Warm != rb.Warm || len(ra.Contributions) != len(rb.Contributions) {
			t.Fatalf("row %d after restore: original %+v, restored %+v", half+i, ra, rb)
		}
	}
	if err := b.UnmarshalBinary(blob[:len(blob)-3]); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("truncated snapshot: err %v, want ErrSnapshot", err)
	}
}

func TestSnapshotRestoreEquivalence(t *testing.T) {
	rows, _ := synth.Correlated{N: 1400, D: 5, K: 2, Noise: 0.2, At: 1000, Field: 1, Break: 1, Seed: 5}.Rows()
	fields := []string{"a", "b", "c", "d", "e"}
	t.Run("pca", func(t *testing.T) {
		a, _ := NewPCA(PCAConfig{Fields: fields})
		b, _ := NewPCA(PCAConfig{Fields: fields})
		snapshotCase(t, a, b, rows)
	})
	t.Run("pca-mid-warmup", func(t *testing.T) {
		a, _ := NewPCA(PCAConfig{Fields: fields, Warmup: 1000})
		b, _ := NewPCA(PCAConfig{Fields: fields, Warmup: 1000})
		snapshotCase(t, a, b, rows)
	})
	t.Run("fieldwise", func(t *testing.T) {
		a, _ := NewFieldwise(fields, UnivariateConfig{})
		b, _ := NewFieldwise(fields, UnivariateConfig{})
		snapshotCase(t, a, b, rows)
	})
	t.Run("univariate", func(t *testing.T) {
		vals, _ := synth.Series(synth.Spec{N: 2000, Level: 5, Noise: 1, Fault: synth.Shift, At: 1500, Size: 5, Seed: 1})
		x := make([][]float64, len(vals))
		for i, v := range vals {
			x[i] = []float64{v}
		}
		a, _ := NewUnivariate(UnivariateConfig{Field: "v"})
		b, _ := NewUnivariate(UnivariateConfig{Field: "v"})
		snapshotCase(t, a, b, x)
	})
	t.Run("refuses-other-fields", func(t *testing.T) {
		a, _ := NewPCA(PCAConfig{Fields: fields})
		blob, _ := a.MarshalBinary()
		b, _ := NewPCA(PCAConfig{Fields: fields[:4]})
		if err := b.UnmarshalBinary(blob); !errors.Is(err, ErrSnapshot) {
			t.Fatalf("err %v, want ErrSnapshot", err)
		}
		u, _ := NewUnivariate(UnivariateConfig{})
		if err := u.UnmarshalBinary(blob); !errors.Is(err, ErrSnapshot) {
			t.Fatalf("univariate reading a pca snapshot: err %v, want ErrSnapshot", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	if _, err := NewPCA(PCAConfig{}); !errors.Is(err, ErrConfig) {
		t.Errorf("no fields: %v", err)
	}
	if _, err := NewPCA(PCAConfig{Fields: []string{"a"}, Sensitivity: 1.5}); !errors.Is(err, ErrConfig) {
		t.Errorf("sensitivity 1.5: %v", err)
	}
	if _, err := NewPCA(PCAConfig{Fields: []string{"a", "b", "c"}, Warmup: 5}); !errors.Is(err, ErrConfig) {
		t.Errorf("short warm-up: %v", err)
	}
	if _, err := NewUnivariate(UnivariateConfig{Warmup: 3}); !errors.Is(err, ErrConfig) {
		t.Errorf("univariate short warm-up: %v", err)
	}
}

// A step far beyond the usual change between readings alerts at once even
// on a series whose level swings widely (daily seasonality ten times the
// noise), where neither the level nor the spike test can see it: the jump
// statistic works on differences. The same series without the step is
// quiet.
func TestUnivariateJumpOnSeasonalSeries(t *testing.T) {
	series := func(jump float64) []float64 {
		rng := rand.New(rand.NewPCG(3, 4))
		v := make([]float64, 4000)
		for i := range v {
			v[i] = 50 + 10*math.Sin(2*math.Pi*float64(i)/288) + rng.NormFloat64()
			if i >= 2500 && i < 2510 {
				v[i] += jump
			}
		}
		return v
	}
	run := func(vals []float64) []Result {
		u, err := NewUnivariate(UnivariateConfig{Field: "load", Warmup: 600})
		if err != nil {
			t.Fatal(err)
		}
		return runUni(t, u, vals)
	}
	for i, r := range run(series(0)) {
		if r.Alert {
			t.Fatalf("alert at %d on the seasonal series without a step", i)
		}
	}
	res := run(series(30))
	if !res[2500].Alert || len(res[2500].Contributions) == 0 || res[2500].Contributions[0].Reason != ReasonJump {
		t.Fatalf("at the step: %+v, want an alert for a jump", res[2500])
	}
}

// A wild value during warm-up (a sensor's error code or a garbled reading)
// is left out: it neither sets the model's scale nor the alarm limits, so
// spikes and shifts after warm-up are still found. A real change of level
// during warm-up is taken in after a few points.
func TestUnivariateWarmupIgnoresWildValues(t *testing.T) {
	// The Manager runs every model behind the warm-up guard; so does this.
	run := func(vals []float64) []Result {
		u, err := NewUnivariate(UnivariateConfig{Field: "x"})
		if err != nil {
			t.Fatal(err)
		}
		g := Guarded(u, u.cfg.Warmup)
		out := make([]Result, len(vals))
		for i, v := range vals {
			g.Observe([]float64{v}, &out[i])
			out[i].Contributions = append([]Contribution(nil), out[i].Contributions...)
		}
		return out
	}
	series := func(bad float64, at int) []float64 {
		rng := rand.New(rand.NewPCG(1, 2))
		v := make([]float64, 3000)
		for i := range v {
			v[i] = 50 + rng.NormFloat64()
			switch {
			case i == at:
				v[i] = bad
			case i == 1500:
				v[i] += 12 // a spike
			case i >= 2000 && i < 2100:
				v[i] += 10 // a shift
			}
		}
		return v
	}
	for _, bad := range []float64{65535, 1e308, -1e38} {
		for _, at := range []int{3, 100, 300} {
			res := run(series(bad, at))
			shift := 0
			for _, r := range res[2000:2100] {
				if r.Alert {
					shift++
				}
			}
			if !res[1500].Alert || shift < 80 || !res[len(res)-1].Warm {
				t.Errorf("%g at point %d: spike alert %v, shift alerts %d/100, warm %v", bad, at, res[1500].Alert, shift, res[len(res)-1].Warm)
			}
		}
	}
	// A level that steps by 40 σ at point 100 of warm-up is learned.
	vals := series(50, 0)
	for i := 100; i < len(vals); i++ {
		vals[i] += 40
	}
	res := run(vals)
	if !res[600].Warm || res[1000].Alert {
		t.Errorf("after a real step during warm-up: %+v at 600, %+v at 1000", res[600], res[1000])
	}
}
