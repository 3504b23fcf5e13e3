package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/template"
)

// Template routes: device templates (telemetry, properties, commands) with
// JSON import and export, and the template violations counted per device.
// The bodies are internal/template's own types.

// Templates is the template service the API calls; *template.Service
// satisfies it. Errors wrap template's sentinels (see errors.go).
type Templates interface {
	Create(ctx context.Context, org string, t template.Template) (template.Template, error)
	Get(ctx context.Context, org, id string) (template.Template, error)
	List(ctx context.Context, org string) ([]template.Template, error)
	// Put creates or replaces a template.
	Put(ctx context.Context, org string, t template.Template) (template.Template, error)
	Delete(ctx context.Context, org, id string) error
	// Export returns the portable JSON document of a template.
	Export(ctx context.Context, org, id string) ([]byte, error)
	// Import stores an exported document; replace overwrites.
	Import(ctx context.Context, org string, doc []byte, replace bool) (template.Template, error)
	Violations(ctx context.Context, org, device string) (template.Counts, error)
}

func fp(v float64) *float64 { return &v }

var exampleTemplate = template.Template{ID: "press", Name: "Hydraulic press", Description: "line 3 presses",
	Telemetry: []template.Telemetry{
		{Name: "temperature", Schema: "double", Unit: "degC", Min: fp(-40), Max: fp(150)},
		{Name: "running", Schema: "boolean"},
	},
	Properties: []template.Property{
		{Name: "firmware", Schema: "string"},
		{Name: "setpoint", Schema: "double", Unit: "degC", Writable: true, Min: fp(0), Max: fp(120)},
	},
	Commands: []template.Command{{Name: "reboot", Request: "object", Response: "object"}},
}

func templateSchemas() (in, out schema) {
	schemaEnum := strEnum("value schema", "double", "float", "integer", "long", "boolean", "string", "object")
	num := schema{"type": "number"}
	tel := object("a telemetry field", []string{"name", "schema"}, schema{
		"name": str("field name as the device sends it"), "schema": schemaEnum, "unit": str("unit, e.g. degC"),
		"min": num, "max": num,
	})
	prop := object("a twin property: read-only ones the device reports; writable ones are set in desired and acknowledged in reported as {\"value\":…,\"ac\":200,\"av\":<desired $version>}",
		[]string{"name", "schema", "writable"}, schema{
			"name": str(""), "schema": schemaEnum, "unit": str(""), "writable": boolean(""), "min": num, "max": num,
		})
	cmd := object("a direct method; an empty schema accepts any payload", []string{"name"}, schema{
		"name": str(""), "request": schemaEnum, "response": schemaEnum,
	})
	props := schema{
		"id":          schema{"type": "string", "pattern": `^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`, "description": "template id; devices name it in their template field"},
		"name":        str(""),
		"description": str(""),
		"telemetry":   arrayOf(tel),
		"properties":  arrayOf(prop),
		"commands":    arrayOf(cmd),
		"anomaly": object("streaming anomaly detection for the template's devices; absent: every numeric field, default settings", nil, schema{
			"fields": arrayOf(str("numeric telemetry field")), "kind": strEnum("univariate: one model per field; pca: one model over the fields together", "univariate", "pca"),
			"sensitivity": schema{"type": "number", "description": "between 0 and 1, default 0.5; higher alerts sooner"}, "warmup": schema{"type": "integer", "description": "learning period in updates, default 400"}}),
	}
	in = object("a device template", []string{"id"}, props)
	oprops := schema{"org": str(""), "createdAt": dateTime(""), "updatedAt": dateTime("")}
	for k, v := range props {
		oprops[k] = v
	}
	out = object("a device template", []string{"id", "telemetry", "properties", "commands"}, oprops)
	return in, out
}

func (s *Server) templateRoutes() {
	inSchema, outSchema := templateSchemas()
	idOnly := map[string]string{"id": "template id"}
	stored := exampleTemplate
	stored.Org, stored.CreatedAt, stored.UpdatedAt = "acme", exampleTime, exampleTime
	body := &content{Schema: outSchema, Example: stored}
	s.add(&route{Method: "POST", Pattern: "/api/v1/templates", ID: "createTemplate", Tag: "templates", Role: registry.RoleOperator,
		Summary:   "Create a device template: telemetry (schema, unit, min, max), properties (read-only or writable) and commands",
		Request:   &content{Schema: inSchema, Example: exampleTemplate},
		Responses: []response{{Status: 201, Description: "created", Body: body}},
		Errors:    []int{409, 503}, handle: s.createTemplate})
	s.add(&route{Method: "GET", Pattern: "/api/v1/templates", ID: "listTemplates", Tag: "templates", Role: registry.RoleViewer,
		Summary: "List the organization's templates by id",
		Responses: []response{{Status: 200, Description: "the templates", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(outSchema)}), Example: map[string]any{"items": []template.Template{stored}}}}},
		Errors: []int{503}, handle: s.listTemplates})
	s.add(&route{Method: "GET", Pattern: "/api/v1/templates/{id}", ID: "getTemplate", Tag: "templates", Role: registry.RoleViewer,
		Summary: "Get a template", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the template", Body: body}}, Errors: []int{503}, handle: s.getTemplate})
	s.add(&route{Method: "PUT", Pattern: "/api/v1/templates/{id}", ID: "replaceTemplate", Tag: "templates", Role: registry.RoleOperator,
		Summary: "Replace a template's definition (or create it); the body's id, when given, must match the path", PathParams: idOnly,
		Request:   &content{Schema: inSchema, Example: exampleTemplate},
		Responses: []response{{Status: 200, Description: "the stored template", Body: body}},
		Errors:    []int{503}, handle: s.replaceTemplate})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/templates/{id}", ID: "deleteTemplate", Tag: "templates", Role: registry.RoleOperator,
		Summary: "Delete a template; devices that name it are no longer validated", PathParams: idOnly,
		Responses: []response{{Status: 204, Description: "deleted"}}, Errors: []int{503}, handle: s.deleteTemplate})
	s.add(&route{Method: "GET", Pattern: "/api/v1/templates/{id}/export", ID: "exportTemplate", Tag: "templates", Role: registry.RoleViewer,
		Summary: "Export a template as a portable JSON document (no organization or timestamps) for import elsewhere", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the document", Body: &content{Schema: inSchema, Example: exampleTemplate}}},
		Errors:    []int{503}, handle: s.exportTemplate})
	s.add(&route{Method: "POST", Pattern: "/api/v1/templates/import", ID: "importTemplate", Tag: "templates", Role: registry.RoleOperator,
		Summary:   "Import an exported template document; with replace=true it overwrites a template with the same id",
		Query:     []param{{Name: "replace", Description: "overwrite an existing template (default false: 409)", Schema: schema{"type": "boolean"}, Example: true}},
		Request:   &content{Schema: inSchema, Example: exampleTemplate},
		Responses: []response{{Status: 201, Description: "imported", Body: body}},
		Errors:    []int{409, 503}, handle: s.importTemplate})
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/template-violations", ID: "getTemplateViolations", Tag: "templates", Role: registry.RoleViewer,
		Summary:    "How many telemetry messages, reported patches and commands of a device broke its template (the messages themselves are stored all the same)",
		PathParams: map[string]string{"id": "device id"},
		Responses: []response{{Status: 200, Description: "the counts", Body: &content{
			Schema: object("template violations of a device", []string{"deviceId", "template", "telemetry", "reported", "command", "lastError", "lastAt"}, schema{
				"deviceId": str(""), "template": str("the template the last violation broke"),
				"telemetry": integer("telemetry messages", 0), "reported": integer("reported-property patches", 0), "command": integer("command payloads", 0),
				"lastError": str("what the last violation was"), "lastAt": dateTime(""),
			}),
			Example: template.Counts{Device: "press-7", Template: "press", Telemetry: 3, Reported: 1,
				LastError: `breaks template press: telemetry "temperature" is 900, above the maximum 150; fix the device or the template`, LastAt: exampleTime}}}},
		Errors: []int{503}, handle: s.templateViolations})
}

func (s *Server) templatesDep() (Templates, error) {
	if s.deps.Templates == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "device templates are not available on this hub"}
	}
	return s.deps.Templates, nil
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
	if err != nil {
		return err
	}
	var in template.Template
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	out, err := svc.Create(r.Context(), orgOf(r), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
	if err != nil {
		return err
	}
	items, err := svc.List(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	if items == nil {
		items = []template.Template{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
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

func (s *Server) replaceTemplate(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
	if err != nil {
		return err
	}
	var in template.Template
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	id := r.PathValue("id")
	if in.ID != "" && in.ID != id {
		return invalid("the body's id %q differs from the path's %q; ids cannot be changed (create a new template instead)", in.ID, id)
	}
	in.ID = id
	out, err := svc.Put(r.Context(), orgOf(r), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
	if err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) exportTemplate(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
	if err != nil {
		return err
	}
	doc, err := svc.Export(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+r.PathValue("id")+`.json"`)
	_, _ = w.Write(doc)
	return nil
}

func (s *Server) importTemplate(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
	if err != nil {
		return err
	}
	replace := false
	if v := r.URL.Query().Get("replace"); v != "" {
		if replace, err = strconv.ParseBool(v); err != nil {
			return invalid("replace=%q must be true or false", v)
		}
	}
	doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		return invalid("the request body is larger than %d bytes; send a smaller template", maxJSONBody)
	}
	if !json.Valid(doc) {
		return invalid("the request body is not valid JSON; send a document from GET /api/v1/templates/{id}/export")
	}
	out, err := svc.Import(r.Context(), orgOf(r), doc, replace)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) templateViolations(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.templatesDep()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := s.deps.Registry.GetDevice(r.Context(), orgOf(r), id); err != nil {
		return err
	}
	out, err := svc.Violations(r.Context(), orgOf(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
