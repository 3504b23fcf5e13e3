package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// buildOpenAPI renders the route table and mounts as an OpenAPI 3.1
// document.
func (s *Server) buildOpenAPI() ([]byte, error) {
	paths := map[string]map[string]any{}
	add := func(rt *route) {
		p := paths[rt.Pattern]
		if p == nil {
			p = map[string]any{}
			paths[rt.Pattern] = p
		}
		p[strings.ToLower(rt.Method)] = operation(rt)
	}
	for _, rt := range s.routes {
		add(rt)
	}
	for _, mt := range s.mounts {
		for _, d := range mt.Docs {
			if d.Role == "" {
				d.Role = mt.Role
			}
			add(d)
		}
	}
	tagSet := map[string]bool{}
	for _, rt := range s.allDocumented() {
		tagSet[rt.Tag] = true
	}
	var tagList []map[string]string
	for t := range tagSet {
		tagList = append(tagList, map[string]string{"name": t})
	}
	sort.Slice(tagList, func(i, j int) bool { return tagList[i]["name"] < tagList[j]["name"] })

	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "Shopfloor hub API",
			"version": "1",
			"description": "REST API of the Shopfloor industrial IoT hub. Authenticate with an API token in " +
				"\"Authorization: Bearer <token>\". A token of the operator organization acts on one of its " +
				"customer organizations when the request names it with ?org=ID or the X-Shopfloor-Org header. " +
				"Roles: viewer reads; operator also writes devices, sites and data; admin also manages tokens, " +
				"organizations, enrollment groups and CA certificates. Another organization's ids answer 404.",
		},
		"tags":  tagList,
		"paths": paths,
		"components": map[string]any{
			"schemas": components(),
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "an API token (shopfloor token create)"},
			},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

// allDocumented lists every documented operation: routes and mount docs.
func (s *Server) allDocumented() []*route {
	out := append([]*route(nil), s.routes...)
	for _, mt := range s.mounts {
		out = append(out, mt.Docs...)
	}
	return out
}

func operation(rt *route) map[string]any {
	op := map[string]any{
		"operationId": rt.ID,
		"summary":     rt.Summary,
		"tags":        []string{rt.Tag},
	}
	var params []map[string]any
	names := make([]string, 0, len(rt.PathParams))
	for n := range rt.PathParams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		params = append(params, map[string]any{
			"name": n, "in": "path", "required": true, "description": rt.PathParams[n],
			"schema": schema{"type": "string"},
		})
	}
	for _, q := range rt.Query {
		p := map[string]any{"name": q.Name, "in": "query", "description": q.Description, "schema": q.Schema}
		if q.Required {
			p["required"] = true
		}
		if q.Example != nil {
			p["example"] = q.Example
		}
		params = append(params, p)
	}
	if rt.Role != "" {
		op["security"] = []map[string][]string{{"bearer": {}}}
		op["x-required-role"] = string(rt.Role)
		op["description"] = fmt.Sprintf("Needs a token with at least the %s role.", rt.Role)
		params = append(params,
			map[string]any{"name": "org", "in": "query", "description": "customer organization to act on (operator-organization tokens only)", "schema": schema{"type": "string"}},
			map[string]any{"name": OrgHeader, "in": "header", "description": "same as ?org=", "schema": schema{"type": "string"}},
		)
	} else {
		op["security"] = []map[string][]string{}
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	if rt.Request != nil {
		op["requestBody"] = map[string]any{"required": true, "content": mediaType(rt.Request)}
	}
	responses := map[string]any{}
	for _, rs := range rt.Responses {
		r := map[string]any{"description": rs.Description}
		if rs.Body != nil {
			r["content"] = mediaType(rs.Body)
		}
		responses[strconv.Itoa(rs.Status)] = r
	}
	for _, status := range errorStatuses(rt) {
		if _, own := responses[strconv.Itoa(status)]; own {
			continue
		}
		responses[strconv.Itoa(status)] = map[string]any{
			"description": http.StatusText(status),
			"content": map[string]any{"application/json": map[string]any{
				"schema": ref("Error"), "example": errorExample(status),
			}},
		}
	}
	op["responses"] = responses
	return op
}

func mediaType(c *content) map[string]any {
	t := c.Type
	if t == "" {
		t = "application/json"
	}
	m := map[string]any{"schema": c.Schema}
	if c.Example != nil {
		m["example"] = c.Example
	}
	out := map[string]any{t: m}
	if c.Also != nil {
		for k, v := range mediaType(c.Also) {
			out[k] = v
		}
	}
	return out
}

// errorStatuses are the error responses a route documents: what every
// authenticated route can answer plus the route's own.
func errorStatuses(rt *route) []int {
	set := map[int]bool{}
	if rt.Role != "" {
		// 400: a conflicting ?org= and header; 404: an organization the
		// token may not see.
		set[http.StatusBadRequest] = true
		set[http.StatusUnauthorized] = true
		set[http.StatusNotFound] = true
		if roleRank(rt.Role) > roleRank("viewer") {
			set[http.StatusForbidden] = true
		}
		set[http.StatusInternalServerError] = true
	}
	if rt.Request != nil || len(rt.Query) > 0 {
		set[http.StatusBadRequest] = true
	}
	if len(rt.PathParams) > 0 {
		set[http.StatusNotFound] = true
	}
	for _, e := range rt.Errors {
		set[e] = true
	}
	out := make([]int, 0, len(set))
	for st := range set {
		out = append(out, st)
	}
	sort.Ints(out)
	return out
}
