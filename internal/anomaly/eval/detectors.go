package eval

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shopfloor/shopfloor/internal/anomaly"
)

// ModelOptions override detector settings for experiments; zero values
// keep the product defaults.
type ModelOptions struct {
	Variance  float64 // PCA: variance share of the principal subspace
	Smoothing int     // PCA: span of the score smoothing
	Margin    float64 // limit = Margin × calibration maximum
	Window    int     // univariate: short window span
	HalfLife  int     // post-warm-up adaptation half-life
	// AlertHalfLife is the univariate adaptation half-life while alerting.
	AlertHalfLife int
	Drift         float64 // changepoint: CUSUM reference value k, in noise sd
	Floor         float64 // changepoint: lowest CUSUM limit h, in noise sd
	Refractory    int     // changepoint: points after a report with no other
	Wander        float64 // univariate: learning rate of the level's wander (negative: off)
	Persist       int     // univariate: points in a row above the level before an alert
	Hysteresis    float64 // univariate: fraction of the level below which an alert ends
}

// detectorNames maps names to a one-line description.
func detectorNames() map[string]string {
	return map[string]string{
		"pca":         "streaming PCA, combined T² and Q index, smoothed (multivariate)",
		"hotelling":   "streaming Hotelling T² over all components, smoothed (multivariate)",
		"univariate":  "per-field ensemble: z-score, relative entropy of a short window against the learned wander, jump, stuck-run surprise; likelihood score from the time-of-day profile",
		"rcf":         "shingled robust random cut forest, collusive displacement (multivariate)",
		"changepoint": "per-field two-sided CUSUM that re-estimates the level after each change; alerts are change events, not states",
	}
}

// DetectorHelp lists the detectors for --help.
func DetectorHelp() string {
	names := detectorNames()
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-11s %s\n", k, names[k])
	}
	return b.String()
}

// DefaultDetector is the best measured detector for a format (RESULTS.md):
// the per-field ensemble is the only one with no false alarm on SKAB's
// anomaly-free file, has the best point-wise F1 of those at its defaults,
// and applies to a single NAB series without degenerating.
func DefaultDetector(format string) string {
	return "univariate"
}

// eventDetector reports whether a detector's alerts are change events
// rather than states: its detections are the alerting rows themselves, not
// the rows where the alert state changes.
func eventDetector(name string) bool { return name == "changepoint" }

// likelihoodDetector reports whether a detector computes Result.Likelihood,
// which nab-csv then writes as anomaly_score.
func likelihoodDetector(name string) bool { return name == "univariate" }

func newDetector(name string, fields []string, warmup int, sens float64, m ModelOptions) (anomaly.Detector, error) {
	var det anomaly.Detector
	var err error
	switch name {
	case "pca", "hotelling":
		c := anomaly.PCAConfig{Fields: fields, Warmup: warmup, Sensitivity: sens, Variance: m.Variance, Smoothing: m.Smoothing, Margin: m.Margin, HalfLife: m.HalfLife}
		if name == "hotelling" {
			c.Variance = 1
		}
		det, err = anomaly.NewPCA(c)
	case "changepoint":
		det, err = anomaly.NewChangepoint(anomaly.ChangepointConfig{Fields: fields, Warmup: warmup, Sensitivity: sens, Drift: m.Drift, Floor: m.Floor, Refractory: m.Refractory, Margin: m.Margin})
	case "rcf":
		det, err = anomaly.NewRCF(anomaly.RCFConfig{Fields: fields, Warmup: warmup, Sensitivity: sens, Smoothing: m.Smoothing, Margin: m.Margin, ScaleHalfLife: m.HalfLife})
	case "univariate":
		det, err = anomaly.NewFieldwise(fields, anomaly.UnivariateConfig{Warmup: warmup, Sensitivity: sens, Margin: m.Margin, Window: m.Window, HalfLife: m.HalfLife, AlertHalfLife: m.AlertHalfLife, Wander: m.Wander, Persist: m.Persist, Hysteresis: m.Hysteresis})
	default:
		return nil, fmt.Errorf("%w: unknown detector %q; choose one of:\n%s", ErrData, name, DetectorHelp())
	}
	if err != nil {
		return nil, err
	}
	return anomaly.Guarded(det, warmup), nil
}
