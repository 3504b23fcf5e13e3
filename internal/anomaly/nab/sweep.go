package nab

import (
	"math"
	"sort"
	"time"
)

// Series is one file's anomaly scores for a threshold sweep.
type Series struct {
	Times     []time.Time
	Scores    []float64 // NaN never detects
	Windows   []Window
	Probation int
}

// Point is the corpus result at one threshold: a row is a detection when
// its score is at or above Threshold.
type Point struct {
	Threshold float64
	Tally     Tally
}

// Sweep scores a corpus at every threshold that changes the detections:
// each distinct score of a row after probation, highest first, after a
// first point above every score (nothing detected). These are the
// thresholds NAB's optimiser compares (NAB 1.0 on; earlier releases
// hill-climbed from 0.5 and could stop below the best of them). One pass
// over the rows sorted by score; each point equals Score with
// detect[i] = score >= threshold.
func Sweep(files []Series, p Profile) []Point {
	type cand struct {
		score     float64
		file, row int
	}
	var (
		cands []cand
		rows  [][]rowValue
		base  [][]span
		cur   Tally
	)
	for f, s := range files {
		ss, rv := layout(s.Times, s.Windows, p)
		rows, base = append(rows, rv), append(base, ss)
		for _, sp := range ss {
			cur = cur.Add(windowTally(sp, false, 0, s.Probation, p))
		}
		for i := max(s.Probation, 0); i < len(rv) && i < len(s.Scores); i++ {
			if !math.IsNaN(s.Scores[i]) {
				cands = append(cands, cand{s.Scores[i], f, i})
			}
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	top := 1.0
	if len(cands) > 0 {
		top = math.Nextafter(cands[0].score, math.Inf(1))
	}
	out := []Point{{Threshold: top, Tally: cur}}
	found := make([][]bool, len(files))
	best := make([][]float64, len(files))
	for f := range files {
		found[f], best[f] = make([]bool, len(base[f])), make([]float64, len(base[f]))
	}
	for i, c := range cands {
		r := rows[c.file][c.row]
		switch {
		case r.win < 0:
			cur.Raw += r.v
			cur.FP++
		case !found[c.file][r.win]:
			// The window turns from a miss into a hit.
			found[c.file][r.win], best[c.file][r.win] = true, r.v
			cur.Raw += p.FN + r.v
			cur.TP++
			cur.FN--
		case r.v > best[c.file][r.win]:
			// An earlier detection in a window already hit.
			cur.Raw += r.v - best[c.file][r.win]
			best[c.file][r.win] = r.v
		}
		if i+1 == len(cands) || cands[i+1].score != c.score {
			out = append(out, Point{Threshold: c.score, Tally: cur})
		}
	}
	return out
}

// Optimize is NAB's threshold optimiser: the sweep point with the highest
// raw corpus score (the highest such threshold on ties, as NAB's stable
// sort gives). The threshold is chosen
// on the labels, so the score is an upper bound for the detector's scores,
// not a figure for a deployed setting.
func Optimize(files []Series, p Profile) Point {
	pts := Sweep(files, p)
	best := pts[0]
	for _, pt := range pts[1:] {
		if pt.Tally.Raw > best.Tally.Raw {
			best = pt
		}
	}
	return best
}
