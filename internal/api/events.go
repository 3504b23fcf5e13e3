package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Events reads the change history of a device's string fields (a state, a
// program name): the time-series store keeps each change, not each sample.
type Events interface {
	StringEvents(ctx context.Context, org, device, field string, from, to time.Time) ([]StringEvent, error)
}

// StringEvent is one change of a string field.
type StringEvent struct {
	T     int64  `json:"t"`
	Value string `json:"value"`
}

type eventsBody struct {
	Device string        `json:"device"`
	Field  string        `json:"field"`
	Events []StringEvent `json:"events"`
}

func (s *Server) eventRoutes() {
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/events", ID: "deviceEvents", Tag: "telemetry", Role: registry.RoleViewer,
		Summary: "Changes of one string field of a device over a time range", PathParams: map[string]string{"id": "device id"},
		Query: []param{
			{Name: "field", Description: "the string field, e.g. state", Required: true, Schema: schema{"type": "string"}, Example: "state"},
			{Name: "from", Description: "start: " + telemetryHelp + " (default: a day before to)", Schema: schema{"type": "string"}},
			{Name: "to", Description: "end: " + telemetryHelp + " (default: now)", Schema: schema{"type": "string"}},
		},
		Responses: []response{{Status: 200, Description: "each change, oldest first", Body: &content{
			Schema: object("changes of a string field", []string{"device", "field", "events"}, schema{
				"device": str(""),
				"field":  str(""),
				"events": arrayOf(object("", []string{"t", "value"}, schema{
					"t":     schema{"type": "integer", "description": "unix ms"},
					"value": str(""),
				})),
			}),
			Example: eventsBody{Device: "press-7", Field: "state", Events: []StringEvent{
				{T: exampleTime.Add(-time.Hour).UnixMilli(), Value: "IDLE"}, {T: exampleTime.UnixMilli(), Value: "RUNNING"},
			}},
		}}},
		Errors: []int{503}, handle: s.events})
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Events == nil {
		return &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the time-series store is not running on this hub"}
	}
	q := r.URL.Query()
	field := q.Get("field")
	if field == "" {
		return invalid("parameter \"field\" is required: the string field whose changes you want, e.g. state")
	}
	to, err := parseTime("to", q.Get("to"), s.now())
	if err != nil {
		return err
	}
	from, err := parseTime("from", q.Get("from"), to.Add(-24*time.Hour))
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return invalid("parameter \"from\" (%s) must be before \"to\" (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	org, id := orgOf(r), r.PathValue("id")
	if _, err := s.deps.Registry.GetDevice(r.Context(), org, id); err != nil {
		return err
	}
	evs, err := s.deps.Events.StringEvents(r.Context(), org, id, field, from, to)
	if err != nil {
		return fmt.Errorf("read changes of %q on %q: %w", field, id, err)
	}
	if evs == nil {
		evs = []StringEvent{}
	}
	writeJSON(w, http.StatusOK, eventsBody{Device: id, Field: field, Events: evs})
	return nil
}
