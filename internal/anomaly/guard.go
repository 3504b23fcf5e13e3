package anomaly

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// guard keeps gross values (error codes such as 65535 or 1e38, garbled
// readings) out of a detector's warm-up, where one of them would set the
// model's scale, and the spike limit, for good: the first seedN rows are
// held back and passed on with every gross value replaced by a missing one
// (judged against the field's median and spread over those rows), later
// warm-up values likewise against the field's running mean and spread, at
// most maxRejects in a row. After warm-up it passes everything through: the
// detector's own scoring sees such values as the anomalies they are. The
// Manager wraps every model in one.

// seedN rows open the warm-up; they are held back until all have come.
const seedN = 16

// grossFactor: a warm-up value is left out as gross when it is farther
// from the level than this many times the larger of the level's magnitude
// and the spread. Error codes (65535, -9999, 1e38) are orders of magnitude
// off; quantised sensors, whose spread can look like zero, are not.
// maxRejects is how many in a row may be left out, so that a real change of
// that size is still taken in.
const (
	grossFactor = 100
	maxRejects  = 8
)

func gross(v, level, spread float64) bool {
	return math.Abs(v-level) > grossFactor*math.Max(math.Max(math.Abs(level), spread), 1e-9)
}

type guard struct {
	det    Detector
	warmup int
	d      int
	warm   bool
	seed   []float64 // seedN rows of d values
	seedT  [seedN]time.Time
	seedK  int
	// Per field: count, mean and squared deviations of the accepted
	// values, and gross values left out in a row (−1: no longer checked).
	n, mean, m2, rejects []float64
	x                    []float64
}

// Guarded wraps det, whose warm-up lasts warmup points, in the warm-up
// guard; the Manager does so for every model, and the evaluation harness
// likewise, so it measures what the hub runs.
func Guarded(det Detector, warmup int) Detector {
	d := len(det.Fields())
	return &guard{det: det, warmup: warmup, d: d, seed: make([]float64, seedN*d),
		n: make([]float64, d), mean: make([]float64, d), m2: make([]float64, d), rejects: make([]float64, d), x: make([]float64, d)}
}

// Fields implements Detector.
func (g *guard) Fields() []string { return g.det.Fields() }

// MemoryBytes implements Detector.
func (g *guard) MemoryBytes() int { return g.det.MemoryBytes() + 8*(seedN+5)*g.d + 96 }

// Observe implements Detector.
func (g *guard) Observe(x []float64, res *Result) { g.ObserveAt(time.Time{}, x, res) }

// ObserveAt implements TimedDetector; the timestamp reaches the model if it
// uses time.
func (g *guard) ObserveAt(t time.Time, x []float64, res *Result) {
	if g.warm {
		g.next(t, x, res)
		return
	}
	if g.seedK < seedN {
		res.Contributions = res.Contributions[:0]
		res.Score, res.Alert, res.Warm = 0, false, false
		res.WarmupRemaining = g.warmup - g.seedK
		copy(g.seed[g.seedK*g.d:], x)
		g.seedT[g.seedK] = t
		g.seedK++
		if g.seedK == seedN {
			g.useSeed(res)
		}
		return
	}
	g.pass(t, x, res)
}

// next hands one row to the model, with its time if the model uses time.
func (g *guard) next(t time.Time, x []float64, res *Result) {
	if td, ok := g.det.(TimedDetector); ok && !t.IsZero() {
		td.ObserveAt(t, x, res)
		return
	}
	g.det.Observe(x, res)
}

func (g *guard) useSeed(res *Result) {
	var col, dev [seedN]float64
	for f := 0; f < g.d; f++ {
		k := 0
		for r := 0; r < seedN; r++ {
			if v := g.seed[r*g.d+f]; !math.IsNaN(v) && !math.IsInf(v, 0) {
				col[k] = v
				k++
			}
		}
		if k < 4 {
			continue // too few to judge: nothing is left out of this field
		}
		vals := col[:k]
		slices.Sort(vals)
		med := (vals[(k-1)/2] + vals[k/2]) / 2
		for i, v := range vals {
			dev[i] = math.Abs(v - med)
		}
		ds := dev[:k]
		slices.Sort(ds)
		far := ds[k-4] // the three values farthest from the median are left out of the spread
		var sum, sq float64
		m := 0
		for _, v := range vals {
			if math.Abs(v-med) <= far {
				sum += v
				sq += v * v
				m++
			}
		}
		mu := sum / float64(m)
		sd := math.Sqrt(math.Max(sq/float64(m)-mu*mu, 0))
		for r := 0; r < seedN; r++ {
			if v := &g.seed[r*g.d+f]; gross(*v, med, sd) {
				*v = math.NaN()
			}
		}
	}
	for r := 0; r < seedN; r++ {
		g.pass(g.seedT[r], g.seed[r*g.d:(r+1)*g.d], res)
	}
}

// pass checks one warm-up row against the accepted values so far and hands
// it on.
func (g *guard) pass(t time.Time, x []float64, res *Result) {
	for f, v := range x {
		g.x[f] = v
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		if g.n[f] >= 2 && g.rejects[f] >= 0 && gross(v, g.mean[f], math.Sqrt(g.m2[f]/g.n[f])) {
			if g.rejects[f]++; g.rejects[f] <= maxRejects {
				g.x[f] = math.NaN()
				continue
			}
			g.rejects[f] = -1 // the level really moved: stop checking
		} else if g.rejects[f] > 0 {
			g.rejects[f] = 0
		}
		g.n[f]++
		dlt := v - g.mean[f]
		g.mean[f] += dlt / g.n[f]
		g.m2[f] += dlt * (v - g.mean[f])
	}
	g.next(t, g.x, res)
	g.warm = res.Warm
}

const guardVersion = 1

// MarshalBinary implements encoding.BinaryMarshaler.
func (g *guard) MarshalBinary() ([]byte, error) {
	inner, err := g.det.MarshalBinary()
	if err != nil {
		return nil, err
	}
	e := encoder{}
	e.header("guard", guardVersion)
	e.i64(int64(g.d))
	warm := int64(0)
	if g.warm {
		warm = 1
	}
	e.i64(warm)
	e.i64(int64(g.seedK))
	for _, s := range [][]float64{g.seed, g.n, g.mean, g.m2, g.rejects} {
		e.f64s(s)
	}
	e.str(string(inner))
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (g *guard) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	d.header("guard", guardVersion)
	dim, warm, seedK := d.i64(), d.i64(), d.i64()
	seed, n, mean, m2, rej := d.f64s(), d.f64s(), d.f64s(), d.f64s(), d.f64s()
	inner := d.str()
	if err := d.done(); err != nil {
		return err
	}
	if dim != int64(g.d) || len(seed) != seedN*g.d || len(n) != g.d || len(mean) != g.d || len(m2) != g.d || len(rej) != g.d || seedK < 0 || seedK > seedN {
		return fmt.Errorf("%w: the snapshot's warm-up guard does not fit the model; the model will relearn", ErrSnapshot)
	}
	if err := g.det.UnmarshalBinary([]byte(inner)); err != nil {
		return err
	}
	g.warm, g.seedK = warm == 1, int(seedK)
	copy(g.seed, seed)
	copy(g.n, n)
	copy(g.mean, mean)
	copy(g.m2, m2)
	copy(g.rejects, rej)
	return nil
}
