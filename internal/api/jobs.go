package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/jobs"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// Job routes: a desired-property patch or a direct method sent to every
// device a query selects, at a limited rate, with progress, per-device
// results and cancellation. The bodies are internal/jobs' own types.

// Jobs is the job service the API calls; *jobs.Service satisfies it.
// Errors wrap jobs' sentinels (see errors.go).
type Jobs interface {
	Create(ctx context.Context, org string, spec jobs.Spec) (jobs.Job, error)
	Get(ctx context.Context, org, id string) (jobs.Job, error)
	List(ctx context.Context, org string) ([]jobs.Job, error)
	// Devices lists per-device results; state filters when not empty.
	Devices(ctx context.Context, org, id, state string) ([]jobs.DeviceResult, error)
	Cancel(ctx context.Context, org, id string) (jobs.Job, error)
}

var exampleJobSpec = jobs.Spec{Type: "desired", Query: jobs.Query{Site: "plant-north", Template: "press", Tags: map[string]string{"line": "3"}},
	Desired: json.RawMessage(`{"setpoint":72.5}`), Rate: 20}

func exampleBulkJob() jobs.Job {
	return jobs.Job{ID: "9f1c0a7e9d3b42a8c6e1f0d2", Spec: exampleJobSpec, State: "running",
		Progress: jobs.Progress{Total: 48, Pending: 20, Succeeded: 27, Failed: 1}, CreatedAt: exampleTime}
}

func jobSchemas() (spec, job, dev schema) {
	props := schema{
		"type": strEnum("desired: merge a desired-properties patch into each device's twin; method: invoke a direct method on each device", "desired", "method"),
		"query": object("devices to run on; empty fields do not narrow", nil, schema{
			"site": str("site id"), "template": str("template id"), "tags": tags(),
		}),
		"desired": schema{"type": "object", "description": "desired jobs: the JSON merge patch"},
		"method": object("method jobs: the method to invoke", []string{"name"}, schema{
			"name":           str("method name"),
			"payload":        schema{"description": "JSON payload"},
			"timeoutSeconds": schema{"type": "integer", "minimum": 0, "maximum": 300, "description": "per device, default 30"},
		}),
		"rate": schema{"type": "number", "minimum": 0, "maximum": 1000, "description": "devices per second (default 10)"},
	}
	spec = object("a job to run", []string{"type", "query"}, props)
	progress := object("devices by state", []string{"total", "pending", "succeeded", "failed", "cancelled"}, schema{
		"total": integer("", 0), "pending": integer("not reached yet", 0), "succeeded": integer("", 0),
		"failed": integer("", 0), "cancelled": integer("not reached before the job was cancelled", 0),
	})
	jprops := schema{"id": str(""), "state": strEnum("", "running", "completed", "cancelled"), "progress": progress,
		"createdAt": dateTime(""), "endedAt": dateTime("when it completed or was cancelled")}
	for k, v := range props {
		jprops[k] = v
	}
	job = object("a job and its progress", []string{"id", "type", "query", "rate", "state", "progress", "createdAt"}, jprops)
	dev = object("a job's result for one device", []string{"deviceId", "state"}, schema{
		"deviceId": str(""),
		"state":    strEnum("", "pending", "succeeded", "failed", "cancelled"),
		"status":   integer("method jobs: the device's status", 0),
		"response": schema{"description": "method jobs: the device's payload"},
		"error":    str("why it failed"),
		"at":       dateTime("when the device was done"),
	})
	return spec, job, dev
}

func (s *Server) jobRoutes() {
	specSchema, jobSchema, devSchema := jobSchemas()
	idOnly := map[string]string{"id": "job id"}
	ex := exampleBulkJob()
	body := &content{Schema: jobSchema, Example: ex}
	at := exampleTime.Add(2 * time.Second)
	s.add(&route{Method: "POST", Pattern: "/api/v1/jobs", ID: "createJob", Tag: "jobs", Role: registry.RoleOperator,
		Summary:   "Start a job: a desired-properties patch or a direct method on every device the query selects, at rate devices per second; it survives a hub restart",
		Request:   &content{Schema: specSchema, Example: exampleJobSpec},
		Responses: []response{{Status: 202, Description: "started", Body: body}},
		Errors:    []int{503}, handle: s.createJob})
	s.add(&route{Method: "GET", Pattern: "/api/v1/jobs", ID: "listJobs", Tag: "jobs", Role: registry.RoleViewer,
		Summary: "List the organization's jobs, newest first (at most 200)",
		Responses: []response{{Status: 200, Description: "the jobs", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(jobSchema)}), Example: map[string]any{"items": []jobs.Job{ex}}}}},
		Errors: []int{503}, handle: s.listJobs})
	s.add(&route{Method: "GET", Pattern: "/api/v1/jobs/{id}", ID: "getJob", Tag: "jobs", Role: registry.RoleViewer,
		Summary: "Get a job and its live progress", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the job", Body: body}}, Errors: []int{503}, handle: s.getJob})
	s.add(&route{Method: "GET", Pattern: "/api/v1/jobs/{id}/devices", ID: "listJobDevices", Tag: "jobs", Role: registry.RoleViewer,
		Summary: "A job's result per device, in the order the devices are reached", PathParams: idOnly,
		Query: []param{{Name: "state", Description: "only devices in this state", Schema: strEnum("", "pending", "succeeded", "failed", "cancelled")}},
		Responses: []response{{Status: 200, Description: "per-device results", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(devSchema)}),
			Example: map[string]any{"items": []jobs.DeviceResult{
				{Device: "press-7", State: "succeeded", At: &at},
				{Device: "press-8", State: "failed", Error: "device not connected", At: &at},
				{Device: "press-9", State: "pending"},
			}}}}},
		Errors: []int{503}, handle: s.listJobDevices})
	cancelled := ex
	end := exampleTime.Add(time.Minute)
	cancelled.State, cancelled.EndedAt = "cancelled", &end
	cancelled.Progress = jobs.Progress{Total: 48, Succeeded: 27, Failed: 1, Cancelled: 20}
	s.add(&route{Method: "POST", Pattern: "/api/v1/jobs/{id}/cancel", ID: "cancelJob", Tag: "jobs", Role: registry.RoleOperator,
		Summary: "Cancel a running job: devices not reached yet end cancelled; a finished job answers 409", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the cancelled job", Body: &content{Schema: jobSchema, Example: cancelled}}},
		Errors:    []int{409, 503}, handle: s.cancelJob})
}

func (s *Server) jobsDep() (Jobs, error) {
	if s.deps.Jobs == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "jobs are not available on this hub"}
	}
	return s.deps.Jobs, nil
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.jobsDep()
	if err != nil {
		return err
	}
	var in jobs.Spec
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	out, err := svc.Create(r.Context(), orgOf(r), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.jobsDep()
	if err != nil {
		return err
	}
	items, err := svc.List(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	if items == nil {
		items = []jobs.Job{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.jobsDep()
	if err != nil {
		return err
	}
	out, err := svc.Get(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listJobDevices(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.jobsDep()
	if err != nil {
		return err
	}
	state := r.URL.Query().Get("state")
	switch state {
	case "", "pending", "succeeded", "failed", "cancelled":
	default:
		return invalid("state=%q is unknown; use pending, succeeded, failed or cancelled", state)
	}
	items, err := svc.Devices(r.Context(), orgOf(r), r.PathValue("id"), state)
	if err != nil {
		return err
	}
	if items == nil {
		items = []jobs.DeviceResult{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.jobsDep()
	if err != nil {
		return err
	}
	out, err := svc.Cancel(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
