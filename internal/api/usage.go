package api

import (
	"net/http"

	"github.com/shopfloor/shopfloor/internal/quota"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// Usage reports an organization's use of the hub's cardinality limits;
// *quota.Tracker satisfies it.
type Usage interface {
	Usage(org string) quota.Usage
}

func (s *Server) usageRoutes() {
	s.add(&route{Method: "GET", Pattern: "/api/v1/usage", ID: "usage", Tag: "tenancy", Role: registry.RoleViewer,
		Summary: "The organization's series and device fields against the hub's cardinality limits",
		Responses: []response{{Status: 200, Description: "usage and limits", Body: &content{
			Schema: object("usage of the cardinality limits", []string{"series", "limits", "devices", "refusedMessages"}, schema{
				"series":  integer("series (fields summed over devices) the organization holds", 0),
				"devices": integer("devices that sent at least one field", 0),
				"limits": object("the limits in force", []string{"fieldsPerDevice", "seriesPerOrg", "fieldNameLength"}, schema{
					"fieldsPerDevice": integer("distinct field names one device may use (--max-device-fields)", 1),
					"seriesPerOrg":    integer("series one organization may hold (--max-org-series)", 1),
					"fieldNameLength": integer("longest field name in bytes (--max-field-name)", 1),
				}),
				"largestDevices": arrayOf(object("", []string{"device", "fields"}, schema{
					"device": str(""), "fields": integer("", 0),
				})),
				"refusedMessages": integer("messages refused by a limit since the hub started", 0),
			}),
			Example: quota.Usage{Series: 1840, Devices: 230, Limits: quota.Limits{FieldsPerDevice: 1000, SeriesPerOrg: 5000000, FieldNameLength: 256},
				LargestDevices: []quota.DeviceUsage{{Device: "robot-07", Fields: 24}}},
		}}},
		Errors: []int{503}, handle: s.limitsUsage})
}

func (s *Server) limitsUsage(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Usage == nil {
		return &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "usage accounting is not running on this hub"}
	}
	writeJSON(w, http.StatusOK, s.deps.Usage.Usage(orgOf(r)))
	return nil
}
