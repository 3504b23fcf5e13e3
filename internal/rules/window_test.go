package rules

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

type sample struct {
	t int64
	v float64
}

// naive computes an aggregate from the raw samples.
func naive(fn aggFunc, ss []sample) (float64, bool) {
	if fn == aggCount {
		return float64(len(ss)), true
	}
	if len(ss) == 0 {
		return 0, false
	}
	sum, mn, mx := 0.0, math.Inf(1), math.Inf(-1)
	first, last := ss[0], ss[0]
	for _, s := range ss {
		sum += s.v
		mn, mx = math.Min(mn, s.v), math.Max(mx, s.v)
		if s.t < first.t {
			first = s
		}
		if s.t >= last.t {
			last = s
		}
	}
	mean := sum / float64(len(ss))
	switch fn {
	case aggAvg:
		return mean, true
	case aggMin:
		return mn, true
	case aggMax:
		return mx, true
	case aggSum:
		return sum, true
	case aggStddev:
		sq := 0.0
		for _, s := range ss {
			sq += (s.v - mean) * (s.v - mean)
		}
		return math.Sqrt(sq / float64(len(ss))), true
	case aggRate:
		if last.t == first.t {
			return 0, false
		}
		return (last.v - first.v) / (float64(last.t-first.t) / 1000), true
	}
	return 0, false
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func randomSamples(r *rand.Rand, n int, start int64) []sample {
	ss := make([]sample, n)
	t := start
	for i := range ss {
		// Mostly dense, sometimes long gaps, so buckets expire and windows empty.
		gap := r.Int64N(4000)
		if r.IntN(50) == 0 {
			gap = r.Int64N(15 * 60 * 1000)
		}
		t += gap
		ss[i] = sample{t: t, v: 1e6 + r.NormFloat64()*50} // large offset: catches unstable variance
	}
	return ss
}

var allAggs = []aggFunc{aggAvg, aggMin, aggMax, aggSum, aggCount, aggRate, aggStddev}

func TestSlidingWindowMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		dur     time.Duration
		buckets int
	}{{5 * time.Minute, 30}, {time.Minute, 60}, {10 * time.Second, 30}, {90 * time.Second, 7}} {
		w := newSliding(tc.dur, tc.buckets)
		ss := randomSamples(r, 3000, 1_700_000_000_000)
		for i, s := range ss {
			w.add(s.t, s.v)
			if i%3 != 0 {
				continue
			}
			// Evaluate at the sample's time and a little later.
			for _, at := range []int64{s.t, s.t + r.Int64N(tc.dur.Milliseconds())} {
				k := floorDiv(at, w.width)
				var in []sample
				for _, x := range ss[:i+1] {
					if kb := floorDiv(x.t, w.width); kb > k-int64(len(w.b)) && kb <= k {
						in = append(in, x)
					}
				}
				st, known := w.stats(at)
				if !known {
					t.Fatalf("%v: window unknown after samples", tc.dur)
				}
				for _, fn := range allAggs {
					want, wok := naive(fn, in)
					got, gok := st.value(fn)
					if wok != gok || (wok && !near(got, want)) {
						t.Fatalf("%v/%d agg %d at sample %d: got %v,%v want %v,%v (n=%d)", tc.dur, tc.buckets, fn, i, got, gok, want, wok, len(in))
					}
				}
			}
		}
		if covered := int64(len(w.b)) * w.width; covered > tc.dur.Milliseconds() || covered < tc.dur.Milliseconds()-int64(len(w.b)) {
			t.Errorf("%v: buckets cover %dms", tc.dur, covered)
		}
	}
}

func TestTumblingWindowMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dur := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
		w := newTumbling(dur)
		d := dur.Milliseconds()
		ss := randomSamples(r, 3000, 1_700_000_000_123)
		for i, s := range ss {
			w.add(s.t, s.v)
			for _, at := range []int64{s.t, s.t + r.Int64N(2*d)} {
				k := floorDiv(at, d)
				var in []sample
				known := false
				for _, x := range ss[:i+1] {
					kb := floorDiv(x.t, d)
					if kb <= k-1 {
						known = true
					}
					if kb == k-1 {
						in = append(in, x)
					}
				}
				st, gotKnown := w.stats(at)
				if gotKnown != known {
					t.Fatalf("%v at sample %d: known=%v, want %v", dur, i, gotKnown, known)
				}
				if !known {
					continue
				}
				for _, fn := range allAggs {
					want, wok := naive(fn, in)
					got, gok := st.value(fn)
					if wok != gok || (wok && !near(got, want)) {
						t.Fatalf("%v agg %d at sample %d: got %v,%v want %v,%v", dur, fn, i, got, gok, want, wok)
					}
				}
			}
		}
	}
}

func TestWindowSnapshotRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, spec := range []windowSpec{{Field: "x", Dur: 5 * time.Minute}, {Field: "x", Dur: 10 * time.Minute, Tumbling: true}} {
		a := newWindow(spec, 30)
		ss := randomSamples(r, 400, 1_700_000_000_000)
		for _, s := range ss[:200] {
			a.add(s.t, s.v)
		}
		raw, err := json.Marshal(a.snap())
		if err != nil {
			t.Fatal(err)
		}
		var snap windowSnap
		if err := json.Unmarshal(raw, &snap); err != nil {
			t.Fatal(err)
		}
		b := snap.restore(spec)
		if b == nil {
			t.Fatalf("%+v: snapshot not restored", spec)
		}
		if other := snap.restore(windowSpec{Field: "x", Dur: time.Hour, Tumbling: spec.Tumbling}); other != nil {
			t.Fatalf("%+v: a snapshot restored into a window of another length", spec)
		}
		for _, s := range ss[200:] {
			a.add(s.t, s.v)
			b.add(s.t, s.v)
			sa, ka := a.stats(s.t)
			sb, kb := b.stats(s.t)
			if ka != kb || sa != sb {
				t.Fatalf("%+v: restored window diverged: %+v vs %+v", spec, sa, sb)
			}
		}
	}
}
