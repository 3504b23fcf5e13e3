package api_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/api/apitest"
	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/registry"
)

func withAudit(t *testing.T) (envOption, *audit.Service) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := audit.New(context.Background(), audit.Config{DB: db, Driver: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	return func(d *api.Deps) { d.Audit = svc }, svc
}

// TestAuditRecordsAPIChanges: who and through what, keys left out of a key
// regeneration, refused changes not recorded, the operator's override
// recorded in the customer's log.
func TestAuditRecordsAPIChanges(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		opt, svc := withAudit(t)
		e := newEnv(t, mk, opt)
		op := e.acme[registry.RoleOperator]
		var dev struct{ PrimaryKey, SecondaryKey string }
		r := e.do("POST", "/api/v1/devices", op, map[string]any{"id": "press-7"}, "User-Agent", api.CLIUserAgent+"/1.0")
		if r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		r.decode(t, &dev)
		r = e.do("POST", "/api/v1/devices/press-7/keys/primary/regenerate", op, nil)
		if r.status != 200 {
			t.Fatalf("regenerate: %d %s", r.status, r.body)
		}
		var regen struct{ PrimaryKey string }
		r.decode(t, &regen)
		// Refused: a viewer, and a device that exists.
		if r := e.do("DELETE", "/api/v1/devices/press-7", e.acme[registry.RoleViewer], nil); r.status != 403 {
			t.Fatalf("viewer delete: %d", r.status)
		}
		if r := e.do("POST", "/api/v1/devices", op, map[string]any{"id": "press-7"}); r.status != 409 {
			t.Fatalf("duplicate: %d", r.status)
		}
		// The operator organization acts on acme.
		if r := e.do("PATCH", "/api/v1/devices/press-7", e.opAdmin, map[string]any{"disabled": true}, api.OrgHeader, "acme"); r.status != 200 {
			t.Fatalf("operator patch: %d %s", r.status, r.body)
		}

		r = e.do("GET", "/api/v1/audit?kind=device&object=press-7", e.acme[registry.RoleViewer], nil)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		for _, secret := range []string{dev.PrimaryKey, dev.SecondaryKey, regen.PrimaryKey} {
			if strings.Contains(string(r.body), secret) {
				t.Fatalf("a device key is in the audit log: %s", r.body)
			}
		}
		var p audit.Page
		r.decode(t, &p)
		if len(p.Items) != 3 {
			t.Fatalf("%d entries, want create, regenerate and update: %s", len(p.Items), r.body)
		}
		c, g, u := p.Items[0], p.Items[1], p.Items[2]
		if c.Action != "createDevice" || c.Via != audit.ViaCLI || !strings.HasPrefix(c.Actor, "token:") || c.ActorOrg != "acme" {
			t.Errorf("create: %+v", c)
		}
		if g.Action != "regenerateDeviceKey" || g.Via != audit.ViaAPI || !strings.Contains(string(g.Before), `"primaryKey":"[redacted]"`) ||
			!strings.Contains(string(g.After), `"primaryKey":"[redacted]"`) {
			t.Errorf("regenerate: %+v before %s after %s", g, g.Before, g.After)
		}
		if u.Action != "updateDevice" || u.Org != "acme" || u.ActorOrg != "operator" ||
			!strings.Contains(string(u.Before), `"disabled":false`) || !strings.Contains(string(u.After), `"disabled":true`) {
			t.Errorf("operator's update: %+v before %s after %s", u, u.Before, u.After)
		}
		// Globex reads none of it.
		if got, _ := svc.List(context.Background(), "globex", audit.Filter{}); len(got.Items) != 0 {
			t.Fatalf("globex's log: %+v", got.Items)
		}
		// The NDJSON export, as documented.
		for _, path := range []string{"/api/v1/audit/export?kind=device", "/api/v1/audit?format=ndjson&kind=device"} {
			r = e.do("GET", path, e.acme[registry.RoleViewer], nil)
			if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" || strings.Count(string(r.body), "\n") != 3 {
				t.Fatalf("%s: %d %s\n%s", path, r.status, r.header.Get("Content-Type"), r.body)
			}
		}
		if r := e.do("GET", "/api/v1/audit?after=bogus!", e.acme[registry.RoleViewer], nil); r.status != 400 {
			t.Fatalf("invalid cursor: %d", r.status)
		}
	})
}

func TestAuditNotEnabled(t *testing.T) {
	e := newEnv(t, func(*testing.T) hubRegistry { return apitest.NewRegistry() })
	if r := e.do("GET", "/api/v1/audit", e.acme[registry.RoleViewer], nil); r.status != 503 {
		t.Fatalf("without an audit log: %d %s", r.status, r.body)
	}
	// Changes still work.
	if r := e.do("POST", "/api/v1/devices", e.acme[registry.RoleOperator], map[string]any{"id": "press-8"}); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
}
