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
// false positives far after it. Positions more than 3 window-lengths after
// a window count fully (NAB's cut-off is strict: y = 3 still uses the curve).
func scaledSigmoid(y float64) float64 {
	if y > 3 {
		return -1
	}
	return 2/(1+math.Exp(5*y)) - 1
}

// span is a window expressed in row indices.
type span struct{ lo, hi int }

// spans maps windows onto row indices (rows whose time falls inside),
// dropping windows that contain no row. Overlapping windows are cut: a
// window starts after the end of the one before it, and is dropped if
// nothing is left of it.
func spans(times []time.Time, windows []Window) []span {
	ws := append([]Window(nil), windows...)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Start.Before(ws[j].Start) })
	out := make([]span, 0, len(ws))
	for _, w := range ws {
		lo := sort.Search(len(times), func(i int) bool { return !times[i].Before(w.Start) })
		hi := sort.Search(len(times), func(i int) bool { return times[i].After(w.End) }) - 1
		if n := len(out); n > 0 && lo <= out[n-1].hi {
			lo = out[n-1].hi + 1
		}
		if lo <= hi {
			out = append(out, span{lo, hi})
		}
	}
	return out
}

// rowValue is what one row would score if the detector fired there.
type rowValue struct {
	win int     // index into the spans of the window holding the row, or -1
	v   float64 // in a window: its TP score if it is the earliest detection; outside: its (negative) FP cost
}

// layout gives every row its window and would-be score under profile p.
func layout(times []time.Time, windows []Window, p Profile) ([]span, []rowValue) {
	ss := spans(times, windows)
	rows := make([]rowValue, len(times))
	maxTP := scaledSigmoid(-1)
	k := 0 // next window
	for i := range rows {
		for k < len(ss) && ss[k].hi < i {
			k++
		}
		if k < len(ss) && ss[k].lo <= i {
			s := ss[k]
			y := -float64(s.hi-i+1) / float64(s.hi-s.lo+1)
			rows[i] = rowValue{win: k, v: scaledSigmoid(y) / maxTP * p.TP}
			continue
		}
		// Before any window, or after a one-row window (where NAB would
		// divide by zero), a false positive costs fully.
		v := -1.0
		if k > 0 {
			s := ss[k-1]
			if w := s.hi - s.lo + 1; w > 1 {
				v = scaledSigmoid(float64(i-s.hi) / float64(w-1))
			}
		}
		rows[i] = rowValue{win: -1, v: v * p.FP}
	}
	return ss, rows
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
//
// TestPublishedNABResults checks these against NAB's published scores.
func Score(times []time.Time, detect []bool, windows []Window, probation int, p Profile) Tally {
	ss, rows := layout(times, windows, p)
	found := make([]bool, len(ss))
	best := make([]float64, len(ss))
	var t Tally
	for i := max(probation, 0); i < len(rows) && i < len(detect); i++ {
		if !detect[i] {
			continue
		}
		r := rows[i]
		if r.win < 0 {
			t.Raw += r.v
			t.FP++
			continue
		}
		// Rows come in order, so the first detection is the earliest.
		if !found[r.win] {
			found[r.win], best[r.win] = true, r.v
		}
	}
	for k, s := range ss {
		t = t.Add(windowTally(s, found[k], best[k], probation, p))
	}
	return t
}

// windowTally is one window's share: nothing if it ends in probation,
// else null −FN, perfect +TP, and the detection's score or −FN.
func windowTally(s span, found bool, best float64, probation int, p Profile) Tally {
	if s.hi < probation {
		return Tally{}
	}
	t := Tally{Null: -p.FN, Perfect: p.TP}
	if found {
		t.Raw, t.TP = best, 1
	} else {
		t.Raw, t.FN = -p.FN, 1
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
