package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/egress"
)

// Sentinel errors.
var (
	ErrInvalid  = errors.New("invalid")   // 400: a bad action definition
	ErrNotFound = errors.New("not found") // 404
	// ErrPermanent marks a failure that retrying cannot fix (a 4xx answer, an
	// unknown device method); the delivery goes to the dead letters at once.
	// Devices and Bus implementations wrap it to say so.
	ErrPermanent = errors.New("permanent failure")
)

// Type of action.
type Type string

const (
	TypeWebhook Type = "webhook" // HTTP(S) POST of the alert event, signed
	TypeDevice  Type = "device"  // direct method, desired-property patch or C2D message
	TypeBus     Type = "bus"     // publish the alert event on a NATS subject
)

// Device operations.
const (
	OpMethod  = "method"  // invoke a direct method
	OpDesired = "desired" // patch desired properties with Payload
	OpC2D     = "c2d"     // send Payload as a cloud-to-device message
)

// Spec is one action of a rule, as written in the rule's "actions" list.
type Spec struct {
	Type Type `json:"type"`
	// On lists the alert events that run the action: opened (the default),
	// acknowledged, resolved.
	On []alerts.EventType `json:"on,omitempty"`

	// Webhook.
	URL     string            `json:"url,omitempty"`
	Secret  string            `json:"secret,omitempty"`  // HMAC-SHA256 key for X-Shopfloor-Signature
	Timeout string            `json:"timeout,omitempty"` // per attempt, default 10s
	Headers map[string]string `json:"headers,omitempty"`

	// Device.
	Device  string          `json:"device,omitempty"` // target; default the alert's device
	Op      string          `json:"op,omitempty"`     // method, desired or c2d
	Method  string          `json:"method,omitempty"` // for op "method"
	Payload json.RawMessage `json:"payload,omitempty"`

	// Bus: a subject inside the organization's subject space
	// (<prefix>.exports.<org>.…); it may hold {org}, {device}, {rule},
	// {severity}, {event}, each replaced by one subject token.
	Subject string `json:"subject,omitempty"`
}

// Runs reports whether the action runs for an event of type t.
func (s Spec) Runs(t alerts.EventType) bool {
	if len(s.On) == 0 {
		return t == alerts.EventOpened
	}
	for _, o := range s.On {
		if o == t {
			return true
		}
	}
	return false
}

// Label names the action for humans, e.g. in an alert's history.
func (s Spec) Label() string {
	switch s.Type {
	case TypeWebhook:
		if u, err := url.Parse(s.URL); err == nil {
			return "webhook " + u.Scheme + "://" + u.Host + u.Path
		}
		return "webhook"
	case TypeDevice:
		what := s.Op
		if s.Op == OpMethod {
			what = "method " + s.Method
		}
		return "device " + what
	case TypeBus:
		return "bus " + s.Subject
	}
	return string(s.Type)
}

func (s Spec) timeout() time.Duration {
	if d, err := time.ParseDuration(s.Timeout); err == nil && d > 0 {
		return d
	}
	return 10 * time.Second
}

// Validate checks the action definition; the error says what to fix.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s action: %s", ErrInvalid, s.Type, fmt.Sprintf(format, args...))
	}
	for _, o := range s.On {
		switch o {
		case alerts.EventOpened, alerts.EventAcknowledged, alerts.EventResolved:
		default:
			return bad("%q in \"on\" is not an alert event; use opened, acknowledged or resolved", string(o))
		}
	}
	if s.Timeout != "" {
		d, err := time.ParseDuration(s.Timeout)
		if err != nil || d <= 0 || d > 5*time.Minute {
			return bad("timeout %q must be a duration between 1ms and 5m, like 10s", s.Timeout)
		}
	}
	switch s.Type {
	case TypeWebhook:
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return bad("url %q must be an absolute http:// or https:// address", s.URL)
		}
		for k := range s.Headers {
			if strings.EqualFold(k, "X-Shopfloor-Signature") || strings.EqualFold(k, "Idempotency-Key") || strings.EqualFold(k, "Content-Type") {
				return bad("header %q is set by Shopfloor and cannot be overridden", k)
			}
		}
	case TypeDevice:
		switch s.Op {
		case OpMethod:
			if s.Method == "" {
				return bad("op \"method\" needs the method name in \"method\"")
			}
		case OpDesired:
			var m map[string]any
			if err := json.Unmarshal(s.Payload, &m); err != nil {
				return bad("op \"desired\" needs a JSON object in \"payload\" with the properties to set")
			}
		case OpC2D:
			if len(s.Payload) == 0 {
				return bad("op \"c2d\" needs the message in \"payload\"")
			}
		default:
			return bad("op %q is not known; use method, desired or c2d", s.Op)
		}
		if len(s.Payload) > 0 && !json.Valid(s.Payload) {
			return bad("payload is not valid JSON")
		}
	case TypeBus:
		if s.Subject == "" || strings.ContainsAny(s.Subject, " \t\r\n*>") || strings.HasPrefix(s.Subject, ".") || strings.HasSuffix(s.Subject, ".") || strings.Contains(s.Subject, "..") {
			return bad("subject %q must be a NATS subject without wildcards or spaces, like factory.alerts.{device}", s.Subject)
		}
	default:
		return fmt.Errorf("%w: action type %q is not known; use webhook, device or bus", ErrInvalid, string(s.Type))
	}
	return nil
}

// CheckTargets checks what the action of a rule of org reaches, beyond
// Validate: a bus subject must lie in org's subject space whatever its
// placeholders become, and a webhook's address, when it is an IP address,
// must be one the egress policy allows (a host name is checked on every
// connection). The rules store calls it when a rule is saved; the
// dispatcher checks again at every delivery.
func (s Spec) CheckTargets(org string, subjects SubjectPolicy, eg *egress.Policy) error {
	switch s.Type {
	case TypeBus:
		if subjects == nil {
			return fmt.Errorf("%w: bus action: this hub has no bus actions", ErrInvalid)
		}
		// {org} is the rule's organization; every other placeholder is one
		// token that is never an organization id.
		subject := expandSubject(s.Subject, alerts.Alert{Org: org}, "")
		if err := subjects.CheckOrgSubject(org, subject); err != nil {
			if subject != s.Subject {
				return fmt.Errorf("%w: bus action: %w (that is %q with its placeholders filled in; {org} stands for the organization)", ErrInvalid, err, s.Subject)
			}
			return fmt.Errorf("%w: bus action: %w ({org} in a subject stands for the organization)", ErrInvalid, err)
		}
	case TypeWebhook:
		if err := eg.CheckURL(s.URL); err != nil {
			return fmt.Errorf("%w: webhook action: url %q: %w; use a public address, or ask the hub's operator to allow this one", ErrInvalid, s.URL, err)
		}
	}
	return nil
}
