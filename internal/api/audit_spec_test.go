package api

import (
	"net/http"
	"testing"
)

// TestEveryChangeIsAudited: every authenticated route other than GET is
// audited, with an object kind, so a new route is covered without anyone
// remembering to; the derivation gives the kinds and views expected.
func TestEveryChangeIsAudited(t *testing.T) {
	s := &Server{}
	s.registerRoutes()
	specs := s.auditSpecs()
	n := 0
	for _, rt := range s.routes {
		sp := specs[rt]
		if rt.Method == http.MethodGet || rt.Role == "" || noAudit[rt.ID] {
			if sp != nil {
				t.Errorf("%s %s changes nothing but is audited", rt.Method, rt.Pattern)
			}
			continue
		}
		n++
		if sp == nil || sp.kind == "" {
			t.Errorf("%s %s (%s) is not audited", rt.Method, rt.Pattern, rt.ID)
		}
	}
	if n < 50 {
		t.Fatalf("only %d changing routes found", n)
	}
	byID := map[string]*auditSpec{}
	for rt, sp := range specs {
		byID[rt.ID] = sp
	}
	for id, role := range map[string]string{"createDevice": "viewer", "createToken": "admin", "deleteToken": "admin",
		"setUserPassword": "admin", "createUser": "admin", "updateRule": "viewer", "createEnrollmentGroup": "viewer", "setSIMState": "viewer"} {
		if sp := byID[id]; sp == nil || string(sp.role) != role {
			t.Errorf("%s: entries readable by %v, want %s", id, sp, role)
		}
	}
	for _, c := range []struct {
		id, kind, state string
		create, own     bool
	}{
		{"createDevice", "device", "/api/v1/devices/{id}", true, false},
		{"updateDevice", "device", "/api/v1/devices/{id}", false, true},
		{"deleteDevice", "device", "/api/v1/devices/{id}", false, true},
		{"regenerateDeviceKey", "device", "/api/v1/devices/{id}", false, false},
		{"patchTwin", "device", "/api/v1/devices/{id}/twin", false, true},
		{"createToken", "token", "", true, false},
		{"setUserPassword", "user", "", false, false},
		{"updateRule", "rule", "/api/v1/rules/{id}", false, true},
		{"enableRule", "rule", "/api/v1/rules/{id}", false, false},
		{"putTrafficClass", "traffic-class", "/api/v1/connectivity/traffic-classes/{name}", false, true},
		{"setSIMState", "sim", "/api/v1/connectivity/sims/{iccid}", false, false},
		{"importDevices", "device", "", false, false},
		{"createEnrollmentGroup", "enrollment-group", "/api/v1/enrollment-groups/{id}", true, false},
	} {
		sp := byID[c.id]
		if sp == nil {
			t.Errorf("%s: not audited", c.id)
			continue
		}
		state := ""
		if sp.state != nil {
			state = sp.state.Pattern
		}
		if sp.kind != c.kind || state != c.state || sp.create != c.create || sp.own != c.own {
			t.Errorf("%s: kind %q, view %q, create %v, own %v; want %q, %q, %v, %v", c.id, sp.kind, state, sp.create, sp.own, c.kind, c.state, c.create, c.own)
		}
	}
}
