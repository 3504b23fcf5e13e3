package api_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/api"
)

func TestOpenAPIServedAndComplete(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		r := e.do("GET", "/api/openapi.json", "", nil)
		wantStatus(t, r, http.StatusOK)
		if string(r.body) != string(e.api.OpenAPI()) {
			t.Fatal("served document differs from Server.OpenAPI")
		}
		var doc struct {
			Paths map[string]map[string]json.RawMessage `json:"paths"`
		}
		r.decode(t, &doc)
		routes, mounts := api.Registrations(e.api)
		if len(routes) < 30 {
			t.Fatalf("only %d routes registered", len(routes))
		}
		has := func(op string) bool {
			method, path, _ := strings.Cut(op, " ")
			_, ok := doc.Paths[path][strings.ToLower(method)]
			return ok
		}
		for _, rt := range routes {
			if !has(rt) {
				t.Errorf("route %s is served but not documented", rt)
			}
		}
		for _, pattern := range []string{"/prometheus/", "/mqtt", "GET /metrics"} {
			ops := mounts[pattern]
			if len(ops) == 0 {
				t.Errorf("mount %s is served but documents nothing", pattern)
			}
			for _, op := range ops {
				if !has(op) {
					t.Errorf("mount %s: %s is not in the document", pattern, op)
				}
			}
		}
		// And every documented operation is served: a request to it never
		// falls through to the unmatched handler.
		for path, item := range doc.Paths {
			concrete := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "x")
			for method := range item {
				req, _ := http.NewRequest(strings.ToUpper(method), e.srv.URL+concrete, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
					t.Errorf("documented %s %s answers %d without a token", method, path, resp.StatusCode)
				}
			}
		}
	})
}

// TestOpenAPIStructure checks the document against the OpenAPI 3.1 rules it
// can break: required fields, path parameters declared, unique operation
// ids, known parameter locations, resolvable references and schemas that
// compile as JSON Schema 2020-12.
func TestOpenAPIStructure(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		raw := e.api.OpenAPI()
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if v, _ := doc["openapi"].(string); !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(v) {
			t.Fatalf("openapi %q is not 3.1.x", v)
		}
		info, _ := doc["info"].(map[string]any)
		if info["title"] == "" || info["version"] == "" || info["title"] == nil || info["version"] == nil {
			t.Fatalf("info %v lacks title or version", info)
		}
		comps, _ := doc["components"].(map[string]any)
		schemes, _ := comps["securitySchemes"].(map[string]any)
		allowedTop := map[string]bool{"openapi": true, "info": true, "jsonSchemaDialect": true, "servers": true, "paths": true,
			"webhooks": true, "components": true, "security": true, "tags": true, "externalDocs": true}
		for k := range doc {
			if !allowedTop[k] && !strings.HasPrefix(k, "x-") {
				t.Errorf("unknown top-level field %q", k)
			}
		}
		methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}
		ids := map[string]string{}
		paths, _ := doc["paths"].(map[string]any)
		for path, item := range paths {
			if !strings.HasPrefix(path, "/") {
				t.Errorf("path %q does not start with /", path)
			}
			wild := map[string]bool{}
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				wild[m[1]] = true
			}
			for method, opAny := range item.(map[string]any) {
				where := method + " " + path
				if !methods[method] {
					t.Errorf("%s: %q is not an HTTP method field", where, method)
					continue
				}
				op := opAny.(map[string]any)
				id, _ := op["operationId"].(string)
				if id == "" || ids[id] != "" {
					t.Errorf("%s: operationId %q missing or also used by %s", where, id, ids[id])
				}
				ids[id] = where
				declared := map[string]bool{}
				params, _ := op["parameters"].([]any)
				seen := map[string]bool{}
				for _, pa := range params {
					p := pa.(map[string]any)
					name, _ := p["name"].(string)
					in, _ := p["in"].(string)
					if name == "" || !map[string]bool{"query": true, "header": true, "path": true, "cookie": true}[in] {
						t.Errorf("%s: parameter %v needs a name and a known location", where, p)
					}
					if seen[in+name] {
						t.Errorf("%s: parameter %s in %s twice", where, name, in)
					}
					seen[in+name] = true
					if p["schema"] == nil {
						t.Errorf("%s: parameter %s has no schema", where, name)
					}
					if in == "path" {
						if p["required"] != true {
							t.Errorf("%s: path parameter %s must be required", where, name)
						}
						if !wild[name] {
							t.Errorf("%s: path parameter %s is not in the path", where, name)
						}
						declared[name] = true
					}
				}
				for w := range wild {
					if !declared[w] {
						t.Errorf("%s: {%s} is not declared as a path parameter", where, w)
					}
				}
				resps, _ := op["responses"].(map[string]any)
				if len(resps) == 0 {
					t.Errorf("%s: no responses", where)
				}
				for code, ra := range resps {
					if n, err := strconv.Atoi(code); (err != nil || n < 100 || n > 599) && code != "default" {
						t.Errorf("%s: response key %q", where, code)
					}
					if d, _ := ra.(map[string]any)["description"].(string); d == "" {
						t.Errorf("%s: response %s has no description", where, code)
					}
				}
				if rb, ok := op["requestBody"].(map[string]any); ok {
					if c, _ := rb["content"].(map[string]any); len(c) == 0 {
						t.Errorf("%s: request body without content", where)
					}
				}
				sec, _ := op["security"].([]any)
				for _, s := range sec {
					for name := range s.(map[string]any) {
						if schemes[name] == nil {
							t.Errorf("%s: security scheme %q is not defined", where, name)
						}
					}
				}
			}
		}
		// Every $ref resolves and every schema compiles.
		var walk func(ptr []string, v any)
		walk = func(ptr []string, v any) {
			switch x := v.(type) {
			case map[string]any:
				if ref, ok := x["$ref"].(string); ok {
					if _, err := e.doc.schemaAt(strings.TrimPrefix(ref, "#")); err != nil {
						t.Errorf("%s: $ref %s: %v", pointer(ptr...), ref, err)
					}
				}
				for k, c := range x {
					if k == "example" || k == "examples" {
						continue // data, not schemas: a template example has a field named schema
					}
					p := append(append([]string(nil), ptr...), k)
					if k == "schema" {
						if _, err := e.doc.schemaAt(pointer(p...)); err != nil {
							t.Errorf("schema at %s does not compile: %v", pointer(p...), err)
						}
					}
					walk(p, c)
				}
			case []any:
				for i, c := range x {
					walk(append(append([]string(nil), ptr...), strconv.Itoa(i)), c)
				}
			}
		}
		walk(nil, doc)
		for name := range comps["schemas"].(map[string]any) {
			if _, err := e.doc.schemaAt(pointer("components", "schemas", name)); err != nil {
				t.Errorf("component %s does not compile: %v", name, err)
			}
		}
	})
}

// TestOpenAPIExamplesValidate checks every example (request bodies,
// responses, parameters) against its schema.
func TestOpenAPIExamplesValidate(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		var doc map[string]any
		if err := json.Unmarshal(e.api.OpenAPI(), &doc); err != nil {
			t.Fatal(err)
		}
		n := 0
		check := func(schemaPtr string, example any) {
			n++
			data, err := json.Marshal(example)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.doc.validate(schemaPtr, data); err != nil {
				t.Errorf("example for %s does not validate: %v\nexample: %s", schemaPtr, err, data)
			}
		}
		for path, item := range doc["paths"].(map[string]any) {
			for method, opAny := range item.(map[string]any) {
				op := opAny.(map[string]any)
				base := []string{"paths", path, method}
				if rb, ok := op["requestBody"].(map[string]any); ok {
					for mt, mAny := range rb["content"].(map[string]any) {
						m := mAny.(map[string]any)
						ex, ok := m["example"]
						if !ok {
							t.Errorf("%s %s: request body %s has no example", method, path, mt)
							continue
						}
						check(pointer(append(base, "requestBody", "content", mt, "schema")...), ex)
					}
				}
				for code, rAny := range op["responses"].(map[string]any) {
					cont, _ := rAny.(map[string]any)["content"].(map[string]any)
					for mt, mAny := range cont {
						m := mAny.(map[string]any)
						ex, ok := m["example"]
						if !ok {
							t.Errorf("%s %s: response %s %s has no example", method, path, code, mt)
							continue
						}
						check(pointer(append(base, "responses", code, "content", mt, "schema")...), ex)
					}
				}
				params, _ := op["parameters"].([]any)
				for i, pa := range params {
					if ex, ok := pa.(map[string]any)["example"]; ok {
						check(pointer(append(base, "parameters", strconv.Itoa(i), "schema")...), ex)
					}
				}
			}
		}
		if n < 60 {
			t.Fatalf("only %d examples checked", n)
		}
	})
}

// TestOpenAPICatchesDrift makes sure the validator used above rejects a
// wrong body, so the tests relying on it can fail.
func TestOpenAPICatchesDrift(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		ptr := pointer("components", "schemas", "Device")
		for _, bad := range []string{
			`{"id":"x","org":"acme","disabled":false,"auth":"sas","createdAt":"2026-03-02T08:30:00Z","updatedAt":"2026-03-02T08:30:00Z","errorCount":0}`,
			`{"id":"x","org":"acme","disabled":"no","auth":"sas","createdAt":"2026-03-02T08:30:00Z","updatedAt":"2026-03-02T08:30:00Z","errorCount":0,"connected":true}`,
			`{"id":"x","org":"acme","disabled":false,"auth":"sas","createdAt":"yesterday","updatedAt":"2026-03-02T08:30:00Z","errorCount":0,"connected":true}`,
		} {
			if err := e.doc.validate(ptr, []byte(bad)); err == nil {
				t.Errorf("validator accepted %s", bad)
			}
		}
		if err := e.doc.validate(pointer("components", "schemas", "CreateDevice"), []byte(`{"id":"x","colour":"red"}`)); err == nil {
			t.Error("validator accepted an unknown request field")
		}
	})
}
