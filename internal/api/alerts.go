package api

import (
	"context"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// Alert routes: listing, acknowledging, resolving, notes, assignment, and
// the dead letters of actions that could not be delivered. The bodies are
// internal/alerts' and internal/actions' own types.

// Alerts is the alert service the API calls; *alerts.Service satisfies it.
// Errors wrap alerts' sentinels (ErrConflict for a transition the alert's
// state forbids; see errors.go).
type Alerts interface {
	List(ctx context.Context, org string, f alerts.Filter) (alerts.Page, error)
	Get(ctx context.Context, org, id string) (alerts.Alert, error)
	Ack(ctx context.Context, org, id, by, note string) (alerts.Alert, error)
	Resolve(ctx context.Context, org, id, by, note string) (alerts.Alert, error)
	AddNote(ctx context.Context, org, id, by, text string) (alerts.Alert, error)
	Assign(ctx context.Context, org, id, by, assignee string) (alerts.Alert, error)
}

// Deliveries are the runs of rule actions; *actions.Dispatcher satisfies
// it.
type Deliveries interface {
	DeadLetters(ctx context.Context, org string, limit int, after string) (actions.DeliveryPage, error)
	Retry(ctx context.Context, org, id string) error
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

func exampleAlert() alerts.Alert {
	return alerts.Alert{ID: "a-01hq3m2x7c", Org: "acme", Rule: "r-01hq3k8v2m", RuleName: "press overheating", Device: "press-7",
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
	detail.Notes = []alerts.Note{{At: at, By: "token:t-7", Text: "cooling pump restarted"}}
	detail.History = []alerts.Change{{At: exampleTime, Kind: "state", To: "open"}}
	body := func(a alerts.Alert) *content { return &content{Schema: aSchema, Example: a} }
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
			Example: alerts.Page{Items: []alerts.Alert{ex}, Next: "a-01hq3m2x7c"}}}},
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
	dead := actions.Delivery{ID: "d-01hq3m2z1a", Org: "acme", Alert: ex.ID, Rule: ex.Rule, Event: "opened", Action: "webhook https://hooks.example.com/shopfloor",
		Type: "webhook", State: "dead", Attempts: 8, LastError: "HTTP 500 Internal Server Error", NextAt: at, CreatedAt: exampleTime, UpdatedAt: at}
	s.add(&route{Method: "GET", Pattern: "/api/v1/actions/dead-letters", ID: "listDeadLetters", Tag: "alerts", Role: registry.RoleViewer,
		Summary: "Action deliveries that failed after their last attempt",
		Query: []param{
			{Name: "limit", Description: "page size, 1 to 1000 (default 100)", Schema: schema{"type": "integer", "minimum": 1, "maximum": 1000}},
			{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}},
		},
		Responses: []response{{Status: 200, Description: "a page of dead letters", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(dSchema), "next": str("")}), Example: actions.DeliveryPage{Items: []actions.Delivery{dead}}}}},
		Errors: []int{503}, handle: s.listDeadLetters})
	s.add(&route{Method: "POST", Pattern: "/api/v1/actions/dead-letters/{id}/retry", ID: "retryDeadLetter", Tag: "alerts", Role: registry.RoleOperator,
		Summary: "Attempt a dead delivery again", PathParams: map[string]string{"id": "delivery id"},
		Responses: []response{{Status: 202, Description: "queued for delivery"}}, Errors: []int{503}, handle: s.retryDeadLetter})
}

func (s *Server) deliveriesDep() (Deliveries, error) {
	if s.deps.Deliveries == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "rule actions are not running on this hub"}
	}
	return s.deps.Deliveries, nil
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
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	f := alerts.Filter{State: alerts.State(q.Get("state")), Device: q.Get("device"), Rule: q.Get("rule"), Severity: alerts.Severity(q.Get("severity")), After: after}
	switch f.State {
	case "", "open", "acknowledged", "resolved", "active":
	default:
		return invalid("parameter \"state\" must be open, acknowledged, resolved or active, not %q", f.State)
	}
	if f.Limit, err = limitParam(r, 100); err != nil {
		return err
	}
	page, err := svc.List(r.Context(), orgOf(r), f)
	if err != nil {
		return err
	}
	if page.Items == nil {
		page.Items = []alerts.Alert{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.alertsDep()
	if err != nil {
		return err
	}
	a, err := svc.Get(r.Context(), orgOf(r), r.PathValue("id"))
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
	return s.transition(w, r, Alerts.Ack)
}

func (s *Server) resolveAlert(w http.ResponseWriter, r *http.Request) error {
	return s.transition(w, r, Alerts.Resolve)
}

func (s *Server) transition(w http.ResponseWriter, r *http.Request, fn func(Alerts, context.Context, string, string, string, string) (alerts.Alert, error)) error {
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
	a, err := svc.AddNote(r.Context(), orgOf(r), r.PathValue("id"), actor(r), req.Text)
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
	a, err := svc.Assign(r.Context(), orgOf(r), r.PathValue("id"), actor(r), req.Assignee)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.deliveriesDep()
	if err != nil {
		return err
	}
	limit, err := limitParam(r, 100)
	if err != nil {
		return err
	}
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	page, err := svc.DeadLetters(r.Context(), orgOf(r), limit, after)
	if err != nil {
		return err
	}
	if page.Items == nil {
		page.Items = []actions.Delivery{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) retryDeadLetter(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.deliveriesDep()
	if err != nil {
		return err
	}
	if err := svc.Retry(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
