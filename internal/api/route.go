package api

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// route is one REST operation: how it is served and how it is documented.
// Every field except handle ends up in the OpenAPI document.
type route struct {
	Method  string
	Pattern string // Go 1.22 ServeMux pattern without the method
	ID      string // OpenAPI operationId
	Tag     string
	Summary string
	// Role is the least role the caller needs; "" serves without a token.
	Role registry.Role
	// PathParams describes each {wildcard} of Pattern.
	PathParams map[string]string
	Query      []param
	Request    *content
	Responses  []response
	// Errors lists error statuses beyond those every route of its kind
	// documents (400, 401, 403, 404).
	Errors []int
	handle func(w http.ResponseWriter, r *http.Request) error
}

type param struct {
	Name        string
	Description string
	Schema      schema
	Required    bool
	Example     any
}

// content is a request or response body: media type, schema and example.
type content struct {
	Type    string // media type; application/json when empty
	Schema  schema
	Example any
	// Also is another media type the same body may come in (a request
	// that takes JSON or CSV).
	Also *content
}

type response struct {
	Status      int
	Description string
	Body        *content // nil for an empty body
}

// mount serves a handler another package built under a path prefix. Docs
// documents the operations a client uses there; New refuses a mount without.
type mount struct {
	Pattern string
	Role    registry.Role
	// OperatorOnly refuses tokens of customer organizations (403): what it
	// serves spans every organization.
	OperatorOnly bool
	Handler      http.Handler
	Docs         []*route
}

var wildcardRE = regexp.MustCompile(`\{([A-Za-z0-9_]+)(\.\.\.)?\}`)

// add registers a route; New serves and documents it.
func (s *Server) add(rt *route) { s.routes = append(s.routes, rt) }

// checkRoutes refuses a route table whose documentation would be incomplete.
func (s *Server) checkRoutes() error {
	seen := map[string]bool{}
	ids := map[string]bool{}
	check := func(rt *route, served bool) error {
		where := rt.Method + " " + rt.Pattern
		switch {
		case rt.ID == "" || rt.Summary == "" || rt.Tag == "":
			return fmt.Errorf("api: route %s needs an operation id, a summary and a tag", where)
		case len(rt.Responses) == 0:
			return fmt.Errorf("api: route %s documents no response", where)
		case served && rt.handle == nil:
			return fmt.Errorf("api: route %s has no handler", where)
		case ids[rt.ID]:
			return fmt.Errorf("api: operation id %q is used twice", rt.ID)
		case seen[where]:
			return fmt.Errorf("api: route %s is registered twice", where)
		}
		ids[rt.ID], seen[where] = true, true
		for _, m := range wildcardRE.FindAllStringSubmatch(rt.Pattern, -1) {
			if rt.PathParams[m[1]] == "" {
				return fmt.Errorf("api: route %s does not describe path parameter %q", where, m[1])
			}
		}
		if rt.Request != nil && rt.Request.Schema == nil {
			return fmt.Errorf("api: route %s has a request body without a schema", where)
		}
		for _, rs := range rt.Responses {
			if rs.Body != nil && rs.Body.Schema == nil {
				return fmt.Errorf("api: route %s response %d has a body without a schema", where, rs.Status)
			}
		}
		return nil
	}
	for _, rt := range s.routes {
		if err := check(rt, true); err != nil {
			return err
		}
	}
	for _, mt := range s.mounts {
		if len(mt.Docs) == 0 {
			return fmt.Errorf("api: mount %s is not documented", mt.Pattern)
		}
		for _, d := range mt.Docs {
			if !underMount(mt.Pattern, d.Pattern) {
				return fmt.Errorf("api: mount %s documents %s, which it does not serve", mt.Pattern, d.Pattern)
			}
			if err := check(d, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// underMount says whether path is served by the mount pattern (a pattern
// ending in "/" is a subtree, any other is exact; a leading method is
// ignored).
func underMount(pattern, path string) bool {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = pattern[i+1:]
	}
	if strings.HasSuffix(pattern, "/") {
		return strings.HasPrefix(path, pattern)
	}
	return path == pattern
}

// wrapRoute adds authentication, tenancy and role checks and turns a
// returned error into the JSON error shape.
func (s *Server) wrapRoute(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.Role != "" {
			ar, err := s.authorize(r, rt.Role)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			r = ar
		}
		handle := rt.handle
		if sp := s.audits[rt]; sp != nil && s.deps.Audit != nil {
			handle = func(w http.ResponseWriter, r *http.Request) error { return s.audited(rt, sp, w, r) }
		}
		if err := handle(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) wrapMount(mt *mount) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt.Role != "" {
			ar, err := s.authorize(r, mt.Role)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			r = ar
			if mt.OperatorOnly && !principalOf(r).Operator {
				s.writeError(w, r, &httpError{Status: http.StatusForbidden, Code: "forbidden",
					Message: fmt.Sprintf("%s spans every organization: it needs a token of the operator organization (any role); ask the hub's operator", r.URL.Path)})
				return
			}
		}
		mt.Handler.ServeHTTP(w, r)
	})
}

// mountHandlers mounts the handlers other packages provide.
func (s *Server) mountHandlers(metrics http.Handler) {
	if h := s.deps.Prometheus; h != nil {
		s.mounts = append(s.mounts, &mount{
			Pattern: "/prometheus/",
			Role:    registry.RoleViewer,
			Handler: http.StripPrefix("/prometheus", h),
			Docs:    prometheusDocs(),
		})
	}
	if h := s.deps.MQTTWebSocket; h != nil {
		s.mounts = append(s.mounts, &mount{
			Pattern: "/mqtt",
			Handler: h,
			Docs: []*route{{
				Method: http.MethodGet, Pattern: "/mqtt", ID: "mqttWebSocket", Tag: "mqtt",
				Summary: "MQTT 3.1.1/5 over WebSocket (subprotocol \"mqtt\"); the MQTT CONNECT authenticates, not an API token",
				Responses: []response{
					{Status: http.StatusSwitchingProtocols, Description: "the connection is upgraded to a WebSocket carrying MQTT"},
					{Status: http.StatusBadRequest, Description: "the request is not a WebSocket upgrade", Body: &content{
						Type: "text/plain", Schema: schema{"type": "string"}, Example: "Bad Request\n"}},
				},
			}},
		})
	}
	if metrics != nil {
		s.mounts = append(s.mounts, &mount{
			Pattern:      "GET /metrics",
			Role:         registry.RoleViewer,
			OperatorOnly: true,
			Handler:      metrics,
			Docs: []*route{{
				Method: http.MethodGet, Pattern: "/metrics", ID: "metrics", Tag: "operations", Role: registry.RoleViewer, Errors: []int{http.StatusForbidden},
				Summary: "Process metrics in the Prometheus text format; they name every organization, so a token of the operator organization is needed (viewer is enough). --metrics-listen serves them without a token on a separate address",
				Responses: []response{{Status: http.StatusOK, Description: "metrics", Body: &content{
					Type: "text/plain", Schema: schema{"type": "string"},
					Example: "# TYPE shopfloor_api_requests_total counter\nshopfloor_api_requests_total{code=\"200\",method=\"GET\",route=\"/healthz\"} 1\n",
				}}},
			}},
		})
	}
}

// unmatched answers requests no route matched, in the JSON error shape:
// 405 with Allow when the path exists for other methods, else 404.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	if s.deps.Console != nil && consolePath(r.URL.Path) {
		s.deps.Console.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pat := s.mux.Handler(probe); pat != "" && pat != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, &httpError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Message: fmt.Sprintf("%s is not supported on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
		return
	}
	s.writeError(w, r, &httpError{Status: http.StatusNotFound, Code: "not_found",
		Message: fmt.Sprintf("there is no API path %s; the API is described at /api/openapi.json", r.URL.Path)})
}
