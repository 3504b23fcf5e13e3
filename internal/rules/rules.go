package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
)

// Sentinel errors; internal/api maps them to HTTP status codes.
var (
	ErrNotFound = errors.New("not found")      // 404; also another organization's rule
	ErrInvalid  = errors.New("invalid")        // 400; a *CompileError also matches it
	ErrConflict = errors.New("already exists") // 409: the name is taken in the organization
)

// Rule is one alert rule of an organization. Its JSON form is the body of
// POST /api/v1/rules.
type Rule struct {
	ID          string          `json:"id"`
	Org         string          `json:"org"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Condition   string          `json:"condition"`
	Severity    alerts.Severity `json:"severity"`
	Scope       Scope           `json:"scope"`
	// For is how long the condition must hold before the rule fires.
	For Duration `json:"for,omitempty"`
	// ClearAfter and ClearFor are the hysteresis of automatic resolution:
	// a firing rule clears only after ClearAfter consecutive false
	// evaluations (default 1) spanning at least ClearFor.
	ClearAfter int      `json:"clearAfter,omitempty"`
	ClearFor   Duration `json:"clearFor,omitempty"`
	// ManualResolve leaves alerts open when the condition clears; an
	// operator resolves them, and re-firing meanwhile counts occurrences.
	ManualResolve bool           `json:"manualResolve,omitempty"`
	Actions       []actions.Spec `json:"actions,omitempty"`
	Disabled      bool           `json:"disabled"`
	Version       int64          `json:"version"`
	CreatedAt     time.Time      `json:"createdAt"`
	UpdatedAt     time.Time      `json:"updatedAt"`
}

// Scope narrows the devices a rule watches inside its organization. Empty
// fields do not narrow; all tags must match.
type Scope struct {
	Site     string            `json:"site,omitempty"`
	Template string            `json:"template,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	Device   string            `json:"device,omitempty"`
}

// Duration is a time.Duration written as "2m" in JSON.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

func (d Duration) MarshalJSON() ([]byte, error) {
	if d == 0 {
		return []byte(`""`), nil
	}
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if json.Unmarshal(b, &n) == nil {
			*d = Duration(time.Duration(n * float64(time.Second)))
			return nil
		}
		return fmt.Errorf("%w: a duration must be a string like \"2m\" or a number of seconds", ErrInvalid)
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	*d = Duration(v)
	return nil
}

// validate checks everything but the condition.
func (r *Rule) validate() error {
	r.Name = strings.TrimSpace(r.Name)
	if r.Name == "" || len(r.Name) > 200 {
		return fmt.Errorf("%w: a rule needs a name of 1 to 200 characters", ErrInvalid)
	}
	if strings.TrimSpace(r.Condition) == "" {
		return fmt.Errorf("%w: rule %q has no condition; write one like temperature > 80", ErrInvalid, r.Name)
	}
	if r.Severity == "" {
		r.Severity = alerts.SeverityWarning
	}
	if err := r.Severity.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r.For < 0 || r.ClearFor < 0 || r.ClearAfter < 0 {
		return fmt.Errorf("%w: for, clearFor and clearAfter cannot be negative", ErrInvalid)
	}
	if r.ClearAfter > 10000 {
		return fmt.Errorf("%w: clearAfter %d is too large; use at most 10000 evaluations or a clearFor duration", ErrInvalid, r.ClearAfter)
	}
	for i, a := range r.Actions {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("%w: action %d: %v", ErrInvalid, i+1, err)
		}
	}
	return nil
}

// DeviceInfo is what the rules engine knows about a device beyond its
// telemetry. The lead fills it from the registry and the twin.
type DeviceInfo struct {
	Site     string
	Template string
	Tags     map[string]string
	// Props is the reported-properties document (decoded JSON); conditions
	// read it as props.firmware.version.
	Props map[string]any
	// Location is the site's or organization's time zone for hour, minute
	// and weekday; nil means UTC.
	Location *time.Location
}

// DeviceDirectory looks devices up. An error wrapping ErrNotFound means an
// unknown device (it gets empty info); other errors keep the cached info.
type DeviceDirectory interface {
	DeviceInfo(ctx context.Context, org, device string) (DeviceInfo, error)
}

// AnomalyScorer gives the device's current anomaly score, overall
// (field "") or for one field; ok is false while there is no score yet. It
// is called on the evaluation path, so it must answer from memory.
type AnomalyScorer interface {
	AnomalyScore(org, device, field string) (score float64, ok bool)
}

// History reads stored telemetry; the lead implements it over the tsdb.
type History interface {
	// Scan calls fn for the device's samples with from <= TS < to, in time
	// order, samples of one timestamp grouped in one record (Org, Device,
	// TS, Num and Str set). Only fields lists the fields wanted (nil = all).
	Scan(ctx context.Context, org, device string, fields []string, from, to time.Time, fn func(*bus.Telemetry) error) error
	// Devices lists the devices of org with samples in [from, to).
	Devices(ctx context.Context, org string, from, to time.Time) ([]string, error)
}

// Alerter is the part of the alerts service the engine calls;
// *alerts.Service implements it.
type Alerter interface {
	Fire(ctx context.Context, r alerts.FireRequest) (alerts.Alert, bool, error)
	Clear(ctx context.Context, org, rule, device string, at time.Time) (alerts.Alert, bool, error)
}
