package cli_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// auditHub serves the API on the real registry with the audit log on.
func auditHub(t *testing.T) (url string, reg *registry.Service, admin string) {
	t.Helper()
	st, reg, admin := testRegistry(t)
	_ = st
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log, err := audit.New(context.Background(), audit.Config{DB: db, Driver: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Deps{Registry: reg, Audit: log})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, reg, admin
}

func TestAuditCommands(t *testing.T) {
	isolate(t)
	url, _, admin := auditHub(t)
	t.Setenv("SHOPFLOOR_URL", url)
	t.Setenv("SHOPFLOOR_TOKEN", admin)

	ok(t, "org", "create", "ACME", "--id", "acme")
	var tok registry.Token
	okJSON(t, &tok, "token", "create", "acme admin", "--role", "admin", "--org", "acme")
	out := ok(t, "device", "create", "press-1", "--org", "acme")
	ok(t, "device", "update", "press-1", "--tag", "line=2", "--org", "acme")

	// The operator reads acme's log with --org; acme's own token reads it
	// without.
	var page struct {
		Items []struct {
			Actor, Via, Kind, Object, Action string
			After                            json.RawMessage
		} `json:"items"`
		Next string `json:"next"`
	}
	okJSON(t, &page, "audit", "list", "--org", "acme", "--kind", "device")
	if len(page.Items) != 2 || page.Items[0].Action != "createDevice" || page.Items[1].Action != "updateDevice" {
		t.Fatalf("acme's device changes: %+v", page.Items)
	}
	for _, e := range page.Items {
		if e.Via != "cli" || e.Object != "press-1" || !strings.HasPrefix(e.Actor, "token:") {
			t.Errorf("entry %+v", e)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "primary key:"); ok && strings.Contains(string(page.Items[0].After), strings.TrimSpace(k)) {
			t.Fatalf("the device key is in the audit log: %s", page.Items[0].After)
		}
	}
	t.Setenv("SHOPFLOOR_TOKEN", tok.Secret)
	table := ok(t, "audit", "list", "--action", "updateDevice")
	if !strings.Contains(table, "ACTION") || !strings.Contains(table, "updateDevice") || strings.Contains(table, "createDevice") {
		t.Fatalf("audit list --action updateDevice:\n%s", table)
	}
	// One page at a time tells how to go on.
	_, errs, err := run(t, "audit", "list", "--limit", "1")
	if err != nil || !strings.Contains(errs, "--after ") {
		t.Fatalf("one page: %v, stderr %q", err, errs)
	}
	if _, _, err := run(t, "audit", "list", "--after", "no such cursor"); err == nil || !strings.Contains(err.Error(), "cursor") {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := run(t, "audit", "list", "--since", "last tuesday"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Fatalf("bad --since: %v", err)
	}

	// Export: NDJSON, to stdout or a file.
	nd := ok(t, "audit", "export", "--kind", "device", "--since", "1h")
	lines := strings.Split(strings.TrimSpace(nd), "\n")
	if len(lines) != 2 {
		t.Fatalf("export: %d lines\n%s", len(lines), nd)
	}
	for _, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil || e["kind"] != "device" {
			t.Fatalf("export line %q: %v", l, err)
		}
	}
	file := filepath.Join(t.TempDir(), "audit.ndjson")
	ok(t, "audit", "export", "--file", file)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 3 { // with the operator's token creation
		t.Fatalf("export file: %d lines\n%s", n, b)
	}
}
