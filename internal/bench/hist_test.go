package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// nearestRank is the textbook percentile of sorted samples.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	r := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(r, 1), len(sorted))-1]
}

func TestHistogramQuantilesMatchSortedSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() time.Duration{
		"uniform 0-10ms": func() time.Duration { return time.Duration(r.Int64N(int64(10 * time.Millisecond))) },
		"exponential":    func() time.Duration { return time.Duration(r.ExpFloat64() * float64(2*time.Millisecond)) },
		"bimodal": func() time.Duration {
			if r.IntN(100) < 3 {
				return time.Duration(200+r.IntN(50)) * time.Millisecond
			}
			return time.Duration(300+r.IntN(400)) * time.Microsecond
		},
		"small ns": func() time.Duration { return time.Duration(r.IntN(120)) },
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{1, 7, 100, 10007} {
				h := NewHistogram()
				samples := make([]time.Duration, n)
				var sum float64
				for i := range samples {
					samples[i] = gen()
					h.Record(samples[i])
					sum += float64(samples[i])
				}
				slices.Sort(samples)
				for _, q := range []float64{0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
					want, got := nearestRank(samples, q), h.Quantile(q)
					if diff := math.Abs(float64(got - want)); diff > 0.008*float64(want)+1 {
						t.Errorf("n=%d q=%g: got %v, sorted samples say %v", n, q, got, want)
					}
				}
				if h.Count() != uint64(n) || h.Max() != samples[n-1] {
					t.Errorf("n=%d: count %d max %v, want %d %v", n, h.Count(), h.Max(), n, samples[n-1])
				}
				if mean := time.Duration(sum / float64(n)); h.Mean()-mean > 1 || mean-h.Mean() > 1 {
					t.Errorf("mean %v, want %v", h.Mean(), mean)
				}
			}
		})
	}
}

func TestHistogramKnownValues(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.95: 95 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		got := h.Quantile(q)
		if math.Abs(float64(got-want)) > 0.008*float64(want) {
			t.Errorf("p%g = %v, want %v", q*100, got, want)
		}
	}
	if h.Mean() != 50500*time.Microsecond {
		t.Errorf("mean %v", h.Mean())
	}
	empty := NewHistogram()
	if empty.Quantile(0.99) != 0 || empty.Max() != 0 || empty.Mean() != 0 {
		t.Error("empty histogram must report zeros")
	}
	h.Record(-time.Second)
	if h.Quantile(0.001) != 0 {
		t.Errorf("a negative sample must count as zero, got %v", h.Quantile(0.001))
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		d := time.Duration(r.Int64N(int64(time.Second)))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	a.Merge(NewHistogram())
	for _, q := range []float64{0.5, 0.99, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged p%g %v != %v", q*100, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != all.Count() || a.Max() != all.Max() {
		t.Error("merged count/max differ")
	}
}

func TestBucketBoundaries(t *testing.T) {
	// Every bucket's midpoint maps back to the bucket, and buckets are
	// ordered: a larger value never lands in a smaller bucket.
	prev := -1
	for v := int64(0); v < 1<<40; v = v + 1 + v/97 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("value %d in bucket %d after bucket %d", v, b, prev)
		}
		prev = b
		if bucketOf(bucketMid(b)) != b {
			t.Fatalf("bucket %d midpoint %d maps to %d", b, bucketMid(b), bucketOf(bucketMid(b)))
		}
	}
	if bucketOf(math.MaxInt64) >= histBuckets {
		t.Fatalf("max value bucket %d out of %d", bucketOf(math.MaxInt64), histBuckets)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	d := time.Duration(0)
	b.ReportAllocs()
	for b.Loop() {
		d += 7919
		h.Record(d % (50 * time.Millisecond))
	}
}
