package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Sentinel errors; the API maps them to HTTP statuses.
var (
	ErrInvalid  = errors.New("invalid job")
	ErrNotFound = errors.New("job not found")
	ErrFinished = errors.New("job already finished")
	ErrConfig   = errors.New("invalid job service configuration")
	// errCancelled is the cause a cancelled job's runner sees.
	errCancelled = errors.New("job cancelled")
)

// Job types.
const (
	TypeDesired = "desired"
	TypeMethod  = "method"
)

// Job states.
const (
	StateRunning   = "running"
	StateCompleted = "completed"
	StateCancelled = "cancelled"
)

// Per-device states.
const (
	DevicePending   = "pending"
	DeviceSucceeded = "succeeded"
	DeviceFailed    = "failed"
	DeviceCancelled = "cancelled"
)

// Limits.
const (
	DefaultRate       = 10.0
	MaxRate           = 1000.0
	MaxDevices        = 100000
	DefaultTimeout    = 30
	MaxTimeoutSeconds = 300
)

// Query selects devices: all conditions must hold; an empty query selects
// every device of the organization.
type Query struct {
	Site     string            `json:"site,omitempty"`
	Template string            `json:"template,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// Method is a direct method to invoke on every device.
type Method struct {
	Name           string          `json:"name"`
	Payload        json.RawMessage `json:"payload,omitempty"`
	TimeoutSeconds int             `json:"timeoutSeconds,omitempty"`
}

// Spec is what a job does.
type Spec struct {
	Type    string          `json:"type"`
	Query   Query           `json:"query"`
	Desired json.RawMessage `json:"desired,omitempty"`
	Method  *Method         `json:"method,omitempty"`
	// Rate is devices per second; DefaultRate when zero.
	Rate float64 `json:"rate,omitempty"`
}

// Progress counts a job's devices by state.
type Progress struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
}

// Job is a bulk operation and its progress.
type Job struct {
	ID        string     `json:"id"`
	Org       string     `json:"-"`
	Spec                 // type, query, desired/method, rate
	State     string     `json:"state"`
	Progress  Progress   `json:"progress"`
	CreatedAt time.Time  `json:"createdAt"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
}

// DeviceResult is what a job did to one device.
type DeviceResult struct {
	Device string `json:"deviceId"`
	State  string `json:"state"`
	// Status is the method's status (method jobs).
	Status   int             `json:"status,omitempty"`
	Response json.RawMessage `json:"response,omitempty"`
	Error    string          `json:"error,omitempty"`
	At       *time.Time      `json:"at,omitempty"`
}

// Executor reaches devices for the service; the hub adapts the registry,
// twins and the command router to it.
type Executor interface {
	// Devices lists the ids of org's devices that match q.
	Devices(ctx context.Context, org string, q Query) ([]string, error)
	// Desired merges patch into a device's desired properties and notifies it.
	Desired(ctx context.Context, org, device string, patch json.RawMessage) error
	// Method invokes a direct method and returns the device's answer.
	Method(ctx context.Context, org, device string, m Method) (status int, response []byte, err error)
}

var methodNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// normalize checks a spec and fills its defaults.
func (sp Spec) normalize() (Spec, error) {
	switch {
	case sp.Rate < 0 || sp.Rate > MaxRate:
		return sp, fmt.Errorf("%w: rate %g devices per second is out of range; use a number above 0 up to %g (or leave it out for %g)", ErrInvalid, sp.Rate, MaxRate, DefaultRate)
	case sp.Rate == 0:
		sp.Rate = DefaultRate
	}
	switch sp.Type {
	case TypeDesired:
		if sp.Method != nil {
			return sp, fmt.Errorf("%w: a desired job takes \"desired\", not \"method\"", ErrInvalid)
		}
		var m map[string]any
		if err := json.Unmarshal(sp.Desired, &m); err != nil || m == nil {
			return sp, fmt.Errorf("%w: \"desired\" must be a JSON object such as {\"setpoint\": 72}", ErrInvalid)
		}
		if len(m) == 0 {
			return sp, fmt.Errorf("%w: \"desired\" is empty: it would change nothing", ErrInvalid)
		}
	case TypeMethod:
		if sp.Desired != nil {
			return sp, fmt.Errorf("%w: a method job takes \"method\", not \"desired\"", ErrInvalid)
		}
		if sp.Method == nil || !methodNameRE.MatchString(sp.Method.Name) {
			return sp, fmt.Errorf("%w: \"method\" needs a name of letters, digits and . _ : - such as {\"name\": \"reboot\"}", ErrInvalid)
		}
		m := *sp.Method
		if len(m.Payload) > 0 && !json.Valid(m.Payload) {
			return sp, fmt.Errorf("%w: the method payload is not valid JSON", ErrInvalid)
		}
		switch {
		case m.TimeoutSeconds < 0 || m.TimeoutSeconds > MaxTimeoutSeconds:
			return sp, fmt.Errorf("%w: timeoutSeconds %d is out of range; use 1 to %d", ErrInvalid, m.TimeoutSeconds, MaxTimeoutSeconds)
		case m.TimeoutSeconds == 0:
			m.TimeoutSeconds = DefaultTimeout
		}
		sp.Method = &m
	default:
		return sp, fmt.Errorf("%w: type %q is unknown; use \"desired\" or \"method\"", ErrInvalid, sp.Type)
	}
	return sp, nil
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
