package api

import (
	"context"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Alert routes: listing, acknowledging, resolving, notes, assignment, and
// the dead letters of actions that could not be delivered. The hub adapts
// internal/alerts and internal/actions to the Alerts interface.

// Alerts is the alert service the API calls; errors wrap the registry
// sentinels (ErrConflict for a transition the alert's state forbids).
type Alerts interface {
	ListAlerts(ctx context.Context, org string, f AlertFilter) (AlertList, error)
	GetAlert(ctx context.Context, org, id string) (Alert, error)
	AckAlert(ctx context.Context, org, id, by, note string) (Alert, error)
	ResolveAlert(ctx context.Context, org, id, by, note string) (Alert, error)
	NoteAlert(ctx context.Context, org, id, by, text string) (Alert, error)
	AssignAlert(ctx context.Context, org, id, by, assignee string) (Alert, error)
	DeadLetters(ctx context.Context, org string, limit int, after string) (DeliveryList, error)
	RetryDelivery(ctx context.Context, org, id string) error
}

// AlertFilter narrows ListAlerts; empty fields do not filter.
type AlertFilter struct {
	State, Device, Rule, Severity string
	Limit                         int
	After                         string
}

// Alert is one alert; the JSON shape of alerts.Alert.
type Alert struct {
	ID         string             `json:"id"`
	Org        string             `json:"org"`
	Rule       string             `json:"rule"`
	RuleName   string             `json:"ruleName,omitempty"`
	Device     string             `json:"device"`
	Severity   string             `json:"severity"`
	State      string             `json:"state"`
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
	Notes      []AlertNote        `json:"notes,omitempty"`
	History    []AlertChange      `json:"history,omitempty"`
}

// AlertNote is a remark on an alert.
type AlertNote struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	Text string    `json:"text"`
}

// AlertChange is one entry of an alert's history.
type AlertChange struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	Kind string    `json:"kind"`
	From string    `json:"from,omitempty"`
	To   string    `json:"to,omitempty"`
	Note string    `json:"note,omitempty"`
}

// AlertList is a page of alerts, newest first.
type AlertList struct {
	Items []Alert `json:"items"`
	Next  string  `json:"next,omitempty"`
}

// Delivery is one action run for one alert event.
type Delivery struct {
	ID        string    `json:"id"`
	Org       string    `json:"org"`
	Alert     string    `json:"alert"`
	Rule      string    `json:"rule"`
	Event     string    `json:"event"`
	Action    string    `json:"action"`
	Type      string    `json:"type"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lastError,omitempty"`
	NextAt    time.Time `json:"nextAt"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// DeliveryList is a page of deliveries.
type DeliveryList struct {
	Items []Delivery `json:"items"`
	Next  string     `json:"next,omitempty"`
}

type alertNoteRequest struct {
	Note string `json:"note,omitempty"`
}

type alertTextRequest struct {
	Text string `json:"text"`
}

type alertAssignRequest struct {
	Assignee string `json:"assignee"`
}

func exampleAlert() Alert {
	return Alert{ID: "a-01hq3m2x7c", Org: "acme", Rule: "r-01hq3k8v2m", RuleName: "press overheating", Device: "press-7",
		Severity: "major", State: "open", Count: 3, FirstSeen: exampleTime, LastSeen: exampleTime.Add(4 * time.Minute),
		Message: "temperature > 80 && avg(temperature, 5m) > 75", Values: map[string]float64{"temperature": 84.2},
		UpdatedAt: exampleTime.Add(4 * time.Minute)}
}

func alertSchema() schema {
	dt := dateTime("")
	return object("an alert", []string{"id", "org", "rule", "device", "severity", "state", "count", "firstSeen", "lastSeen", "updatedAt"}, schema{
		"id": str(""), "org": str(""), "rule": str("rule id"), "ruleName": str(""), "device": str(""),
		"severity":  strEnum("", "critical", "major", "minor", "warning", "info"),
		"state":     strEnum("", "open", "acknowledged", "resolved"),
		"count":     integer("occurrences while active", 1),
		"firstSeen": dt, "lastSeen": dt, "message": str(""),
		"values":   schema{"type": "object", "additionalProperties": schema{"type": "number"}, "description": "the values that made the rule fire"},
		"assignee": str(""), "ackedBy": str(""), "ackedAt": dt, "resolvedBy": str(""), "resolvedAt": dt, "updatedAt": dt,
		"notes": arrayOf(object("", []string{"at", "by", "text"}, schema{"at": dt, "by": str(""), "text": str("")})),
		"history": arrayOf(object("", []string{"at", "kind"}, schema{"at": dt, "by": str(""),
			"kind": strEnum("", "state", "note", "assign", "action"), "from": str(""), "to": str(""), "note": str("")})),
	})
}

func (s *Server) alertRoutes() {
	aSchema := alertSchema()
	idOnly := map[string]string{"id": "alert id"}
	ex := exampleAlert()
	acked := ex
	acked.State, acked.AckedBy = "acknowledged", "token:t-7"
	at := exampleTime.Add(6 * time.Minute)
	acked.AckedAt = &at
	resolved := acked
	resolved.State, resolved.ResolvedBy, resolved.ResolvedAt = "resolved", "token:t-7", &at
	detail := ex
	detail.Notes = []AlertNote{{At: at, By: "token:t-7", Text: "cooling pump restarted"}}
	detail.History = []AlertChange{{At: exampleTime, Kind: "state", To: "open"}}
	body := func(a Alert) *content { return &content{Schema: aSchema, Example: a} }
	noteReq := &content{Schema: input("an optional note", nil, schema{"note": str("why")}), Example: alertNoteRequest{Note: "cooling pump restarted"}}

	s.add(&route{Method: "GET", Pattern: "/api/v1/alerts", ID: "listAlerts", Tag: "alerts", Role: registry.RoleViewer,
		Summary: "List alerts, newest first",
		Query: []param{
			{Name: "state", Description: "open, acknowledged, resolved, or active (open and acknowledged)", Schema: strEnum("", "open", "acknowledged", "resolved", "active")},
			{Name: "device", Description: "only this device's alerts", Schema: schema{"type": "string"}},
			{Name: "rule", Description: "only this rule's alerts", Schema: schema{"type": "string"}},
			{Name: "severity", Description: "only this severity", Schema: strEnum("", "critical", "major", "minor", "warning", "info")},
			{Name: "limit", Description: "page size, 1 to 1000 (default 100)", Schema: schema{"type": "integer", "minimum": 1, "maximum": 1000}},
			{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}},
		},
		Responses: []response{{Status: 200, Description: "a page of alerts", Body: &content{
			Schema:  object("", []string{"items"}, schema{"items": arrayOf(aSchema), "next": str("pass as after for the next page")}),
			Example: AlertList{Items: []Alert{ex}, Next: "a-01hq3m2x7c"}}}},
		Errors: []int{503}, handle: s.listAlerts})
	s.add(&route{Method: "GET", Pattern: "/api/v1/alerts/{id}", ID: "getAlert", Tag: "alerts", Role: registry.RoleViewer,
		Summary: "Get an alert with its notes and history", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the alert", Body: body(detail)}}, Errors: []int{503}, handle: s.getAlert})
	s.add(&route{Method: "POST", Pattern: "/api/v1/alerts/{id}/ack", ID: "ackAlert", Tag: "alerts", Role: registry.RoleOperator,
		Summary: "Acknowledge an open alert; the body (a note) is optional", PathParams: idOnly, Request: noteReq,
		Responses: []response{{Status: 200, Description: "the acknowledged alert", Body: body(acked)}}, Errors: []int{409, 503}, handle: s.ackAlert})
	s.add(&route{Method: "POST", Pattern: "/api/v1/alerts/{id}/resolve", ID: "resolveAlert", Tag: "alerts", Role: registry.RoleOperator,
		Summary: "Resolve an alert; the body (a note) is optional", PathParams: idOnly, Request: noteReq,
		Responses: []response{{Status: 200, Description: "the resolved alert", Body: body(resolved)}}, Errors: []int{409, 503}, handle: s.resolveAlert})
	s.add(&route{Method: "POST", Pattern: "/api/v1/alerts/{id}/notes", ID: "noteAlert", Tag: "alerts", Role: registry.RoleOperator,
		Summary: "Add a note to an alert", PathParams: idOnly,
		Request:   &content{Schema: input("a note", []string{"text"}, schema{"text": schema{"type": "string", "minLength": 1}}), Example: alertTextRequest{Text: "cooling pump restarted"}},
		Responses: []response{{Status: 200, Description: "the alert", Body: body(detail)}}, Errors: []int{503}, handle: s.noteAlert})
	assigned := ex
	assigned.Assignee = "maintenance-north"
	s.add(&route{Method: "POST", Pattern: "/api/v1/alerts/{id}/assign", ID: "assignAlert", Tag: "alerts", Role: registry.RoleOperator,
		Summary: "Assign an alert to someone (empty assignee unassigns)", PathParams: idOnly,
		Request:   &content{Schema: input("the assignee", []string{"assignee"}, schema{"assignee": str("")}), Example: alertAssignRequest{Assignee: "maintenance-north"}},
		Responses: []response{{Status: 200, Description: "the alert", Body: body(assigned)}}, Errors: []int{503}, handle: s.assignAlert})

	dSchema := object("an action delivery", []string{"id", "org", "alert", "rule", "event", "action", "type", "state", "attempts", "nextAt", "createdAt", "updatedAt"}, schema{
		"id": str("also the Idempotency-Key header"), "org": str(""), "alert": str(""), "rule": str(""),
		"event": str("opened, acknowledged, resolved"), "action": str("e.g. webhook https://host/path"),
		"type": strEnum("", "webhook", "device", "bus"), "state": strEnum("", "pending", "done", "dead"),
		"attempts": integer("", 0), "lastError": str(""), "nextAt": dateTime(""), "createdAt": dateTime(""), "updatedAt": dateTime(""),
	})
	dead := Delivery{ID: "d-01hq3m2z1a", Org: "acme", Alert: ex.ID, Rule: ex.Rule, Event: "opened", Action: "webhook https://hooks.example.com/shopfloor",
		Type: "webhook", State: "dead", Attempts: 8, LastError: "HTTP 500 Internal Server Error", NextAt: at, CreatedAt: exampleTime, UpdatedAt: at}
	s.add(&route{Method: "GET", Pattern: "/api/v1/actions/dead-letters", ID: "listDeadLetters", Tag: "alerts", Role: registry.RoleViewer,
		Summary: "Action deliveries that failed after their last attempt",
		Query: []param{
			{Name: "limit", Description: "page size, 1 to 1000 (default 100)", Schema: schema{"type": "integer", "minimum": 1, "maximum": 1000}},
			{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}},
		},
		Responses: []response{{Status: 200, Description: "a page of dead letters", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(dSchema), "next": str("")}), Example: DeliveryList{Items: []Delivery{dead}}}}},
		Errors: []int{503}, handle: s.listDeadLetters})
	s.add(&route{Method: "POST", Pattern: "/api/v1/actions/dead-letters/{id}/retry", ID: "retryDeadLetter", Tag: "alerts", Role: registry.RoleOperator,
		Summary: "Attempt a dead delivery again", PathParams: map[string]string{"id": "delivery id"},
		Responses: []response{{Status: 202, Description: "queued for delivery"}}, Errors: []int{503}, handle: s.retryDeadLetter})
}

func (s *Server) alertsDep() (Alerts, error) {
	if s.deps.Alerts == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "alerts are not running on this hub"}
	}
	return s.deps.Alerts, nil
}

// actor names the caller in an alert's history.
func actor(r *http.Request) string { return "token:" + principalOf(r).TokenID }

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := AlertFilter{State: q.Get("state"), Device: q.Get("device"), Rule: q.Get("rule"), Severity: q.Get("severity"), After: q.Get("after")}
	switch f.State {
	case "", "open", "acknowledged", "resolved", "active":
	default:
		return invalid("parameter \"state\" must be open, acknowledged, resolved or active, not %q", f.State)
	}
	if f.Limit, err = limitParam(r, 100); err != nil {
		return err
	}
	page, err := svc.ListAlerts(r.Context(), orgOf(r), f)
	if err != nil {
		return err
	}
	if page.Items == nil {
		page.Items = []Alert{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	a, err := svc.GetAlert(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// optionalNote reads {"note": "..."} when a body was sent.
func optionalNote(w http.ResponseWriter, r *http.Request) (string, error) {
	var req alertNoteRequest
	if r.ContentLength == 0 {
		return "", nil
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return "", err
	}
	return req.Note, nil
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request) error {
	return s.transition(w, r, Alerts.AckAlert)
}

func (s *Server) resolveAlert(w http.ResponseWriter, r *http.Request) error {
	return s.transition(w, r, Alerts.ResolveAlert)
}

func (s *Server) transition(w http.ResponseWriter, r *http.Request, fn func(Alerts, context.Context, string, string, string, string) (Alert, error)) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	note, err := optionalNote(w, r)
	if err != nil {
		return err
	}
	a, err := fn(svc, r.Context(), orgOf(r), r.PathValue("id"), actor(r), note)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) noteAlert(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	var req alertTextRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	a, err := svc.NoteAlert(r.Context(), orgOf(r), r.PathValue("id"), actor(r), req.Text)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) assignAlert(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	var req alertAssignRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	a, err := svc.AssignAlert(r.Context(), orgOf(r), r.PathValue("id"), actor(r), req.Assignee)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	limit, err := limitParam(r, 100)
	if err != nil {
		return err
	}
	page, err := svc.DeadLetters(r.Context(), orgOf(r), limit, r.URL.Query().Get("after"))
	if err != nil {
		return err
	}
	if page.Items == nil {
		page.Items = []Delivery{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) retryDeadLetter(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	if err := svc.RetryDelivery(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
