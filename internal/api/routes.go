package api

import (
	"net/http"
)

// registerRoutes builds the route table. Each group lives next to its
// handlers.
func (s *Server) registerRoutes() {
	s.add(&route{Method: "GET", Pattern: "/healthz", ID: "health", Tag: "operations",
		Summary: "Readiness: 200 once the hub serves, 503 while it starts or stops (no token needed)",
		Responses: []response{
			{Status: http.StatusOK, Description: "ready", Body: &content{Schema: ref("Health"), Example: map[string]string{"status": "ok"}}},
			{Status: http.StatusServiceUnavailable, Description: "not ready", Body: &content{Schema: ref("Health"), Example: map[string]string{"status": "unavailable"}}},
		},
		handle: s.health})
	s.add(&route{Method: "GET", Pattern: "/api/openapi.json", ID: "openapi", Tag: "operations",
		Summary: "This API's OpenAPI 3.1 document (no token needed)",
		Responses: []response{{Status: http.StatusOK, Description: "the document", Body: &content{
			Schema:  schema{"type": "object", "required": []string{"openapi", "info", "paths"}},
			Example: map[string]any{"openapi": "3.1.0", "info": map[string]string{"title": "Shopfloor hub API", "version": "1"}, "paths": map[string]any{}},
		}}},
		handle: s.openapi})
	s.tenantRoutes()
	s.deviceRoutes()
	s.telemetryRoutes()
	s.eventRoutes()
	s.anomalyRoutes()
	s.connectivityRoutes()
	s.twinRoutes()
	s.ruleRoutes()
	s.alertRoutes()
	s.exportRoutes()
	s.templateRoutes()
	s.jobRoutes()
	s.userRoutes()
	s.usageRoutes()
	s.auditRoutes()
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	if s.deps.Ready != nil && !s.deps.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.doc)
	return nil
}

// prometheusDocs documents the Prometheus HTTP API operations clients use
// under /prometheus/ (Grafana, promtool, shopfloor query promql).
func prometheusDocs() []*route {
	ok := []response{{Status: http.StatusOK, Description: "the Prometheus API envelope", Body: &content{Schema: ref("PrometheusResponse"),
		Example: map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": []any{
			map[string]any{"metric": map[string]string{"__name__": "temperature", "device": "press-7"}, "value": []any{1772440200.0, "71.9"}},
		}}}}}}
	query := []param{
		{Name: "query", Description: "PromQL expression", Schema: schema{"type": "string"}, Required: true, Example: `avg by (device) (temperature{site="plant-north"})`},
		{Name: "time", Description: "evaluation time: RFC 3339 or unix seconds (default now)", Schema: schema{"type": "string"}},
	}
	rangeQ := []param{
		query[0],
		{Name: "start", Description: "RFC 3339 or unix seconds", Schema: schema{"type": "string"}, Required: true},
		{Name: "end", Description: "RFC 3339 or unix seconds", Schema: schema{"type": "string"}, Required: true},
		{Name: "step", Description: "a duration (15s) or seconds", Schema: schema{"type": "string"}, Required: true},
	}
	bad := map[string]any{"status": "error", "errorType": "bad_data", "error": `invalid parameter "query": 1:5: parse error: unexpected end of input`}
	ok = append(ok,
		response{Status: http.StatusBadRequest, Description: "a bad parameter", Body: &content{Schema: ref("PrometheusResponse"), Example: bad}},
		response{Status: http.StatusUnprocessableEntity, Description: "the expression could not be evaluated", Body: &content{Schema: ref("PrometheusResponse"),
			Example: map[string]any{"status": "error", "errorType": "execution", "error": "query processing would load too many samples into memory"}}},
	)
	var out []*route
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		suffix := ""
		if m == http.MethodPost {
			suffix = "Post"
		}
		out = append(out,
			&route{Method: m, Pattern: "/prometheus/api/v1/query", ID: "promQuery" + suffix, Tag: "prometheus",
				Summary: "PromQL instant query over the organization's telemetry (Prometheus HTTP API)", Query: query, Responses: ok},
			&route{Method: m, Pattern: "/prometheus/api/v1/query_range", ID: "promQueryRange" + suffix, Tag: "prometheus",
				Summary: "PromQL range query over the organization's telemetry (Prometheus HTTP API)", Query: rangeQ, Responses: ok},
		)
	}
	return out
}
