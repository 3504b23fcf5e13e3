package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/api/apitest"
	"github.com/shopfloor/shopfloor/internal/registry"
)

var (
	viewer   = registry.RoleViewer
	operator = registry.RoleOperator
	admin    = registry.RoleAdmin
)

func TestNewRequiresRegistry(t *testing.T) {
	if _, err := api.New(api.Deps{}); err == nil {
		t.Fatal("New without a registry succeeded")
	}
}

func TestHealthz(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		ready := false
		e := newEnv(t, mk, func(d *api.Deps) { d.Ready = func() bool { return ready } })
		r := e.do("GET", "/healthz", "", nil)
		wantStatus(t, r, http.StatusServiceUnavailable)
		ready = true
		r = e.do("GET", "/healthz", "", nil)
		wantStatus(t, r, http.StatusOK)
		if string(r.body) != "{\"status\":\"ok\"}\n" {
			t.Fatalf("body %s", r.body)
		}
	})
}

func TestAuthentication(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		for name, hdr := range map[string][]string{
			"no header":     nil,
			"basic":         {"Authorization", "Basic dXNlcjpwYXNz"},
			"empty bearer":  {"Authorization", "Bearer "},
			"unknown token": {"Authorization", "Bearer sft_not_a_token"},
		} {
			t.Run(name, func(t *testing.T) {
				r := e.do("GET", "/api/v1/devices", "", nil, hdr...)
				wantError(t, r, http.StatusUnauthorized, "unauthorized")
				if r.header.Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
			})
		}
		// A deleted token stops working at once.
		tok, err := e.reg.CreateToken(context.Background(), "acme", "short-lived", viewer)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, e.do("GET", "/api/v1/sites", tok.Secret, nil), http.StatusOK)
		wantStatus(t, e.do("DELETE", "/api/v1/tokens/"+tok.ID, e.acme[admin], nil), http.StatusNoContent)
		wantError(t, e.do("GET", "/api/v1/sites", tok.Secret, nil), http.StatusUnauthorized, "unauthorized")
	})
}

func TestRoles(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		cases := []struct {
			method, path string
			body         any
			least        registry.Role
			okStatus     int
		}{
			{"GET", "/api/v1/devices", nil, viewer, 200},
			{"GET", "/api/v1/sites", nil, viewer, 200},
			{"POST", "/api/v1/sites", map[string]string{"name": "Hall %d"}, operator, 201},
			{"POST", "/api/v1/devices", map[string]string{"id": "dev-%d"}, operator, 201},
			{"GET", "/api/v1/tokens", nil, admin, 200},
			{"POST", "/api/v1/tokens", map[string]string{"name": "t", "role": "viewer"}, admin, 201},
			{"POST", "/api/v1/enrollment-groups", map[string]string{}, admin, 201},
			{"GET", "/api/v1/enrollment-groups", nil, viewer, 200},
			{"GET", "/api/v1/ca-certs", nil, viewer, 200},
		}
		n := 0
		for _, c := range cases {
			for _, role := range []registry.Role{viewer, operator, admin} {
				n++
				body := c.body
				if m, ok := body.(map[string]string); ok {
					mm := map[string]string{}
					for k, v := range m {
						if strings.Contains(v, "%d") {
							v = fmt.Sprintf(v, n)
						}
						mm[k] = v
					}
					body = mm
				}
				r := e.do(c.method, c.path, e.acme[role], body)
				if roleRankForTest(role) < roleRankForTest(c.least) {
					msg := wantError(t, r, http.StatusForbidden, "forbidden")
					if !strings.Contains(msg, string(c.least)) {
						t.Errorf("403 message does not name the role needed: %s", msg)
					}
				} else {
					wantStatus(t, r, c.okStatus)
				}
			}
		}
		// Writes refused for the viewer changed nothing.
		sites, err := e.reg.ListSites(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if len(sites) != 3 { // acme-plant plus operator and admin creations
			t.Fatalf("acme has %d sites, want 3", len(sites))
		}
	})
}

func roleRankForTest(r registry.Role) int {
	return map[registry.Role]int{viewer: 1, operator: 2, admin: 3}[r]
}

func TestTenancy(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		ctx := context.Background()
		if _, err := e.reg.CreateDevice(ctx, "globex", registry.Device{ID: "globex-press"}); err != nil {
			t.Fatal(err)
		}
		g, err := e.reg.CreateEnrollmentGroup(ctx, "globex", registry.EnrollmentGroup{ID: "globex-group"})
		if err != nil {
			t.Fatal(err)
		}
		acme := e.acme[admin]
		for _, c := range []struct{ method, path string }{
			{"GET", "/api/v1/devices/globex-press"},
			{"DELETE", "/api/v1/devices/globex-press"},
			{"POST", "/api/v1/devices/globex-press/keys/primary/regenerate"},
			{"GET", "/api/v1/devices/globex-press/token"},
			{"GET", "/api/v1/devices/globex-press/connection-string"},
			{"GET", "/api/v1/devices/globex-press/telemetry"},
			{"GET", "/api/v1/devices/globex-press/latest"},
			{"GET", "/api/v1/sites/globex-plant"},
			{"DELETE", "/api/v1/sites/globex-plant"},
			{"GET", "/api/v1/enrollment-groups/" + g.ID},
			{"DELETE", "/api/v1/enrollment-groups/" + g.ID},
			{"GET", "/api/v1/orgs/globex"},
			{"GET", "/api/v1/orgs/operator"},
			{"GET", "/api/v1/devices?org=globex"},
			{"GET", "/api/v1/sites?org=operator"},
		} {
			r := e.do(c.method, c.path, acme, nil)
			msg := wantError(t, r, http.StatusNotFound, "not_found")
			if strings.Contains(c.path, "globex") && !strings.Contains(msg, "globex") {
				t.Errorf("%s %s: message should name what was not found: %s", c.method, c.path, msg)
			}
		}
		r := e.do("PATCH", "/api/v1/devices/globex-press", acme, map[string]bool{"disabled": true})
		wantError(t, r, http.StatusNotFound, "not_found")
		r = e.do("GET", "/api/v1/devices", acme, nil, api.OrgHeader, "globex")
		wantError(t, r, http.StatusNotFound, "not_found")
		// Nothing of globex changed.
		d, err := e.reg.GetDevice(ctx, "globex", "globex-press")
		if err != nil || d.Disabled {
			t.Fatalf("globex device changed: %+v %v", d, err)
		}
		if _, err := e.reg.GetSite(ctx, "globex", "globex-plant"); err != nil {
			t.Fatal(err)
		}
		// The list shows only acme's devices.
		var list struct{ Items []registry.Device }
		e.do("GET", "/api/v1/devices", acme, nil).decode(t, &list)
		if len(list.Items) != 0 {
			t.Fatalf("acme sees %d devices", len(list.Items))
		}
	})
}

func TestOperatorActsOnCustomer(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		// By query parameter and by header.
		r := e.do("POST", "/api/v1/devices?org=acme", e.opAdmin, map[string]string{"id": "acme-1"})
		wantStatus(t, r, http.StatusCreated)
		var d registry.Device
		r.decode(t, &d)
		if d.Org != "acme" {
			t.Fatalf("device created in %q", d.Org)
		}
		r = e.do("GET", "/api/v1/devices/acme-1", e.opViewer, nil, api.OrgHeader, "acme")
		wantStatus(t, r, http.StatusOK)
		// The customer sees it as its own.
		wantStatus(t, e.do("GET", "/api/v1/devices/acme-1", e.acme[viewer], nil), http.StatusOK)
		// Without naming the org the operator acts on its own organization.
		wantError(t, e.do("GET", "/api/v1/devices/acme-1", e.opAdmin, nil), http.StatusNotFound, "not_found")
		// The operator's role still applies in the customer organization.
		wantError(t, e.do("DELETE", "/api/v1/devices/acme-1?org=acme", e.opViewer, nil), http.StatusForbidden, "forbidden")
		// Unknown organizations are not found; conflicting names are invalid.
		wantError(t, e.do("GET", "/api/v1/devices?org=nowhere", e.opAdmin, nil), http.StatusNotFound, "not_found")
		wantError(t, e.do("GET", "/api/v1/devices?org=acme", e.opAdmin, nil, api.OrgHeader, "globex"), http.StatusBadRequest, "invalid")
		// A customer cannot use the mechanism, even for an org that exists.
		wantError(t, e.do("GET", "/api/v1/devices?org=globex", e.acme[admin], nil), http.StatusNotFound, "not_found")
		// A grandchild of the operator org is not its customer.
		// (The registry may refuse to create one at all.)
		_, err := e.reg.CreateOrg(context.Background(), "acme", registry.Org{ID: "acme-sub", Name: "sub"})
		switch {
		case err == nil:
			wantError(t, e.do("GET", "/api/v1/devices?org=acme-sub", e.opAdmin, nil), http.StatusNotFound, "not_found")
		case !errors.Is(err, registry.ErrInvalid):
			t.Fatal(err)
		}
		// Tokens made for a customer belong to the customer.
		r = e.do("POST", "/api/v1/tokens?org=acme", e.opAdmin, map[string]string{"name": "acme line", "role": "operator"})
		wantStatus(t, r, http.StatusCreated)
		var tok registry.Token
		r.decode(t, &tok)
		if tok.Org != "acme" || tok.Secret == "" {
			t.Fatalf("token %+v", tok)
		}
		wantStatus(t, e.do("GET", "/api/v1/devices/acme-1", tok.Secret, nil), http.StatusOK)
	})
}

func TestOrgs(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		r := e.do("POST", "/api/v1/orgs", e.opAdmin, map[string]any{"name": "Initech", "retentionDays": 7})
		wantStatus(t, r, http.StatusCreated)
		var o registry.Org
		r.decode(t, &o)
		if o.ID != "initech" || o.Parent != "operator" || o.RetentionDays != 7 {
			t.Fatalf("org %+v", o)
		}
		wantError(t, e.do("POST", "/api/v1/orgs", e.opAdmin, map[string]any{"id": "initech", "name": "Again"}), http.StatusConflict, "conflict")
		wantError(t, e.do("POST", "/api/v1/orgs", e.acme[admin], map[string]any{"name": "Sub"}), http.StatusForbidden, "forbidden")
		wantError(t, e.do("POST", "/api/v1/orgs", e.opViewer, map[string]any{"name": "Sub"}), http.StatusForbidden, "forbidden")
		wantError(t, e.do("POST", "/api/v1/orgs?org=acme", e.opAdmin, map[string]any{"name": "Sub"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", "/api/v1/orgs", e.opAdmin, map[string]any{"name": " "}), http.StatusBadRequest, "invalid")

		var list struct{ Items []registry.Org }
		e.do("GET", "/api/v1/orgs", e.opViewer, nil).decode(t, &list)
		var ids []string
		for _, o := range list.Items {
			ids = append(ids, o.ID)
		}
		if strings.Join(ids, ",") != "operator,acme,globex,initech" {
			t.Fatalf("operator lists %v", ids)
		}
		e.do("GET", "/api/v1/orgs", e.acme[viewer], nil).decode(t, &list)
		if len(list.Items) != 1 || list.Items[0].ID != "acme" {
			t.Fatalf("acme lists %+v", list.Items)
		}
		wantStatus(t, e.do("GET", "/api/v1/orgs/acme", e.acme[viewer], nil), http.StatusOK)
		wantStatus(t, e.do("GET", "/api/v1/orgs/acme", e.opViewer, nil), http.StatusOK)

		// Retention: operator admins only; the store is told.
		r = e.do("PATCH", "/api/v1/orgs/acme", e.opAdmin, map[string]int{"retentionDays": 90})
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &o)
		if o.RetentionDays != 90 || e.retained["acme"] != 90*24*time.Hour {
			t.Fatalf("retention %d, store told %v", o.RetentionDays, e.retained["acme"])
		}
		wantError(t, e.do("PATCH", "/api/v1/orgs/acme", e.acme[admin], map[string]int{"retentionDays": 1}), http.StatusForbidden, "forbidden")
		wantError(t, e.do("PATCH", "/api/v1/orgs/globex", e.acme[admin], map[string]int{"retentionDays": 1}), http.StatusNotFound, "not_found")
		wantError(t, e.do("PATCH", "/api/v1/orgs/acme", e.opAdmin, map[string]int{"retentionDays": 0}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("PATCH", "/api/v1/orgs/acme", e.opAdmin, map[string]string{"retentionDays": "90"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("PATCH", "/api/v1/orgs/acme", e.opAdmin, map[string]int{}), http.StatusBadRequest, "invalid")
		got, _ := e.reg.GetOrg(context.Background(), "acme")
		if got.RetentionDays != 90 {
			t.Fatalf("refused patches changed retention to %d", got.RetentionDays)
		}
	})
}

func TestTokens(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		r := e.do("POST", "/api/v1/tokens", e.acme[admin], map[string]string{"name": "grafana", "role": "viewer"})
		wantStatus(t, r, http.StatusCreated)
		var tok registry.Token
		r.decode(t, &tok)
		if !strings.HasPrefix(tok.Secret, "sft_") || tok.Role != viewer || tok.Org != "acme" {
			t.Fatalf("token %+v", tok)
		}
		var list struct{ Items []registry.Token }
		e.do("GET", "/api/v1/tokens", e.acme[admin], nil).decode(t, &list)
		if len(list.Items) != 4 {
			t.Fatalf("%d tokens", len(list.Items))
		}
		for _, it := range list.Items {
			if it.Secret != "" || it.Org != "acme" {
				t.Fatalf("listed token %+v", it)
			}
		}
		msg := wantError(t, e.do("POST", "/api/v1/tokens", e.acme[admin], map[string]string{"name": "x", "role": "root"}), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, "viewer, operator or admin") {
			t.Fatalf("message %q", msg)
		}
		wantError(t, e.do("POST", "/api/v1/tokens", e.acme[admin], map[string]string{"role": "viewer"}), http.StatusBadRequest, "invalid")
		// Another org's token id is not found.
		gl, _ := e.reg.ListTokens(context.Background(), "globex")
		wantError(t, e.do("DELETE", "/api/v1/tokens/"+gl[0].ID, e.acme[admin], nil), http.StatusNotFound, "not_found")
		wantStatus(t, e.do("DELETE", "/api/v1/tokens/"+tok.ID, e.acme[admin], nil), http.StatusNoContent)
		wantError(t, e.do("DELETE", "/api/v1/tokens/"+tok.ID, e.acme[admin], nil), http.StatusNotFound, "not_found")
	})
}

func TestSites(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		op := e.acme[operator]
		r := e.do("POST", "/api/v1/sites", op, map[string]any{"name": "Plant South", "tags": map[string]string{"country": "PL"}})
		wantStatus(t, r, http.StatusCreated)
		var s registry.Site
		r.decode(t, &s)
		if s.ID != "plant-south" || s.Tags["country"] != "PL" {
			t.Fatalf("site %+v", s)
		}
		wantError(t, e.do("POST", "/api/v1/sites", op, map[string]any{"id": "plant-south", "name": "dup"}), http.StatusConflict, "conflict")
		wantStatus(t, e.do("GET", "/api/v1/sites/plant-south", e.acme[viewer], nil), http.StatusOK)
		wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "d1", "site": "plant-south"}), http.StatusCreated)
		wantError(t, e.do("DELETE", "/api/v1/sites/plant-south", op, nil), http.StatusConflict, "conflict")
		wantStatus(t, e.do("DELETE", "/api/v1/devices/d1", op, nil), http.StatusNoContent)
		wantStatus(t, e.do("DELETE", "/api/v1/sites/plant-south", op, nil), http.StatusNoContent)
		wantError(t, e.do("GET", "/api/v1/sites/plant-south", op, nil), http.StatusNotFound, "not_found")
	})
}

func TestDevices(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		op := e.acme[operator]
		r := e.do("POST", "/api/v1/devices", op, map[string]any{"id": "press-1", "site": "acme-plant", "template": "press", "tags": map[string]string{"line": "3"}})
		wantStatus(t, r, http.StatusCreated)
		var d struct {
			registry.Device
			Connected bool `json:"connected"`
		}
		r.decode(t, &d)
		if d.PrimaryKey == "" || d.SecondaryKey == "" || d.Auth != registry.AuthSAS || d.Org != "acme" {
			t.Fatalf("created %+v", d)
		}
		msg := wantError(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "press-1"}), http.StatusConflict, "conflict")
		if !strings.Contains(msg, "press-1") {
			t.Fatalf("conflict message %q", msg)
		}
		// Device ids are hub-wide: globex cannot take acme's id either.
		wantError(t, e.do("POST", "/api/v1/devices", e.globex[operator], map[string]string{"id": "press-1"}), http.StatusConflict, "conflict")
		wantError(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "bad id/with slash"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "x", "site": "nowhere"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "x", "auth": "password"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", "/api/v1/devices", op, map[string]string{}), http.StatusBadRequest, "invalid")

		for i := 2; i <= 5; i++ {
			body := map[string]any{"id": fmt.Sprintf("press-%d", i), "template": "press", "tags": map[string]string{"line": fmt.Sprint(i % 2)}}
			if i == 5 {
				body["template"] = "robot"
			}
			wantStatus(t, e.do("POST", "/api/v1/devices", op, body), http.StatusCreated)
		}
		e.pres.Connect("press-2")

		type page struct {
			Items []struct {
				registry.Device
				Connected bool `json:"connected"`
			}
			Next string
		}
		ids := func(p page) string {
			var out []string
			for _, it := range p.Items {
				out = append(out, it.ID)
				if it.PrimaryKey != "" || it.SecondaryKey != "" {
					t.Errorf("list shows keys of %s", it.ID)
				}
				if it.Connected != (it.ID == "press-2") {
					t.Errorf("%s connected=%v", it.ID, it.Connected)
				}
			}
			return strings.Join(out, ",")
		}
		var p page
		e.do("GET", "/api/v1/devices", e.acme[viewer], nil).decode(t, &p)
		if ids(p) != "press-1,press-2,press-3,press-4,press-5" || p.Next != "" {
			t.Fatalf("list %s next %q", ids(p), p.Next)
		}
		e.do("GET", "/api/v1/devices?template=press&tag=line:0", e.acme[viewer], nil).decode(t, &p)
		if ids(p) != "press-2,press-4" {
			t.Fatalf("filtered list %s", ids(p))
		}
		e.do("GET", "/api/v1/devices?site=acme-plant", e.acme[viewer], nil).decode(t, &p)
		if ids(p) != "press-1" {
			t.Fatalf("site list %s", ids(p))
		}
		e.do("GET", "/api/v1/devices?limit=2", e.acme[viewer], nil).decode(t, &p)
		if ids(p) != "press-1,press-2" || p.Next != "press-2" {
			t.Fatalf("page 1 %s next %q", ids(p), p.Next)
		}
		e.do("GET", "/api/v1/devices?limit=2&after="+p.Next, e.acme[viewer], nil).decode(t, &p)
		if ids(p) != "press-3,press-4" {
			t.Fatalf("page 2 %s", ids(p))
		}
		for _, q := range []string{"limit=0", "limit=1001", "limit=ten", "tag=noseparator"} {
			wantError(t, e.do("GET", "/api/v1/devices?"+q, e.acme[viewer], nil), http.StatusBadRequest, "invalid")
		}

		// Keys: operators see them, viewers do not.
		e.do("GET", "/api/v1/devices/press-1", op, nil).decode(t, &d)
		if d.PrimaryKey == "" {
			t.Fatal("operator does not see keys")
		}
		d.PrimaryKey, d.SecondaryKey = "", ""
		e.do("GET", "/api/v1/devices/press-1", e.acme[viewer], nil).decode(t, &d)
		if d.PrimaryKey != "" || d.SecondaryKey != "" {
			t.Fatal("viewer sees keys")
		}

		// Disabling drops the connection; enabling does not.
		r = e.do("PATCH", "/api/v1/devices/press-2", op, map[string]bool{"disabled": true})
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &d)
		if !d.Disabled || d.Connected {
			t.Fatalf("after disable %+v", d)
		}
		if got := e.pres.Dropped(); len(got) != 1 || got[0] != "press-2" {
			t.Fatalf("dropped %v", got)
		}
		r = e.do("PATCH", "/api/v1/devices/press-2", op, map[string]any{"disabled": false, "site": "acme-plant"})
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &d)
		if d.Disabled || d.Site != "acme-plant" {
			t.Fatalf("after enable %+v", d)
		}
		wantError(t, e.do("PATCH", "/api/v1/devices/press-2", op, map[string]any{}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("PATCH", "/api/v1/devices/press-2", op, map[string]any{"site": "nowhere"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("PATCH", "/api/v1/devices/nothing", op, map[string]any{"disabled": true}), http.StatusNotFound, "not_found")

		// Keys regenerate one at a time.
		before, _ := e.reg.GetDevice(context.Background(), "acme", "press-1")
		r = e.do("POST", "/api/v1/devices/press-1/keys/secondary/regenerate", op, nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &d)
		if d.SecondaryKey == before.SecondaryKey || d.PrimaryKey != before.PrimaryKey {
			t.Fatal("secondary key not regenerated alone")
		}
		wantError(t, e.do("POST", "/api/v1/devices/press-1/keys/tertiary/regenerate", op, nil), http.StatusBadRequest, "invalid")

		// Delete drops a connection too.
		e.pres.Connect("press-3")
		wantStatus(t, e.do("DELETE", "/api/v1/devices/press-3", op, nil), http.StatusNoContent)
		if e.pres.Connected("press-3") {
			t.Fatal("deleted device still connected")
		}
		wantError(t, e.do("GET", "/api/v1/devices/press-3", op, nil), http.StatusNotFound, "not_found")
	})
}

func TestDeviceCredentials(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		op := e.acme[operator]
		wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "press-1"}), http.StatusCreated)
		wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "cam-1", "auth": "x509_self", "thumbprint": strings.Repeat("ab", 32)}), http.StatusCreated)
		dev, _ := e.reg.GetDevice(context.Background(), "acme", "press-1")

		var tok struct {
			Device string
			Token  string
			Expiry time.Time
		}
		r := e.do("GET", "/api/v1/devices/press-1/token?ttl=24h&host=hub.example.com", op, nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &tok)
		want := fmt.Sprintf("SharedAccessSignature sr=hub.example.com%%2Fdevices%%2Fpress-1&sig=%s&se=%d", strings.ReplaceAll(dev.PrimaryKey[:8], "+", "%2B"), e.now.Add(24*time.Hour).Unix())
		if tok.Token != strings.ReplaceAll(want, "/", "%2F") || !tok.Expiry.Equal(e.now.Add(24*time.Hour)) || tok.Device != "press-1" {
			t.Fatalf("token %+v, want %s", tok, want)
		}
		// Defaults: one hour, the request's host, the primary key; seconds work as ttl.
		e.do("GET", "/api/v1/devices/press-1/token", op, nil).decode(t, &tok)
		if !tok.Expiry.Equal(e.now.Add(time.Hour)) || !strings.Contains(tok.Token, "sr=127.0.0.1%2Fdevices") {
			t.Fatalf("default token %+v", tok)
		}
		e.do("GET", "/api/v1/devices/press-1/token?ttl=90&key=secondary", op, nil).decode(t, &tok)
		if !tok.Expiry.Equal(e.now.Add(90*time.Second)) || !strings.Contains(tok.Token, "sig="+strings.ReplaceAll(strings.ReplaceAll(dev.SecondaryKey[:8], "+", "%2B"), "/", "%2F")) {
			t.Fatalf("secondary token %+v", tok)
		}
		for _, q := range []string{"ttl=-1h", "ttl=forever", "ttl=9000h", "key=third", "host=a/b"} {
			wantError(t, e.do("GET", "/api/v1/devices/press-1/token?"+q, op, nil), http.StatusBadRequest, "invalid")
		}
		msg := wantError(t, e.do("GET", "/api/v1/devices/cam-1/token", op, nil), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, "sas") {
			t.Fatalf("x509 token message %q", msg)
		}
		wantError(t, e.do("GET", "/api/v1/devices/press-1/token", e.acme[viewer], nil), http.StatusForbidden, "forbidden")

		var cs struct{ Device, ConnectionString string }
		e.do("GET", "/api/v1/devices/press-1/connection-string?host=hub.example.com", op, nil).decode(t, &cs)
		if cs.ConnectionString != "HostName=hub.example.com;DeviceId=press-1;SharedAccessKey="+dev.PrimaryKey {
			t.Fatalf("connection string %q", cs.ConnectionString)
		}
		e.do("GET", "/api/v1/devices/cam-1/connection-string?host=hub.example.com", op, nil).decode(t, &cs)
		if cs.ConnectionString != "HostName=hub.example.com;DeviceId=cam-1;x509=true" {
			t.Fatalf("x509 connection string %q", cs.ConnectionString)
		}
		wantError(t, e.do("GET", "/api/v1/devices/press-1/connection-string", e.acme[viewer], nil), http.StatusForbidden, "forbidden")
	})
}

func TestSASTokenNeedsSigner(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk, func(d *api.Deps) { d.SASToken = nil })
		wantStatus(t, e.do("POST", "/api/v1/devices", e.acme[operator], map[string]string{"id": "p"}), http.StatusCreated)
		wantError(t, e.do("GET", "/api/v1/devices/p/token", e.acme[operator], nil), http.StatusServiceUnavailable, "unavailable")
	})
}

// TestBadBodiesChangeNothing sends broken bodies to every write route and
// checks each is refused with a message naming the problem while the
// registry stays as it was.
func TestBadBodiesChangeNothing(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		op := e.acme[admin]
		wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "keep"}), http.StatusCreated)
		snapshot := func() string {
			ctx := context.Background()
			ds, _, _ := e.reg.ListDevices(ctx, "acme", registry.DeviceFilter{})
			ss, _ := e.reg.ListSites(ctx, "acme")
			ts, _ := e.reg.ListTokens(ctx, "acme")
			gs, _ := e.reg.ListEnrollmentGroups(ctx, "acme")
			cs, _ := e.reg.ListCACerts(ctx, "acme")
			os, _ := e.reg.ListOrgs(ctx, "operator")
			o, _ := e.reg.GetOrg(ctx, "acme")
			return fmt.Sprint(ds, ss, ts, gs, cs, os, o)
		}
		before := snapshot()
		type body struct{ name, body, want string }
		bodies := func(field string) []body {
			return []body{
				{"empty", "", "empty"},
				{"not json", "id=press", "not valid JSON"},
				{"truncated", `{"` + field + `":"x"`, "cut short"},
				{"array", `["x"]`, "JSON object"},
				{"unknown field", `{"colour":"red"}`, `unknown field "colour"`},
				{"wrong type", `{"` + field + `":[1]}`, `field "` + field + `" must be`},
				{"trailing data", `{} {}`, "more than one JSON value"},
				{"oversize", `{"` + field + `":"` + strings.Repeat("a", 1<<20) + `"}`, "larger than 1048576 bytes"},
			}
		}
		paths := []struct{ method, path, field string }{
			{"POST", "/api/v1/devices", "id"},
			{"PATCH", "/api/v1/devices/keep", "site"},
			{"POST", "/api/v1/sites", "name"},
			{"POST", "/api/v1/tokens", "role"},
			{"POST", "/api/v1/enrollment-groups", "tags"},
			{"POST", "/api/v1/ca-certs", "autoRegister"},
			{"PATCH", "/api/v1/orgs/acme", "retentionDays"},
			{"POST", "/api/v1/orgs", "name"},
		}
		for _, p := range paths {
			for _, b := range bodies(p.field) {
				t.Run(p.method+p.path+"/"+b.name, func(t *testing.T) {
					tok := op
					if strings.Contains(p.path, "orgs") {
						tok = e.opAdmin
					}
					msg := wantError(t, e.do(p.method, p.path, tok, b.body), http.StatusBadRequest, "invalid")
					if !strings.Contains(msg, b.want) {
						t.Fatalf("message %q does not say %q", msg, b.want)
					}
				})
			}
		}
		wantStatus(t, e.do("POST", "/api/v1/orgs", e.opAdmin, `{"name":"x","parent":"acme"}`), http.StatusBadRequest)
		if after := snapshot(); after != before {
			t.Fatalf("refused bodies changed the registry:\nbefore %s\nafter  %s", before, after)
		}
	})
}

func TestImport(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		op := e.acme[operator]
		wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "exists"}), http.StatusCreated)
		csv := "id,site,template,tags,auth,thumbprint\n" +
			"imp-1,acme-plant,press,line=3;cell=b,sas,\n" +
			"exists,,,,,\n" +
			"imp-2,,,broken-tag,,\n" +
			"imp-3,nowhere,,,,\n" +
			"imp-4,,robot,,,\n"
		r := e.do("POST", "/api/v1/devices/import", op, csv, "Content-Type", "text/csv")
		wantStatus(t, r, http.StatusOK)
		var rep registry.ImportReport
		r.decode(t, &rep)
		if rep.Created != 2 || rep.Failed != 3 || len(rep.Rows) != 5 {
			t.Fatalf("report %+v", rep)
		}
		for i, want := range []struct {
			line int
			id   string
			fail bool
		}{{2, "imp-1", false}, {3, "exists", true}, {4, "imp-2", true}, {5, "imp-3", true}, {6, "imp-4", false}} {
			row := rep.Rows[i]
			if row.Line != want.line || row.ID != want.id || (row.Error != "") != want.fail {
				t.Errorf("row %d: %+v, want %+v", i, row, want)
			}
		}
		d, err := e.reg.GetDevice(context.Background(), "acme", "imp-1")
		if err != nil || d.Tags["cell"] != "b" || d.Site != "acme-plant" {
			t.Fatalf("imported %+v %v", d, err)
		}
		if _, err := e.reg.GetDevice(context.Background(), "acme", "imp-2"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatal("a failed row created a device")
		}

		wantError(t, e.do("POST", "/api/v1/devices/import", op, csv, "Content-Type", "application/json"), http.StatusUnsupportedMediaType, "unsupported_media_type")
		wantError(t, e.do("POST", "/api/v1/devices/import", op, "", "Content-Type", "text/csv"), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", "/api/v1/devices/import", op, "name,colour\nx,red\n", "Content-Type", "text/csv"), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", "/api/v1/devices/import", e.acme[viewer], csv, "Content-Type", "text/csv"), http.StatusForbidden, "forbidden")

		// Over 64 MiB: refused whole, even though the first rows are fine.
		var b strings.Builder
		b.WriteString("id,site,template,tags,auth,thumbprint\n")
		for i := 0; b.Len() <= 64<<20; i++ {
			fmt.Fprintf(&b, "big-%09d,,press,line=1;padding=%s,,\n", i, strings.Repeat("x", 200))
		}
		msg := wantError(t, e.do("POST", "/api/v1/devices/import", op, b.String(), "Content-Type", "text/csv"), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, "64 MiB") {
			t.Fatalf("message %q", msg)
		}
		if _, err := e.reg.GetDevice(context.Background(), "acme", "big-000000000"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatal("an oversize import created devices")
		}
	})
}

func TestTelemetry(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		wantStatus(t, e.do("POST", "/api/v1/devices", e.acme[operator], map[string]string{"id": "press-1"}), http.StatusCreated)
		base := e.now.Add(-30 * time.Minute)
		for i := 0; i < 6; i++ {
			at := base.Add(time.Duration(i) * 10 * time.Second)
			e.tel.Add("acme", "press-1", "temperature", at, float64(70+i))
			e.tel.Add("acme", "press-1", "pressure", at, float64(2*i))
		}
		e.tel.Add("acme", "press-1", "mode", base, "auto")
		// The same device name in another org holds other data.
		e.tel.Add("globex", "press-1", "temperature", base, 999.0)

		type body struct {
			Device   string
			From, To int64
			Step     int64
			Agg      string
			Series   []api.FieldSeries
		}
		var b body
		q := fmt.Sprintf("names=temperature&from=%s&to=%d&step=30s&agg=max", base.Format(time.RFC3339), base.Add(time.Minute).UnixMilli())
		r := e.do("GET", "/api/v1/devices/press-1/telemetry?"+q, e.acme[viewer], nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &b)
		if b.Device != "press-1" || b.Step != 30000 || b.Agg != "max" || b.From != base.UnixMilli() || b.To != base.Add(time.Minute).UnixMilli() {
			t.Fatalf("body %+v", b)
		}
		if len(b.Series) != 1 || b.Series[0].Field != "temperature" || fmt.Sprint(b.Series[0].Points) != fmt.Sprintf("[{%d 72} {%d 75}]", base.UnixMilli(), base.Add(30*time.Second).UnixMilli()) {
			t.Fatalf("series %+v", b.Series)
		}
		call := e.tel.LastRange
		if call.Org != "acme" || call.Device != "press-1" || call.Step != 30*time.Second || call.Agg != "max" || strings.Join(call.Fields, ",") != "temperature" {
			t.Fatalf("store asked %+v", call)
		}
		// Defaults: the last hour, about 250 points, avg, every field.
		e.do("GET", "/api/v1/devices/press-1/telemetry", e.acme[viewer], nil).decode(t, &b)
		call = e.tel.LastRange
		if !call.To.Equal(e.now) || !call.From.Equal(e.now.Add(-time.Hour)) || call.Step != 15*time.Second || call.Agg != "avg" || len(call.Fields) != 0 {
			t.Fatalf("defaults asked %+v", call)
		}
		if len(b.Series) != 2 {
			t.Fatalf("default series %+v", b.Series)
		}
		// Step in seconds.
		e.do("GET", "/api/v1/devices/press-1/telemetry?step=60&names=pressure,temperature", e.acme[viewer], nil).decode(t, &b)
		if e.tel.LastRange.Step != time.Minute || strings.Join(e.tel.LastRange.Fields, ",") != "pressure,temperature" {
			t.Fatalf("asked %+v", e.tel.LastRange)
		}
		for q, want := range map[string]string{
			"from=yesterday": `"from"`,
			"to=2026-13-01":  `"to"`,
			"from=2026-03-02T12:00:00Z&to=2026-03-02T11:00:00Z": "before",
			"step=0":     `"step"`,
			"step=fast":  `"step"`,
			"step=1ms":   "points per field",
			"agg=median": `"agg"`,
			"org=globex": "",
		} {
			r := e.do("GET", "/api/v1/devices/press-1/telemetry?"+q, e.acme[viewer], nil)
			if want == "" {
				wantError(t, r, http.StatusNotFound, "not_found")
				continue
			}
			if msg := wantError(t, r, http.StatusBadRequest, "invalid"); !strings.Contains(msg, want) {
				t.Errorf("%s: message %q does not say %s", q, msg, want)
			}
		}
		wantError(t, e.do("GET", "/api/v1/devices/nothing/telemetry", e.acme[viewer], nil), http.StatusNotFound, "not_found")

		var l struct {
			Device string
			Values []api.LatestValue
		}
		e.do("GET", "/api/v1/devices/press-1/latest", e.acme[viewer], nil).decode(t, &l)
		if fmt.Sprint(l.Values) != fmt.Sprintf("[{mode %d auto} {pressure %d 10} {temperature %d 75}]", base.UnixMilli(), base.Add(50*time.Second).UnixMilli(), base.Add(50*time.Second).UnixMilli()) {
			t.Fatalf("latest %+v", l.Values)
		}
		wantError(t, e.do("GET", "/api/v1/devices/nothing/latest", e.acme[viewer], nil), http.StatusNotFound, "not_found")
	})
}

func TestTelemetryUnavailable(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk, func(d *api.Deps) { d.Telemetry = nil })
		wantStatus(t, e.do("POST", "/api/v1/devices", e.acme[operator], map[string]string{"id": "p"}), http.StatusCreated)
		wantError(t, e.do("GET", "/api/v1/devices/p/telemetry", e.acme[viewer], nil), http.StatusServiceUnavailable, "unavailable")
		wantError(t, e.do("GET", "/api/v1/devices/p/latest", e.acme[viewer], nil), http.StatusServiceUnavailable, "unavailable")
	})
}

func selfSigned(t *testing.T, isCA bool) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plant CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestProvisioning(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		adm := e.acme[admin]
		r := e.do("POST", "/api/v1/enrollment-groups", adm, map[string]any{"id": "presses", "site": "acme-plant", "template": "press"})
		wantStatus(t, r, http.StatusCreated)
		var g registry.EnrollmentGroup
		r.decode(t, &g)
		if g.PrimaryKey == "" || g.Site != "acme-plant" {
			t.Fatalf("group %+v", g)
		}
		wantError(t, e.do("POST", "/api/v1/enrollment-groups", adm, map[string]any{"id": "presses"}), http.StatusConflict, "conflict")
		wantError(t, e.do("POST", "/api/v1/enrollment-groups", e.acme[operator], map[string]any{"id": "g2"}), http.StatusForbidden, "forbidden")
		// Group keys derive every member's key: admins only.
		g = registry.EnrollmentGroup{}
		e.do("GET", "/api/v1/enrollment-groups/presses", e.acme[viewer], nil).decode(t, &g)
		if g.PrimaryKey != "" || g.SecondaryKey != "" {
			t.Fatal("viewer sees group keys")
		}
		var gl struct{ Items []registry.EnrollmentGroup }
		e.do("GET", "/api/v1/enrollment-groups", e.acme[operator], nil).decode(t, &gl)
		if len(gl.Items) != 1 || gl.Items[0].PrimaryKey != "" {
			t.Fatalf("operator list %+v", gl.Items)
		}
		e.do("GET", "/api/v1/enrollment-groups/presses", adm, nil).decode(t, &g)
		if g.PrimaryKey == "" {
			t.Fatal("admin does not see group keys")
		}
		wantStatus(t, e.do("DELETE", "/api/v1/enrollment-groups/presses", adm, nil), http.StatusNoContent)
		wantError(t, e.do("GET", "/api/v1/enrollment-groups/presses", adm, nil), http.StatusNotFound, "not_found")

		r = e.do("POST", "/api/v1/ca-certs", adm, map[string]any{"id": "plant-ca", "name": "Plant CA", "pem": selfSigned(t, true), "autoRegister": true})
		wantStatus(t, r, http.StatusCreated)
		var c registry.CACert
		r.decode(t, &c)
		if len(c.Thumbprint) != 64 || !c.AutoRegister {
			t.Fatalf("ca %+v", c)
		}
		msg := wantError(t, e.do("POST", "/api/v1/ca-certs", adm, map[string]any{"name": "leaf", "pem": selfSigned(t, false)}), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, "not a CA") {
			t.Fatalf("message %q", msg)
		}
		wantError(t, e.do("POST", "/api/v1/ca-certs", adm, map[string]any{"name": "nothing"}), http.StatusBadRequest, "invalid")
		var cl struct{ Items []registry.CACert }
		e.do("GET", "/api/v1/ca-certs", e.acme[viewer], nil).decode(t, &cl)
		if len(cl.Items) != 1 {
			t.Fatalf("ca list %+v", cl.Items)
		}
		e.do("GET", "/api/v1/ca-certs", e.globex[admin], nil).decode(t, &cl)
		if len(cl.Items) != 0 {
			t.Fatal("globex sees acme's CA")
		}
		wantError(t, e.do("DELETE", "/api/v1/ca-certs/plant-ca", e.globex[admin], nil), http.StatusNotFound, "not_found")
		wantStatus(t, e.do("DELETE", "/api/v1/ca-certs/plant-ca", adm, nil), http.StatusNoContent)
	})
}

func TestMounts(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		// Prometheus: authenticated, prefix stripped, scoped to the acting org.
		wantError(t, e.do("GET", "/prometheus/api/v1/query?query=up", "", nil), http.StatusUnauthorized, "unauthorized")
		wantStatus(t, e.do("GET", "/prometheus/api/v1/query?query=up", e.acme[viewer], nil), http.StatusOK)
		if c := <-e.promSeen; c.path != "/api/v1/query" || c.org != "acme" {
			t.Fatalf("prometheus handler saw %+v", c)
		}
		wantStatus(t, e.do("POST", "/prometheus/api/v1/query_range", e.opViewer, nil, api.OrgHeader, "globex"), http.StatusOK)
		if c := <-e.promSeen; c.path != "/api/v1/query_range" || c.org != "globex" {
			t.Fatalf("prometheus handler saw %+v", c)
		}
		wantError(t, e.do("GET", "/prometheus/api/v1/query?query=up&org=globex", e.acme[viewer], nil), http.StatusNotFound, "not_found")

		// MQTT over WebSocket needs no API token.
		r := e.do("GET", "/mqtt", "", nil)
		if r.status != http.StatusBadRequest || !strings.HasPrefix(string(r.body), "mqtt endpoint") {
			t.Fatalf("mqtt: %d %s", r.status, r.body)
		}

		// /metrics counts requests by route pattern, not by path. It
		// names every organization: only operator-organization tokens.
		wantError(t, e.do("GET", "/metrics", "", nil), http.StatusUnauthorized, "unauthorized")
		wantError(t, e.do("GET", "/metrics", e.acme[admin], nil), http.StatusForbidden, "forbidden")
		r = e.do("GET", "/metrics", e.opViewer, nil)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), `shopfloor_api_requests_total{code="200",method="GET",route="/prometheus/"} 1`) ||
			!strings.Contains(string(r.body), `shopfloor_api_requests_total{code="401",method="GET",route="/prometheus/"} 1`) {
			t.Fatalf("metrics:\n%s", r.body)
		}
	})
}

func TestUnmatched(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		msg := wantError(t, e.do("GET", "/api/v1/gadgets", e.acme[viewer], nil), http.StatusNotFound, "not_found")
		if !strings.Contains(msg, "/api/openapi.json") {
			t.Fatalf("message %q", msg)
		}
		r := e.do("PUT", "/api/v1/devices/x", e.acme[viewer], nil)
		wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
		if allow := r.header.Get("Allow"); allow != "GET, PATCH, DELETE" {
			t.Fatalf("Allow %q", allow)
		}
	})
}

// failing is a registry whose storage broke.
type failing struct{ api.Registry }

func (failing) ListSites(context.Context, string) ([]registry.Site, error) {
	return nil, errors.New("database is locked: /var/lib/shopfloor/registry.db")
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk, func(d *api.Deps) { d.Registry = failing{d.Registry} })
		r := e.do("GET", "/api/v1/sites", e.acme[viewer], nil)
		msg := wantError(t, r, http.StatusInternalServerError, "internal")
		if strings.Contains(msg, "database") || !strings.Contains(msg, r.header.Get("X-Request-Id")) {
			t.Fatalf("message %q (request id %s)", msg, r.header.Get("X-Request-Id"))
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRequestLog(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEnv(t, func(*testing.T) hubRegistry { return apitest.NewRegistry() }, func(d *api.Deps) { d.Logger = logger })
	r := e.do("GET", "/api/v1/sites?org=globex", e.opViewer, nil)
	wantStatus(t, r, http.StatusOK)
	e.do("GET", "/healthz", "", nil)
	log := buf.String()
	want := "method=GET path=/api/v1/sites status=200"
	if !strings.Contains(log, want) || !strings.Contains(log, "org=globex") || !strings.Contains(log, "request_id="+r.header.Get("X-Request-Id")) {
		t.Fatalf("log lacks the request:\n%s", log)
	}
	if strings.Contains(log, "path=/healthz") {
		t.Fatalf("health probes logged at info:\n%s", log)
	}
}

// The token route issues no token the gateway would refuse (--max-token-ttl).
func TestSASTokenWithinMaxTokenTTL(t *testing.T) {
	e := newEnv(t, func(*testing.T) hubRegistry { return apitest.NewRegistry() }, func(d *api.Deps) { d.MaxTokenTTL = 30 * time.Minute })
	op := e.acme[operator]
	wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]string{"id": "p"}), http.StatusCreated)
	msg := wantError(t, e.do("GET", "/api/v1/devices/p/token?ttl=1h", op, nil), http.StatusBadRequest, "invalid")
	if !strings.Contains(msg, "30m0s") {
		t.Fatalf("message %q does not name the limit", msg)
	}
	var tok struct{ Expiry time.Time }
	e.do("GET", "/api/v1/devices/p/token", op, nil).decode(t, &tok)
	if !tok.Expiry.Equal(e.now.Add(30 * time.Minute)) {
		t.Fatalf("default token expires %s, want the 30 min limit", tok.Expiry)
	}
}
