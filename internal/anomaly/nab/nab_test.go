package nab

import (
	"math"
	"testing"
	"time"
)

func minutes(n int) []time.Time {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t0.Add(time.Duration(i) * time.Minute)
	}
	return out
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %.12f, want %.12f", what, got, want)
	}
}

// σ(y) = 2/(1+e^{5y}) − 1, computed by hand for the cases below.
func sig(y float64) float64 { return 2/(1+math.Exp(5*y)) - 1 }

func TestScoreHandComputed(t *testing.T) {
	times := minutes(100)
	// One window over rows 40..49 (10 rows).
	win := []Window{{Start: times[40], End: times[49]}}
	std := Profiles()[0]

	// Detection at the first row of the window: exactly TP.
	det := make([]bool, 100)
	det[40] = true
	tl := Score(times, det, win, 0, std)
	near(t, "earliest TP", tl.Raw, 1)
	near(t, "null", tl.Null, -1)
	near(t, "perfect", tl.Perfect, 1)
	near(t, "normalised", tl.Normalized(), 100)

	// Detection at row 45: y = −(49−45+1)/10 = −0.5, scaled by σ(−1).
	det = make([]bool, 100)
	det[45] = true
	det[47] = true // later detections in the same window do not count
	tl = Score(times, det, win, 0, std)
	near(t, "mid-window TP", tl.Raw, sig(-0.5)/sig(-1))
	if tl.TP != 1 || tl.FP != 0 {
		t.Errorf("TP %d FP %d, want 1 and 0", tl.TP, tl.FP)
	}

	// A false positive before any window costs the full FP weight, one
	// 5 rows after the window costs FP·σ((54−49)/(10−1)); the window is
	// missed.
	det = make([]bool, 100)
	det[10] = true
	det[54] = true
	tl = Score(times, det, win, 0, std)
	near(t, "two FPs and a miss", tl.Raw, -0.11+0.11*sig(5.0/9)-1)
	if tl.FP != 2 || tl.FN != 1 {
		t.Errorf("FP %d FN %d, want 2 and 1", tl.FP, tl.FN)
	}
	near(t, "normalised", tl.Normalized(), 100*((-0.11+0.11*sig(5.0/9)-1)-(-1))/(1-(-1)))

	// Probation: a detection inside it is ignored.
	det = make([]bool, 100)
	det[10] = true
	tl = Score(times, det, win, 15, std)
	near(t, "probation", tl.Raw, -1)

	// Reward-low-FN profile doubles the miss.
	tl = Score(times, make([]bool, 100), win, 0, Profiles()[2])
	near(t, "low-FN miss", tl.Raw, -2)
	near(t, "never firing scores 0", tl.Normalized(), 0)

	// FPs far after a window (3+ window lengths) cost the full weight.
	det = make([]bool, 100)
	det[40] = true
	det[90] = true
	tl = Score(times, det, win, 0, Profiles()[1])
	near(t, "far FP low-FP profile", tl.Raw, 1-0.22)

	// NAB's cut-off is strict: exactly 3 window-lengths after the window
	// (row 49+27, y = 27/9) still uses the curve, not the full −FP.
	det = make([]bool, 100)
	det[76] = true
	tl = Score(times, det, win, 0, std)
	near(t, "FP at y = 3", tl.Raw, 0.11*sig(3)-1)
}

func TestProbation(t *testing.T) {
	if got := Probation(1000); got != 150 {
		t.Errorf("Probation(1000) = %d, want 150", got)
	}
	if got := Probation(22000); got != 750 {
		t.Errorf("Probation(22000) = %d, want 750", got)
	}
}

func TestScoreSKABHandComputed(t *testing.T) {
	sec := make([]time.Time, 300)
	t0 := time.Date(2020, 3, 9, 10, 0, 0, 0, time.UTC)
	for i := range sec {
		sec[i] = t0.Add(time.Duration(i) * time.Second)
	}
	cps := []time.Time{sec[100], sec[130]} // windows [100,160] and, cut, [160,190]
	std := Profiles()[0]
	det := make([]bool, 300)
	det[100] = true // start of window 1: +1
	det[175] = true // middle of window 2: u = 0.5 -> (1 − 0.11)/2
	det[250] = true // outside: −0.11
	tl := ScoreSKAB(sec, det, cps, 60*time.Second, std)
	want := 1 + (1-0.11)/2 - 0.11
	near(t, "raw", tl.Raw, want)
	near(t, "normalised", tl.Normalized(), 100*(want+2)/4)
	if tl.TP != 2 || tl.FP != 1 || tl.FN != 0 {
		t.Errorf("TP %d FP %d FN %d", tl.TP, tl.FP, tl.FN)
	}
	// Detection at the very end of a window is worth −FP.
	det = make([]bool, 300)
	det[190] = true
	tl = ScoreSKAB(sec, det, cps[1:], 60*time.Second, std)
	near(t, "end of window", tl.Raw, -0.11)
}

func TestConfusion(t *testing.T) {
	var c Confusion
	labels := []bool{true, true, true, false, false, false, false, true}
	preds := []bool{true, true, false, true, false, false, false, false}
	for i := range labels {
		c.Count(labels[i], preds[i])
	}
	if c != (Confusion{TP: 2, FP: 1, TN: 3, FN: 2}) {
		t.Fatalf("confusion %+v", c)
	}
	near(t, "precision", c.Precision(), 2.0/3)
	near(t, "recall", c.Recall(), 0.5)
	near(t, "F1", c.F1(), 4.0/7)
	near(t, "FAR", c.FAR(), 0.25)
}
