package api

import (
	"context"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/export"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// Export routes: continuous data export destinations of an organization
// and their delivery lag. The bodies are internal/export's own types.

// Exports is the export service the API calls; *export.Manager satisfies
// it. Errors wrap export's sentinels (see errors.go).
type Exports interface {
	Create(ctx context.Context, d export.Destination) (export.Destination, error)
	List(ctx context.Context, org string) ([]export.Status, error)
	Get(ctx context.Context, org, id string) (export.Status, error)
	Delete(ctx context.Context, org, id string) error
}

func redactExport(e export.Status) export.Status {
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
	spec := export.Destination{Name: "historian", Type: "webhook", URL: "https://historian.example.com/ingest", Secret: "s3cr3t-key",
		Filter: export.Filter{Site: "plant-north", Fields: []string{"temperature", "pressure"}}, Enrich: true}
	out := spec
	out.Secret, out.ID, out.Org, out.Created = redacted, "x-5f2c9a1b7d3e4f60", "acme", exampleTime
	ex := export.Status{Destination: out, Lag: 12, Delivered: 48213}
	idOnly := map[string]string{"id": "export id"}
	s.add(&route{Method: "POST", Pattern: "/api/v1/exports", ID: "createExport", Tag: "exports", Role: registry.RoleOperator,
		Summary:   "Create a continuous export destination; it starts within seconds and receives every new telemetry message (at least once)",
		Request:   &content{Schema: specSchema, Example: spec},
		Responses: []response{{Status: 201, Description: "created", Body: &content{Schema: exportSchema, Example: export.Status{Destination: out}}}},
		Errors:    []int{409, 503}, handle: s.createExport})
	s.add(&route{Method: "GET", Pattern: "/api/v1/exports", ID: "listExports", Tag: "exports", Role: registry.RoleViewer,
		Summary: "List the organization's export destinations with their lag",
		Responses: []response{{Status: 200, Description: "the destinations", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(exportSchema)}), Example: map[string][]export.Status{"items": {ex}}}}},
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
	var in export.Destination
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	// The organization, id and creation time are the hub's to set.
	in.Org, in.ID, in.Created = orgOf(r), "", time.Time{}
	d, err := svc.Create(r.Context(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, redactExport(export.Status{Destination: d}))
	return nil
}

func (s *Server) listExports(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.exportsDep()
	if err != nil {
		return err
	}
	items, err := svc.List(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	out := make([]export.Status, len(items))
	for i, e := range items {
		out[i] = redactExport(e)
	}
	writeJSON(w, http.StatusOK, map[string][]export.Status{"items": out})
	return nil
}

func (s *Server) getExport(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.exportsDep()
	if err != nil {
		return err
	}
	e, err := svc.Get(r.Context(), orgOf(r), r.PathValue("id"))
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
	if err := svc.Delete(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
