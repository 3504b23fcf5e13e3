package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Anomaly reports a device's streaming anomaly detector.
type Anomaly interface {
	DeviceAnomaly(ctx context.Context, org, device string) (AnomalyStatus, error)
}

// AnomalyStatus is a device's latest anomaly score and what drove it.
type AnomalyStatus struct {
	Device string `json:"device"`
	// Seen is false until the detector has scored an update from the device.
	Seen bool      `json:"seen"`
	Time time.Time `json:"time,omitempty"`
	Kind string    `json:"kind,omitempty"`
	// Fields the detector models.
	Fields []string `json:"fields,omitempty"`
	// Warmup is how many updates the learning period lasts.
	Warmup int `json:"warmup,omitempty"`
	// Warm is false during the learning period: no score, no alerts.
	Warm            bool                  `json:"warm"`
	WarmupRemaining int                   `json:"warmupRemaining"`
	Score           float64               `json:"score"`
	Alert           bool                  `json:"alert"`
	Contributions   []AnomalyContribution `json:"contributions"`
}

// AnomalyContribution is one field's share of the anomaly.
type AnomalyContribution struct {
	Field  string  `json:"field"`
	Share  float64 `json:"share"`
	Reason string  `json:"reason"`
}

func (s *Server) anomalyRoutes() {
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/anomaly", ID: "deviceAnomaly", Tag: "telemetry", Role: registry.RoleViewer,
		Summary: "A device's latest anomaly score, its warm-up state and the fields behind it", PathParams: map[string]string{"id": "device id"},
		Responses: []response{{Status: 200, Description: "the detector's state", Body: &content{
			Schema: object("a device's anomaly detector", []string{"device", "seen", "warm", "warmupRemaining", "score", "alert", "contributions"}, schema{
				"device":          str(""),
				"seen":            boolean("an update from the device was scored since the hub started"),
				"time":            dateTime("time of the last scored update"),
				"kind":            strEnum("detector", "univariate", "pca", "rcf"),
				"fields":          arrayOf(schema{"type": "string"}),
				"warmup":          integer("updates the warm-up lasts", 0),
				"warm":            boolean("false while learning: no score and no alerts"),
				"warmupRemaining": integer("updates still needed before scoring starts", 0),
				"score":           schema{"type": "number", "minimum": 0, "maximum": 1},
				"alert":           boolean("the score is past the device's sensitivity"),
				"contributions": arrayOf(object("", []string{"field", "share", "reason"}, schema{
					"field":  str(""),
					"share":  schema{"type": "number", "minimum": 0, "maximum": 1},
					"reason": str("spike, shift, spread, jump, stuck or joint"),
				})),
			}),
			Example: AnomalyStatus{Device: "pump-3", Seen: true, Time: exampleTime, Kind: "univariate", Fields: []string{"vibration", "current"},
				Warm: true, Score: 0.97, Alert: true, Contributions: []AnomalyContribution{{Field: "vibration", Share: 0.91, Reason: "shift"}}},
		}}},
		Errors: []int{503}, handle: s.anomaly})
}

func (s *Server) anomaly(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Anomaly == nil {
		return &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "anomaly detection is not running on this hub"}
	}
	org, id := orgOf(r), r.PathValue("id")
	if _, err := s.deps.Registry.GetDevice(r.Context(), org, id); err != nil {
		return err
	}
	st, err := s.deps.Anomaly.DeviceAnomaly(r.Context(), org, id)
	if err != nil {
		return fmt.Errorf("anomaly state of %q: %w", id, err)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
