package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestRouteTableRefusesUndocumented: a route cannot be added without what
// its OpenAPI entry needs.
func TestRouteTableRefusesUndocumented(t *testing.T) {
	ok := func() *route {
		return &route{Method: "GET", Pattern: "/x/{id}", ID: "getX", Tag: "x", Summary: "get x",
			PathParams: map[string]string{"id": "id"},
			Responses:  []response{{Status: 200, Description: "x", Body: &content{Schema: schema{"type": "object"}, Example: map[string]any{}}}},
			handle:     func(http.ResponseWriter, *http.Request) error { return nil }}
	}
	cases := map[string]func(*route){
		"no summary":       func(r *route) { r.Summary = "" },
		"no id":            func(r *route) { r.ID = "" },
		"no responses":     func(r *route) { r.Responses = nil },
		"undescribed path": func(r *route) { r.PathParams = nil },
		"no handler":       func(r *route) { r.handle = nil },
		"body no schema":   func(r *route) { r.Request = &content{Example: "x"} },
	}
	s := &Server{}
	s.add(ok())
	if err := s.checkRoutes(); err != nil {
		t.Fatalf("a complete route is refused: %v", err)
	}
	for name, breakIt := range cases {
		s := &Server{}
		r := ok()
		breakIt(r)
		s.add(r)
		if err := s.checkRoutes(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s = &Server{}
	s.add(ok())
	s.add(ok())
	if err := s.checkRoutes(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate route: %v", err)
	}
	s = &Server{mounts: []*mount{{Pattern: "/prometheus/"}}}
	if err := s.checkRoutes(); err == nil {
		t.Error("undocumented mount accepted")
	}
}
