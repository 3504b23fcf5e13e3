package api

import (
	"net/http"

	"github.com/shopfloor/shopfloor/internal/anomaly"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// Anomaly reports a device's streaming anomaly detector; *anomaly.Service
// satisfies it.
type Anomaly interface {
	Status(org, device string) anomaly.Status
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
			Example: anomaly.Status{Device: "pump-3", Seen: true, Time: exampleTime, Kind: "univariate", Fields: []string{"vibration", "current"},
				Warm: true, Score: 0.97, Alert: true, Contributions: []anomaly.Contribution{{Field: "vibration", Share: 0.91, Reason: anomaly.ReasonShift}}},
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
	writeJSON(w, http.StatusOK, s.deps.Anomaly.Status(org, id))
	return nil
}
