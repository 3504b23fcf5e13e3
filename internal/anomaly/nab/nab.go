package nab

import (
	"math"
	"sort"
	"time"
)

// Window is a labelled anomaly window; both ends are inclusive.
type Window struct {
	Start, End time.Time
}

// Profile is a NAB application profile: the weight of a true positive, of
// a false positive and of a false negative (all positive numbers; the
// scorer applies the signs).
type Profile struct {
	Name       string
	TP, FP, FN float64
}

// Profiles returns the three NAB application profiles (Lavin & Ahmad
// 2015, table 1): standard, reward-low-FP and reward-low-FN.
func Profiles() []Profile {
	return []Profile{
		{Name: "standard", TP: 1, FP: 0.11, FN: 1},
		{Name: "reward_low_FP_rate", TP: 1, FP: 0.22, FN: 1},
		{Name: "reward_low_FN_rate", TP: 1, FP: 0.11, FN: 2},
	}
}

// Tally is one file's (or a corpus') NAB result under one profile. Raw,
// Null and Perfect add across files; the normalised score is taken from
// the sums, as NAB does.
type Tally struct {
	Raw     float64 // the detector's raw score
	Null    float64 // the raw score of a detector that never fires
	Perfect float64 // the raw score of one detection at the start of every window
	TP      int     // windows detected
	FN      int     // windows missed
	FP      int     // detections outside every window
}

// Add sums two tallies.
func (t Tally) Add(o Tally) Tally {
	return Tally{Raw: t.Raw + o.Raw, Null: t.Null + o.Null, Perfect: t.Perfect + o.Perfect, TP: t.TP + o.TP, FN: t.FN + o.FN, FP: t.FP + o.FP}
}

// Normalized is 100·(raw−null)/(perfect−null): 100 for the perfect
// detector, 0 for one that never fires, negative when false positives cost
// more than the detections earn. With no windows at all it is 0.
func (t Tally) Normalized() float64 {
	if t.Perfect == t.Null {
		return 0
	}
	return 100 * (t.Raw - t.Null) / (t.Perfect - t.Null)
}

// Probation is NAB's probationary period for a file of n rows: 15% of the
// file, at most 750 rows. Detections there are not scored.
func Probation(n int) int {
	p := int(math.Floor(0.15 * float64(n)))
	return min(p, 750)
}

// scaledSigmoid is the NAB paper's scoring curve over the relative
// position y of a detection: 2/(1+e^{5y}) − 1, which is about +1 at the
// start of a window (y = −1), 0 at its end (y = 0), and tends to −1 for
// false positives far after it. Positions 3 or more window-lengths after
// a window count fully.
func scaledSigmoid(y float64) float64 {
	if y >= 3 {
		return -1
	}
	return 2/(1+math.Exp(5*y)) - 1
}

// span is a window expressed in row indices.
type span struct{ lo, hi int }

// spans maps windows onto row indices (rows whose time falls inside),
// dropping windows that contain no row.
func spans(times []time.Time, windows []Window) []span {
	ws := append([]Window(nil), windows...)
	sort.Slice(ws, func(i, j int) bool { return ws[i].Start.Before(ws[j].Start) })
	out := make([]span, 0, len(ws))
	for _, w := range ws {
		lo := sort.Search(len(times), func(i int) bool { return !times[i].Before(w.Start) })
		hi := sort.Search(len(times), func(i int) bool { return times[i].After(w.End) }) - 1
		if lo <= hi {
			out = append(out, span{lo, hi})
		}
	}
	return out
}

// Score applies the NAB scoring rules of Lavin & Ahmad (2015) to one file.
// times must be sorted; detect[i] says whether the detector fired at row i
// (NAB counts every row whose anomaly score is at or above the threshold).
// The rules:
//
//   - Rows before probation are ignored, as are windows that end there.
//   - In a window of w rows ending at row e, only the earliest detection
//     counts, scoring TP·σ(y)/σ(−1) with y = −(e−i+1)/w, so a detection at
//     the window's first row earns exactly TP and one at its end almost 0.
//   - A window without a detection costs −FN.
//   - A detection outside every window costs FP·σ(y), with y = (i−e)/(w−1)
//     measured from the end e of the previous window (of w rows): a false
//     positive just after a window costs little, one far away costs −FP.
//     Before the first window it costs −FP.
func Score(times []time.Time, detect []bool, windows []Window, probation int, p Profile) Tally {
	ss := spans(times, windows)
	var t Tally
	maxTP := scaledSigmoid(-1)
	wi := 0     // next window not yet passed
	prev := -1  // index into ss of the last window passed
	inWin := -1 // index into ss of the window containing the row
	best := 0.0 // best score in the current window
	found := false
	closeWin := func(k int) {
		if ss[k].hi < probation {
			return
		}
		t.Null -= p.FN
		t.Perfect += p.TP
		if found {
			t.Raw += best
			t.TP++
		} else {
			t.Raw -= p.FN
			t.FN++
		}
	}
	for i := range times {
		if inWin < 0 && wi < len(ss) && i == ss[wi].lo {
			inWin, found, best = wi, false, 0
			wi++
		}
		if i < len(detect) && detect[i] && i >= probation {
			if inWin >= 0 {
				s := ss[inWin]
				w := float64(s.hi - s.lo + 1)
				y := -float64(s.hi-i+1) / w
				v := scaledSigmoid(y) / maxTP * p.TP
				if !found || v > best {
					best, found = v, true
				}
			} else {
				y := 3.0
				if prev >= 0 {
					s := ss[prev]
					if w := s.hi - s.lo + 1; w > 1 {
						y = float64(i-s.hi) / float64(w-1)
					}
				}
				t.Raw += scaledSigmoid(y) * p.FP
				t.FP++
			}
		}
		if inWin >= 0 && i == ss[inWin].hi {
			closeWin(inWin)
			prev, inWin = inWin, -1
			// Overlapping windows: the next one may already have started.
			for wi < len(ss) && ss[wi].lo <= i {
				ss[wi].lo = i + 1
				if ss[wi].lo > ss[wi].hi {
					wi++
					continue
				}
				break
			}
		}
	}
	if inWin >= 0 {
		closeWin(inWin)
	}
	return t
}

// ScoreSKAB applies the variant of the NAB rules used for SKAB's published
// changepoint leaderboard (Katser & Kozitsin, SKAB, 2020, with the scoring
// of their TSAD library), so results can be set beside the published
// figures:
//
//   - Windows are [cp, cp+width] after each changepoint; where two overlap,
//     the later one starts where the earlier one ends.
//   - The earliest detection in a window scores
//     TP − (TP+FP)·(1+tanh(π·u−π/2)/tanh(π/2))/2 with u its relative position
//     in the window (0 at the start, 1 at the end): TP at the start, −FP at
//     the end.
//   - A window without a detection costs −FN; every detection outside all
//     windows costs −FP, whatever its distance.
//   - Null is −FN and perfect TP per window, as in NAB.
func ScoreSKAB(times []time.Time, detect []bool, changepoints []time.Time, width time.Duration, p Profile) Tally {
	cps := append([]time.Time(nil), changepoints...)
	sort.Slice(cps, func(i, j int) bool { return cps[i].Before(cps[j]) })
	ws := make([]Window, len(cps))
	for i, c := range cps {
		ws[i] = Window{Start: c, End: c.Add(width)}
		if i > 0 && !ws[i-1].End.Before(ws[i].Start) {
			ws[i].Start = ws[i-1].End
		}
	}
	var t Tally
	t.Null = -p.FN * float64(len(ws))
	t.Perfect = p.TP * float64(len(ws))
	first := make([]time.Time, len(ws))
	hit := make([]bool, len(ws))
	for i, ts := range times {
		if i >= len(detect) || !detect[i] {
			continue
		}
		inside := false
		for k, w := range ws {
			if ts.Before(w.Start) || ts.After(w.End) {
				continue
			}
			inside = true
			if !hit[k] {
				hit[k], first[k] = true, ts
			}
		}
		if !inside {
			t.Raw -= p.FP
			t.FP++
		}
	}
	for k, w := range ws {
		if !hit[k] {
			t.Raw -= p.FN
			t.FN++
			continue
		}
		u := 0.0
		if d := w.End.Sub(w.Start); d > 0 {
			u = float64(first[k].Sub(w.Start)) / float64(d)
		}
		y := (1 + math.Tanh(math.Pi*u-math.Pi/2)/math.Tanh(math.Pi/2)) / 2
		t.Raw += p.TP - (p.TP+p.FP)*y
		t.TP++
	}
	return t
}

// Confusion is a point-wise confusion matrix.
type Confusion struct {
	TP, FP, TN, FN int
}

// Add sums two matrices.
func (c Confusion) Add(o Confusion) Confusion {
	return Confusion{TP: c.TP + o.TP, FP: c.FP + o.FP, TN: c.TN + o.TN, FN: c.FN + o.FN}
}

// Count adds one point.
func (c *Confusion) Count(label, predicted bool) {
	switch {
	case label && predicted:
		c.TP++
	case label:
		c.FN++
	case predicted:
		c.FP++
	default:
		c.TN++
	}
}

// Precision is TP/(TP+FP), 0 when nothing was predicted.
func (c Confusion) Precision() float64 { return ratio(c.TP, c.TP+c.FP) }

// Recall is TP/(TP+FN), 0 when there was nothing to find.
func (c Confusion) Recall() float64 { return ratio(c.TP, c.TP+c.FN) }

// F1 is the harmonic mean of precision and recall: 2TP/(2TP+FP+FN).
func (c Confusion) F1() float64 { return ratio(2*c.TP, 2*c.TP+c.FP+c.FN) }

// FAR is the false alarm rate FP/(FP+TN).
func (c Confusion) FAR() float64 { return ratio(c.FP, c.FP+c.TN) }

// MAR is the missed alarm rate FN/(FN+TP).
func (c Confusion) MAR() float64 { return ratio(c.FN, c.FN+c.TP) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
