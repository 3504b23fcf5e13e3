package anomaly

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"time"
)

// Sentinel errors. Callers match them with errors.Is.
var (
	// ErrConfig means a detector or template configuration is unusable.
	ErrConfig = errors.New("anomaly: invalid configuration")
	// ErrSnapshot means a snapshot could not be decoded or belongs to a
	// different detector configuration.
	ErrSnapshot = errors.New("anomaly: unusable snapshot")
	// ErrTooManyDevices means the manager's device limit was reached.
	ErrTooManyDevices = errors.New("anomaly: device limit reached")
)

// Reason says why a field contributed to a score.
type Reason uint8

// Reasons a field can be blamed for.
const (
	ReasonNone     Reason = iota
	ReasonSpike           // a single value far from the learned level
	ReasonShift           // the recent level moved away from the learned one
	ReasonStuck           // the value repeats far longer than it normally does
	ReasonJoint           // the field departs from how it normally moves with the device's other fields
	ReasonSpread          // the recent spread (variance) of the field moved away from the learned one
	ReasonJump            // the value stepped from the previous one far more than it normally does
	ReasonSeasonal        // the value is far from what the field did at this time of day over the last days
)

func (r Reason) String() string {
	switch r {
	case ReasonSpike:
		return "spike"
	case ReasonShift:
		return "shift"
	case ReasonStuck:
		return "stuck"
	case ReasonJoint:
		return "joint"
	case ReasonSpread:
		return "spread"
	case ReasonJump:
		return "jump"
	case ReasonSeasonal:
		return "seasonal"
	}
	return "none"
}

// MarshalText makes reasons readable in JSON.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Contribution names one field's part in a score.
type Contribution struct {
	Field  string  `json:"field"`
	Share  float64 `json:"share"` // fraction of the anomaly statistic explained by this field, 0..1
	Reason Reason  `json:"reason"`
}

// Result is what a detector says about one point. It is reused by callers
// to avoid allocation: detectors overwrite every field and append to
// Contributions[:0].
type Result struct {
	// Score is in [0,1]: 0.5 means the statistic sits exactly at the limit
	// learned during warm-up, and it approaches 1 as the statistic grows.
	// It is 0 while warming up.
	Score float64 `json:"score"`
	// Alert starts at Score >= 1-Sensitivity and is never true while
	// warming up. Univariate and Fieldwise need the statistic at twice the
	// alert level or above it for Persist points in a row, and keep an
	// alert on while it stays above Hysteresis × the level (0.1; RCF 0.7).
	Alert bool `json:"alert"`
	// Likelihood is a calibrated score of how improbable the point is given
	// the series' recent history, for ranking and threshold sweeps: 0.5
	// at an estimated probability of 10⁻⁵, towards 1 as it falls, and high
	// at the start of an unusual episode rather than throughout it
	// (likelihood.go). It is separate from Score and Alert, which the
	// alert state machine (limits, persistence, hysteresis) drives. 0
	// while warming up, and from detectors that do not compute it (PCA,
	// RCF, Changepoint).
	Likelihood float64 `json:"likelihood"`
	// Warm is true once the learning period is over.
	Warm bool `json:"warm"`
	// WarmupRemaining counts points still needed before scoring starts.
	WarmupRemaining int `json:"warmup_remaining"`
	// Contributions are sorted by Share, largest first; fields with a
	// negligible share are left out.
	Contributions []Contribution `json:"contributions,omitempty"`
}

// Detector is an online anomaly detector over a fixed list of fields. It
// scores each point before learning from it, so the score never uses the
// point itself or anything after it. Detectors are not safe for concurrent
// use; Manager serialises access per device.
type Detector interface {
	// Observe scores x (one value per field, in Fields order; NaN means
	// missing) into res, then learns from x.
	Observe(x []float64, res *Result)
	// Fields lists the field names, in the order Observe expects.
	Fields() []string
	// MemoryBytes is the detector's fixed state size.
	MemoryBytes() int
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// TimedDetector is a Detector that also uses each point's timestamp: a gap
// in time is a break rather than continuity, and the time of day places
// the point in its daily cycle. Observe on such a detector is ObserveAt
// without a time (no gaps, no cycle).
type TimedDetector interface {
	Detector
	ObserveAt(t time.Time, x []float64, res *Result)
}

// scoreOf maps r = statistic/limit to [0,1): 0.5 at the limit, 0.75 at
// twice the limit. It is monotone, so thresholds on the score are
// thresholds on the statistic.
func scoreOf(r float64) float64 {
	if !(r > 0) { // also catches NaN
		return 0
	}
	if math.IsInf(r, 1) {
		return 1
	}
	return 1 - math.Exp2(-r)
}

// alertLevel turns a sensitivity in (0,1) into the score an alert needs.
func alertLevel(sensitivity float64) float64 { return 1 - sensitivity }

// minShare drops contributions too small to be worth showing.
const minShare = 0.02

// sortContributions orders by share, largest first (insertion sort: the
// slices are short and this avoids sort.Slice's allocation).
func sortContributions(c []Contribution) {
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j].Share > c[j-1].Share; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

// baseDefaults fills and checks the settings every detector has: the
// sensitivity (default 0.5, strictly between 0 and 1) and the warm-up
// (default 400 points).
func baseDefaults(sensitivity *float64, warmup *int) error {
	if *sensitivity == 0 {
		*sensitivity = 0.5
	}
	if !(*sensitivity > 0 && *sensitivity < 1) {
		return fmt.Errorf("%w: sensitivity %v must be between 0 and 1 (0.5 is the default)", ErrConfig, *sensitivity)
	}
	if *warmup == 0 {
		*warmup = 400
	}
	return nil
}
