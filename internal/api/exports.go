package api

import (
	"context"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Export routes: continuous data export destinations of an organization
// and their delivery lag. The hub adapts internal/export to Exports.

// Exports is the export service the API calls; errors wrap the registry
// sentinels.
type Exports interface {
	CreateExport(ctx context.Context, org string, in ExportSpec) (Export, error)
	ListExports(ctx context.Context, org string) ([]Export, error)
	GetExport(ctx context.Context, org, id string) (Export, error)
	DeleteExport(ctx context.Context, org, id string) error
}

// ExportFilter selects what a destination receives.
type ExportFilter struct {
	Site     string            `json:"site,omitempty"`
	Template string            `json:"template,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	Devices  []string          `json:"devices,omitempty"`
	Fields   []string          `json:"fields,omitempty"`
}

// ExportSpec is the body of POST /exports: the JSON of export.Destination.
type ExportSpec struct {
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	URL       string            `json:"url,omitempty"`
	Secret    string            `json:"secret,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Timeout   string            `json:"timeout,omitempty"`
	Subject   string            `json:"subject,omitempty"`
	JetStream bool              `json:"jetstream,omitempty"`
	MaxBytes  int64             `json:"maxBytes,omitempty"`
	MaxFiles  int               `json:"maxFiles,omitempty"`
	BatchSize int               `json:"batchSize,omitempty"`
	Filter    ExportFilter      `json:"filter"`
	Enrich    bool              `json:"enrich,omitempty"`
	Disabled  bool              `json:"disabled,omitempty"`
}

// Export is a stored destination with its delivery state.
type Export struct {
	ID  string `json:"id"`
	Org string `json:"org"`
	ExportSpec
	CreatedAt time.Time  `json:"createdAt"`
	Lag       uint64     `json:"lag"`
	Delivered int64      `json:"delivered"`
	LastError string     `json:"lastError,omitempty"`
	LastAt    *time.Time `json:"lastDeliveryAt,omitempty"`
}

func redactExport(e Export) Export {
	if e.Secret != "" {
		e.Secret = redacted
	}
	if len(e.Headers) > 0 {
		h := make(map[string]string, len(e.Headers))
		for k := range e.Headers {
			h[k] = redacted
		}
		e.Headers = h
	}
	return e
}

func (s *Server) exportRoutes() {
	filter := object("what the destination receives; empty fields do not narrow", nil, schema{
		"site": str(""), "template": str(""), "tags": tags(),
		"devices": arrayOf(schema{"type": "string"}), "fields": arrayOf(schema{"type": "string"}),
	})
	props := schema{
		"name":      schema{"type": "string", "pattern": `^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`},
		"type":      strEnum("webhook: batched signed JSON POST; nats: a NATS subject or JetStream stream; remote_write: Prometheus remote write; file: NDJSON files on the hub", "webhook", "nats", "remote_write", "file"),
		"url":       str("webhook and remote_write: http(s) address; internal addresses are refused unless the operator allows them (--egress-allow)"),
		"secret":    str("webhook: HMAC-SHA256 key for X-Shopfloor-Signature; shown as ***** in responses"),
		"headers":   schema{"type": "object", "additionalProperties": schema{"type": "string"}, "description": "extra headers (e.g. Authorization); values shown as ***** in responses"},
		"timeout":   str("per request, e.g. 10s"),
		"subject":   str("nats: subject relative to the organization's subject space <prefix>.exports.<org>."),
		"jetstream": boolean("nats: publish with acknowledgement to a stream capturing the subject"),
		"maxBytes":  integer("file: rotate after this size (default 64 MiB)", 0),
		"maxFiles":  integer("file: rotated files kept (default 10)", 0),
		"batchSize": integer("records per webhook or remote-write request (default 500)", 0),
		"filter":    filter,
		"enrich":    boolean("add the device's site, template and tags"),
		"disabled":  boolean(""),
	}
	specSchema := object("an export destination", []string{"name", "type"}, props)
	eprops := schema{"id": str(""), "org": str(""), "createdAt": dateTime(""),
		"lag":            integer("bus messages not yet delivered", 0),
		"delivered":      integer("records delivered since the hub started", 0),
		"lastError":      str("the last delivery failure (it is retried)"),
		"lastDeliveryAt": dateTime("")}
	for k, v := range props {
		eprops[k] = v
	}
	exportSchema := object("an export destination and its delivery state", []string{"id", "org", "name", "type", "filter", "createdAt", "lag", "delivered"}, eprops)
	spec := ExportSpec{Name: "historian", Type: "webhook", URL: "https://historian.example.com/ingest", Secret: "s3cr3t-key",
		Filter: ExportFilter{Site: "plant-north", Fields: []string{"temperature", "pressure"}}, Enrich: true}
	out := spec
	out.Secret = redacted
	ex := Export{ID: "x-5f2c9a1b7d3e4f60", Org: "acme", ExportSpec: out, CreatedAt: exampleTime, Lag: 12, Delivered: 48213}
	idOnly := map[string]string{"id": "export id"}
	s.add(&route{Method: "POST", Pattern: "/api/v1/exports", ID: "createExport", Tag: "exports", Role: registry.RoleOperator,
		Summary:   "Create a continuous export destination; it starts within seconds and receives every new telemetry message (at least once)",
		Request:   &content{Schema: specSchema, Example: spec},
		Responses: []response{{Status: 201, Description: "created", Body: &content{Schema: exportSchema, Example: Export{ID: ex.ID, Org: "acme", ExportSpec: out, CreatedAt: exampleTime}}}},
		Errors:    []int{409, 503}, handle: s.createExport})
	s.add(&route{Method: "GET", Pattern: "/api/v1/exports", ID: "listExports", Tag: "exports", Role: registry.RoleViewer,
		Summary: "List the organization's export destinations with their lag",
		Responses: []response{{Status: 200, Description: "the destinations", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(exportSchema)}), Example: map[string][]Export{"items": {ex}}}}},
		Errors: []int{503}, handle: s.listExports})
	s.add(&route{Method: "GET", Pattern: "/api/v1/exports/{id}", ID: "getExport", Tag: "exports", Role: registry.RoleViewer,
		Summary: "Get an export destination with its lag", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the destination", Body: &content{Schema: exportSchema, Example: ex}}},
		Errors:    []int{503}, handle: s.getExport})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/exports/{id}", ID: "deleteExport", Tag: "exports", Role: registry.RoleOperator,
		Summary: "Delete an export destination and its position on the bus", PathParams: idOnly,
		Responses: []response{{Status: 204, Description: "deleted"}}, Errors: []int{503}, handle: s.deleteExport})
}

func (s *Server) exportsDep() (Exports, error) {
	if s.deps.Exports == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "continuous export is not running on this hub"}
	}
	return s.deps.Exports, nil
}

func (s *Server) createExport(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.exportsDep()
	if err != nil {
		return err
	}
	var in ExportSpec
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	e, err := svc.CreateExport(r.Context(), orgOf(r), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, redactExport(e))
	return nil
}

func (s *Server) listExports(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.exportsDep()
	if err != nil {
		return err
	}
	items, err := svc.ListExports(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	out := make([]Export, len(items))
	for i, e := range items {
		out[i] = redactExport(e)
	}
	writeJSON(w, http.StatusOK, map[string][]Export{"items": out})
	return nil
}

func (s *Server) getExport(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.exportsDep()
	if err != nil {
		return err
	}
	e, err := svc.GetExport(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, redactExport(e))
	return nil
}

func (s *Server) deleteExport(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.exportsDep()
	if err != nil {
		return err
	}
	if err := svc.DeleteExport(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
