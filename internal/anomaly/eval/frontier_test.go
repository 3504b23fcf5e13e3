package eval

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/anomaly"
)

// likelihood is Numenta's anomaly likelihood (Ahmad et al., "Unsupervised
// real-time anomaly detection for streaming data", Neurocomputing 2017)
// over a detector's raw scores: a Gaussian fitted to the last window scored
// rows, and the tail probability of the mean of the last short ones; a row
// alerts when that probability is at most eps. With freeze, alerting rows
// are kept out of the fitted history. Scores before start (warm-up) are
// not used.
func likelihood(scores []float64, start, window, short int, eps float64, freeze bool) []bool {
	out := make([]bool, len(scores))
	hist := make([]float64, 0, window)
	for i := start; i < len(scores); i++ {
		lo := max(start, i-short+1)
		m := 0.0
		for _, v := range scores[lo : i+1] {
			m += v
		}
		m /= float64(i + 1 - lo)
		if len(hist) >= 50 {
			mu, v := 0.0, 0.0
			for _, h := range hist {
				mu += h
			}
			mu /= float64(len(hist))
			for _, h := range hist {
				v += (h - mu) * (h - mu)
			}
			sd := math.Max(math.Sqrt(v/float64(len(hist))), 0.03)
			out[i] = 0.5*math.Erfc((m-mu)/sd/math.Sqrt2) <= eps
		}
		if !(freeze && out[i]) {
			if len(hist) == window {
				hist = append(hist[:0], hist[1:]...)
			}
			hist = append(hist, scores[i])
		}
	}
	return out
}

// TestSKABFalseAlarmFrontier measures the univariate detector's point-wise
// F1 against its false alarms on the anomaly-free file: the default at
// other sensitivities and without each of its parts (wander, persistence,
// low hysteresis), and the previous default (none of them) at lower
// sensitivities, with a faster alert half-life, with Numenta's anomaly
// likelihood on its scores and with alerts confirmed by several fields.
// RESULTS.md quotes the table. The default must meet both targets
// (held-out F1 ≥ 0.80 and fewer than 1 alert per 10,000 rows on the
// anomaly-free file); the test fails if it stops doing so.
func TestSKABFalseAlarmFrontier(t *testing.T) {
	previous := ModelOptions{Wander: -1, Persist: 1, Hysteresis: 0.7}
	root := filepath.Join(datasets(t), "skab", "data")
	if _, err := os.Stat(filepath.Join(root, "valve1")); err != nil {
		t.Skipf("SKIPPING SKAB FRONTIER: dataset not found at %s (set SHOPFLOOR_DATASETS to the shared datasets directory)", root)
	}
	var sb strings.Builder
	sb.WriteString("| univariate variant | F1 dev | F1 held-out | F1 all | anomaly-free alert rows | per 10,000 |\n|---|---:|---:|---:|---:|---:|\n")
	row := func(name string, sp []Split, free, rows int) {
		per := 1e4 * float64(free) / float64(rows)
		fmt.Fprintf(&sb, "| %s | %.3f | %.3f | %.3f | %d | %.1f |\n", name, sp[0].Pointwise.F1, sp[1].Pointwise.F1, sp[2].Pointwise.F1, free, per)
	}
	type variant struct {
		name string
		sens float64
		m    ModelOptions
	}
	vs := []variant{{"default (sensitivity 0.5)", 0.5, ModelOptions{}}}
	for _, s := range []float64{0.45, 0.55, 0.6, 0.7} {
		vs = append(vs, variant{fmt.Sprintf("sensitivity %g", s), s, ModelOptions{}})
	}
	vs = append(vs,
		variant{"hysteresis 0.7 (the first value)", 0.5, ModelOptions{Hysteresis: 0.7}},
		variant{"hysteresis 0.7, sensitivity 0.6", 0.6, ModelOptions{Hysteresis: 0.7}},
		variant{"persist 1 (alert on the first point)", 0.5, ModelOptions{Persist: 1}},
		variant{"wander off", 0.5, ModelOptions{Wander: -1}},
		variant{"previous default: wander off, persist 1, hysteresis 0.7", 0.5, previous})
	for _, s := range []float64{0.2, 0.05, 0.01, 0.001} {
		vs = append(vs, variant{fmt.Sprintf("previous default, sensitivity %g", s), s, previous})
	}
	for _, h := range []int{400, 800} {
		m := previous
		m.AlertHalfLife = h
		vs = append(vs, variant{fmt.Sprintf("previous default, alert half-life %d (default 1,600)", h), 0.5, m})
	}
	for i, v := range vs {
		sum, err := Run(context.Background(), Options{Data: root, Format: FormatSKAB, Out: t.TempDir(), Detector: "univariate", Sensitivity: v.sens, Model: v.m}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		row(v.name, sum.Splits, sum.FreeAlerts, sum.FreeRows)
		// RESULTS.md says the default meets both targets.
		if i == 0 && (1e4*float64(sum.FreeAlerts)/float64(sum.FreeRows) >= 1 || sum.Splits[1].Pointwise.F1 < 0.80 || sum.Splits[0].Pointwise.F1 < 0.80) {
			t.Errorf("the default no longer meets both targets (F1 dev %.3f, held-out %.3f; %d anomaly-free alert rows): update RESULTS.md", sum.Splits[0].Pointwise.F1, sum.Splits[1].Pointwise.F1, sum.FreeAlerts)
		}
	}

	// Anomaly likelihood on the previous default's scores, recomputed here
	// row by row (the harness writes alerts, not likelihoods).
	files, err := listCSV(root)
	if err != nil {
		t.Fatal(err)
	}
	type scored struct {
		rel    string
		scores []float64
		label  []bool
	}
	var all []scored
	for _, rel := range files {
		s, err := readSKAB(filepath.Join(root, filepath.FromSlash(rel)), rel)
		if err != nil {
			t.Fatal(err)
		}
		det, err := newDetector("univariate", s.fields, skabTrainRows, 0.5, previous)
		if err != nil {
			t.Fatal(err)
		}
		sc := scored{rel: rel, scores: make([]float64, s.rows()), label: make([]bool, s.rows())}
		var res anomaly.Result
		for i := 0; i < s.rows(); i++ {
			det.Observe(s.row(i), &res)
			sc.scores[i] = res.Score
			sc.label[i] = s.anomaly != nil && s.anomaly[i]
		}
		all = append(all, sc)
	}
	for _, eps := range []float64{1e-5, 1e-3} {
		for _, freeze := range []bool{false, true} {
			var fr []FileResult
			free, rows := 0, 0
			for _, sc := range all {
				a := likelihood(sc.scores, skabTrainRows, 8640, 10, eps, freeze)
				var c Metrics
				labelled := containsTrue(sc.label)
				for i := skabTrainRows; i < len(a); i++ {
					c.Confusion.Count(sc.label[i], a[i])
					if !labelled {
						rows++
						if a[i] {
							free++
						}
					}
				}
				fr = append(fr, FileResult{File: sc.rel, Labelled: labelled, Pointwise: metricsOf(c.Confusion)})
			}
			name := fmt.Sprintf("previous default, likelihood ≥ 1−%g (history 8,640, mean of 10)", eps)
			if freeze {
				name += ", alerting rows not learned"
			}
			row(name, splits(fr, []string{"valve1"}), free, rows)
		}
	}

	// A device alert confirmed by at least 2 or 3 fields alerting at once.
	for _, need := range []int{2, 3} {
		var fr []FileResult
		free, rows := 0, 0
		for _, rel := range files {
			s, err := readSKAB(filepath.Join(root, filepath.FromSlash(rel)), rel)
			if err != nil {
				t.Fatal(err)
			}
			us := make([]*anomaly.Univariate, len(s.fields))
			for j := range us {
				if us[j], err = anomaly.NewUnivariate(anomaly.UnivariateConfig{Field: s.fields[j], Wander: previous.Wander, Persist: previous.Persist, Hysteresis: previous.Hysteresis}); err != nil {
					t.Fatal(err)
				}
			}
			labelled := s.anomaly != nil && containsTrue(s.anomaly)
			var c Metrics
			var res anomaly.Result
			for i := 0; i < s.rows(); i++ {
				k := 0
				for j, u := range us {
					u.ObserveValue(s.row(i)[j], &res)
					if res.Alert {
						k++
					}
				}
				if i < skabTrainRows {
					continue
				}
				if !labelled {
					rows++
					if k >= need {
						free++
					}
					continue
				}
				c.Confusion.Count(s.anomaly[i], k >= need)
			}
			fr = append(fr, FileResult{File: rel, Labelled: labelled, Pointwise: metricsOf(c.Confusion)})
		}
		row(fmt.Sprintf("previous default, device alert needs %d fields in alert", need), splits(fr, []string{"valve1"}), free, rows)
	}
	t.Log("SKAB, false alarms against point-wise F1:\n" + sb.String())
}
