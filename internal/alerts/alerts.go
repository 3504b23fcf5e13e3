package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors; internal/api maps them to HTTP status codes.
var (
	ErrNotFound = errors.New("not found") // 404; also another organization's alert
	ErrInvalid  = errors.New("invalid")   // 400
	ErrConflict = errors.New("conflict")  // 409: the transition is not allowed from the current state
)

// Severity of an alert, from most to least urgent.
type Severity string

const (
	SeverityCritical Severity = "critical"
	SeverityMajor    Severity = "major"
	SeverityMinor    Severity = "minor"
	SeverityWarning  Severity = "warning"
	SeverityInfo     Severity = "info"
)

// Severities lists the valid severities, most urgent first.
func Severities() []Severity {
	return []Severity{SeverityCritical, SeverityMajor, SeverityMinor, SeverityWarning, SeverityInfo}
}

// Validate reports whether s is one of the known severities.
func (s Severity) Validate() error {
	for _, v := range Severities() {
		if s == v {
			return nil
		}
	}
	return fmt.Errorf("%w: severity %q is not known; use critical, major, minor, warning or info", ErrInvalid, string(s))
}

// State of an alert.
type State string

const (
	StateOpen         State = "open"
	StateAcknowledged State = "acknowledged"
	StateResolved     State = "resolved"
)

// StateActive is accepted by Filter.State: open or acknowledged.
const StateActive State = "active"

// Change kinds recorded in an alert's history.
const (
	KindState  = "state"  // From → To
	KindNote   = "note"   // a note was added
	KindAssign = "assign" // Note holds the new assignee ("" = unassigned)
	KindAction = "action" // an action's outcome (Note says what happened)
)

// Alert is one alert. Its JSON form is what the REST API returns.
type Alert struct {
	ID         string             `json:"id"`
	Org        string             `json:"org"`
	Rule       string             `json:"rule"`
	RuleName   string             `json:"ruleName,omitempty"`
	Device     string             `json:"device"`
	Severity   Severity           `json:"severity"`
	State      State              `json:"state"`
	Count      int64              `json:"count"`
	FirstSeen  time.Time          `json:"firstSeen"`
	LastSeen   time.Time          `json:"lastSeen"`
	Message    string             `json:"message,omitempty"`
	Values     map[string]float64 `json:"values,omitempty"`
	Assignee   string             `json:"assignee,omitempty"`
	AckedBy    string             `json:"ackedBy,omitempty"`
	AckedAt    *time.Time         `json:"ackedAt,omitempty"`
	ResolvedBy string             `json:"resolvedBy,omitempty"`
	ResolvedAt *time.Time         `json:"resolvedAt,omitempty"`
	UpdatedAt  time.Time          `json:"updatedAt"`
	// Notes and History are filled by Get, not by List.
	Notes   []Note   `json:"notes,omitempty"`
	History []Change `json:"history,omitempty"`
}

// Active reports whether the alert is open or acknowledged.
func (a Alert) Active() bool { return a.State == StateOpen || a.State == StateAcknowledged }

// Note is a free-text remark on an alert.
type Note struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	Text string    `json:"text"`
}

// Change is one entry of an alert's history.
type Change struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	Kind string    `json:"kind"`
	From State     `json:"from,omitempty"`
	To   State     `json:"to,omitempty"`
	Note string    `json:"note,omitempty"`
}

// FireRequest asks for an alert on (Org, Rule, Device). While one is open or
// acknowledged, firing again increments its count and moves LastSeen.
type FireRequest struct {
	Org      string
	Rule     string
	RuleName string
	Device   string
	Severity Severity
	Message  string
	Values   map[string]float64 // the values that made the rule fire
	At       time.Time          // when the condition fired; zero = now
}

// ActionOutcome is what an action reports back onto its alert.
type ActionOutcome struct {
	Action   string // e.g. "webhook https://…"
	Delivery string // the delivery (idempotency) key
	OK       bool
	Attempts int
	Detail   string // status or error
	At       time.Time
}

// Filter narrows List. Empty fields do not filter.
type Filter struct {
	State    State // open, acknowledged, resolved, or active (open + acknowledged)
	Device   string
	Rule     string
	Severity Severity
	Limit    int    // default 100, at most 1000
	After    string // cursor: Page.Next of the previous page
}

// Page is one page of List, newest first.
type Page struct {
	Items []Alert `json:"items"`
	Next  string  `json:"next,omitempty"` // pass as Filter.After; empty on the last page
}

// EventType says what happened to an alert.
type EventType string

const (
	EventOpened       EventType = "opened"
	EventRefired      EventType = "refired" // fired again while open or acknowledged
	EventAcknowledged EventType = "acknowledged"
	EventResolved     EventType = "resolved"
	EventNote         EventType = "note"
	EventAssigned     EventType = "assigned"
	EventAction       EventType = "action"
)

// AlertEvent is published after every change has been stored.
type AlertEvent struct {
	Type  EventType `json:"type"`
	At    time.Time `json:"at"`
	By    string    `json:"by,omitempty"`
	Note  string    `json:"note,omitempty"`
	Alert Alert     `json:"alert"`
}

// Publisher receives alert events after they are stored. An error is
// returned to the caller of the change (the change itself stays stored), so
// a rules engine retries and the publisher sees the event again; publishers
// must therefore tolerate repeats.
type Publisher interface {
	PublishAlert(ctx context.Context, ev AlertEvent) error
}

// Publishers fans one event out to several publishers in order; it returns
// the first error but still offers the event to every publisher.
type Publishers []Publisher

func (ps Publishers) PublishAlert(ctx context.Context, ev AlertEvent) error {
	var first error
	for _, p := range ps {
		if p == nil {
			continue
		}
		if err := p.PublishAlert(ctx, ev); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Sender publishes one message on a subject; bus.Notifier satisfies it.
type Sender interface {
	Publish(ctx context.Context, subject string, data []byte) error
}

// LiveFeed publishes every alert change as JSON on its organization's
// subject, so the console, edges and integrators can follow alerts live.
// It is a feed, not a log: the alerts table is the record.
type LiveFeed struct {
	send    Sender
	subject func(org string) string
}

// NewLiveFeed returns a publisher of alert events on subject(org).
func NewLiveFeed(send Sender, subject func(org string) string) *LiveFeed {
	return &LiveFeed{send: send, subject: subject}
}

// PublishAlert sends one event.
func (f *LiveFeed) PublishAlert(ctx context.Context, ev AlertEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode alert event: %w", err)
	}
	if err := f.send.Publish(ctx, f.subject(ev.Alert.Org), b); err != nil {
		return fmt.Errorf("publish alert event: %w", err)
	}
	return nil
}
