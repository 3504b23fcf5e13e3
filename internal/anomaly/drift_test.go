package anomaly

import (
	"testing"

	"github.com/shopfloor/shopfloor/internal/anomaly/synth"
)

// A slow drift the baseline can follow must not alert: 10 σ over 50,000
// points (2·10⁻⁴ σ per point) leaves the default half-life's baseline
// about 0.1 σ behind, well inside the level limit (a window mean about
// 1.1 σ away). The target is under one
// alarm per 10,000 points.
func TestUnivariateSlowDriftStaysQuiet(t *testing.T) {
	const n, at = 60000, 10000
	vals, _ := synth.Series(synth.Spec{N: n, Level: 40, Noise: 1.5, Fault: synth.Drift, At: at, Size: 10, Seed: 21})
	u, err := NewUnivariate(UnivariateConfig{Field: "temp"})
	if err != nil {
		t.Fatal(err)
	}
	res := runUni(t, u, vals)
	alarms := 0
	for _, r := range res[400:] {
		if r.Alert {
			alarms++
		}
	}
	if per10k := 1e4 * float64(alarms) / float64(n-400); per10k >= 1 {
		t.Fatalf("%d alarms in %d points of slow drift (%.2f per 10,000), want under 1 per 10,000", alarms, n-400, per10k)
	}
}

// A lasting change of regime alerts at once and keeps alerting for a
// while (a fault is not absorbed quickly), but the alert clears in the
// end because learning continues, boundedly, while alerting.
func TestUnivariateAlertClearsAfterRegimeChange(t *testing.T) {
	const n, at = 40000, 2000
	vals, _ := synth.Series(synth.Spec{N: n, Level: 10, Noise: 1, Fault: synth.Shift, At: at, Size: 4, Seed: 5})
	u, err := NewUnivariate(UnivariateConfig{Field: "flow"})
	if err != nil {
		t.Fatal(err)
	}
	res := runUni(t, u, vals)
	onset := -1
	for i := at; i < at+30; i++ {
		if res[i].Alert {
			onset = i
			break
		}
	}
	if onset < 0 {
		t.Fatalf("no alert within 30 points of a 4 σ shift")
	}
	held := 0
	for _, r := range res[onset : onset+400] {
		if r.Alert {
			held++
		}
	}
	if held < 380 {
		t.Errorf("alert held for only %d of the 400 points after onset: the fault is being absorbed too fast", held)
	}
	// Alert half-life 1,600: the baseline closes a 4 σ gap to under
	// 0.5 σ in about 5,000 points. From 10,000 points on the alert must
	// be over: a model that stalled while alerting would alert on most
	// of the remaining 28,000 points; allow the odd false alarm of noise.
	late := 0
	for _, r := range res[onset+10000:] {
		if r.Alert {
			late++
		}
	}
	if rest := n - onset - 10000; late >= 10 {
		t.Fatalf("%d alarms in the %d points from 10,000 after a change of regime: learning stalled while alerting", late, rest)
	}
}

// A drift of 8 σ over 1,000 points (the pace at which SKAB's anomaly-free
// pump's vibration wanders) is learned as wander and stays quiet; without
// the wander term the same series alerts.
func TestUnivariateSlowDriftIsWander(t *testing.T) {
	vals, _ := synth.Series(synth.Spec{N: 2000, Level: 50, Noise: 2, Fault: synth.Drift, At: 1000, Size: 8, Seed: 7})
	alerts := func(wander float64) int {
		u, err := NewUnivariate(UnivariateConfig{Field: "vibration", Wander: wander})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range runUni(t, u, vals) {
			if r.Alert {
				n++
			}
		}
		return n
	}
	if n := alerts(0); n != 0 {
		t.Errorf("default detector: %d alert points on a slow drift, want none", n)
	}
	if n := alerts(-1); n == 0 {
		t.Errorf("without wander: no alert on the drift; the test no longer tells the two apart")
	}
}
