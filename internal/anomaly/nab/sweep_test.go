package nab

import (
	"math"
	"math/rand"
	"testing"
	"time"
)

// TestSweepMatchesScore checks every sweep point against Score on random
// corpora: ties, NaN scores, probation, overlapping and empty windows.
func TestSweepMatchesScore(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for it := 0; it < 300; it++ {
		var files []Series
		for f := rng.Intn(4); f >= 0; f-- {
			n := 1 + rng.Intn(80)
			times := minutes(n)
			s := Series{Times: times, Scores: make([]float64, n), Probation: rng.Intn(n/3 + 1)}
			for i := range s.Scores {
				// Coarse values so that thresholds tie.
				s.Scores[i] = float64(rng.Intn(12)) / 11
				if rng.Intn(40) == 0 {
					s.Scores[i] = math.NaN()
				}
			}
			for k := rng.Intn(4); k > 0; k-- {
				a := rng.Intn(n+4) - 2
				s.Windows = append(s.Windows, Window{Start: times[0].Add(time.Duration(a) * time.Minute), End: times[0].Add(time.Duration(a+rng.Intn(12)) * time.Minute)})
			}
			files = append(files, s)
		}
		for _, p := range Profiles() {
			pts := Sweep(files, p)
			if pts[0].Tally.TP != 0 || pts[0].Tally.FP != 0 {
				t.Fatalf("first sweep point detects: %+v", pts[0])
			}
			for k, pt := range pts {
				if k > 0 && pt.Threshold >= pts[k-1].Threshold {
					t.Fatalf("thresholds not decreasing: %v then %v", pts[k-1].Threshold, pt.Threshold)
				}
				var want Tally
				for _, s := range files {
					det := make([]bool, len(s.Scores))
					for i, v := range s.Scores {
						det[i] = v >= pt.Threshold
					}
					want = want.Add(Score(s.Times, det, s.Windows, s.Probation, p))
				}
				got := pt.Tally
				if math.Abs(got.Raw-want.Raw) > 1e-9 || got.TP != want.TP || got.FP != want.FP || got.FN != want.FN || got.Null != want.Null || got.Perfect != want.Perfect {
					t.Fatalf("it %d %s threshold %v: sweep %+v, Score %+v", it, p.Name, pt.Threshold, got, want)
				}
			}
			best := Optimize(files, p)
			for _, pt := range pts {
				if pt.Tally.Raw > best.Tally.Raw {
					t.Fatalf("Optimize %+v misses %+v", best, pt)
				}
			}
		}
	}
}

// TestOptimizeHandComputed: one window over rows 40..49 after a probation
// of 15 rows; scores 0.9 at row 20 (a false positive), 0.8 at row 45 and
// 0.7 at row 40. The best threshold is 0.7: both window rows detect, the
// earliest (row 40) scores TP, and the 0.9 false positive costs FP.
func TestOptimizeHandComputed(t *testing.T) {
	times := minutes(100)
	s := Series{Times: times, Scores: make([]float64, 100), Windows: []Window{{Start: times[40], End: times[49]}}, Probation: 15}
	s.Scores[10] = 1 // in probation: never counted
	s.Scores[20], s.Scores[45], s.Scores[40] = 0.9, 0.8, 0.7
	std := Profiles()[0]
	pts := Sweep([]Series{s}, std)
	var ths []float64
	for _, pt := range pts {
		ths = append(ths, pt.Threshold)
	}
	if len(pts) != 5 || pts[1].Threshold != 0.9 || pts[4].Threshold != 0 {
		t.Fatalf("sweep thresholds %v, want (above 0.9), 0.9, 0.8, 0.7, 0", ths)
	}
	near(t, "nothing detected", pts[0].Tally.Raw, -1)
	near(t, "0.9", pts[1].Tally.Raw, -1-0.11)
	near(t, "0.8", pts[2].Tally.Raw, sig(-0.5)/sig(-1)-0.11)
	near(t, "0.7", pts[3].Tally.Raw, 1-0.11)
	best := Optimize([]Series{s}, std)
	if best.Threshold != 0.7 {
		t.Errorf("optimal threshold %v, want 0.7", best.Threshold)
	}
	near(t, "optimal normalised", best.Tally.Normalized(), 100*(1-0.11+1)/2)
}
