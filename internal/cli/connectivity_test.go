package cli_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/cli"
	"github.com/shopfloor/shopfloor/internal/connectivity"
)

// connHub serves the API with the real registry and connectivity service,
// both on SQLite, and returns its URL and an admin token.
func connHub(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	st, reg, secret := testRegistry(t)
	svc, err := connectivity.New(ctx, connectivity.Options{DB: st.DB(), Dialect: connectivity.SQLite})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	srv, err := api.New(api.Deps{Registry: reg, Connectivity: svc})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, secret
}

func TestSIMCommands(t *testing.T) {
	isolate(t)
	url, token := connHub(t)
	t.Setenv("SHOPFLOOR_URL", url)
	t.Setenv("SHOPFLOOR_TOKEN", token)

	csvPath := filepath.Join(t.TempDir(), "sims.csv")
	data := "iccid,imsi,label\n8944500000000000014,001010000000001,agv 1\n8944500000000000015,001010000000002,typo\n8944500000000000022,001010000000003,agv 3\n"
	if err := os.WriteFile(csvPath, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, err := run(t, "sim", "import", csvPath, "--chunk", "2")
	if err == nil || !strings.Contains(out, "created 2 SIMs, 1 row failed") || !strings.Contains(out, "3 ") || !strings.Contains(errs, "importing SIMs") {
		t.Fatalf("import: err %v\nstdout %s\nstderr %s", err, out, errs)
	}
	if !errors.Is(err, cli.ErrRowsFailed) {
		t.Fatalf("import error %v is not ErrRowsFailed", err)
	}
	if !strings.Contains(out, "Luhn") {
		t.Fatalf("the failed row's reason is missing: %s", out)
	}
	ok(t, "sim", "state", "8944500000000000014", "activated")
	_, _, err = run(t, "sim", "state", "8944500000000000014", "INVENTORY")
	if err == nil || !strings.Contains(err.Error(), "cannot go from ACTIVATED to INVENTORY") {
		t.Fatalf("illegal transition: %v", err)
	}
	out = ok(t, "sim", "list", "--state", "ACTIVATED")
	if !strings.Contains(out, "8944500000000000014") || strings.Contains(out, "8944500000000000022") {
		t.Fatalf("list: %s", out)
	}
	var s map[string]any
	okJSON(t, &s, "sim", "get", "8944500000000000014")
	if s["state"] != "ACTIVATED" || s["usage"] == nil {
		t.Fatalf("get: %v", s)
	}
	out = ok(t, "sim", "audit", "8944500000000000014")
	if !strings.Contains(out, "INVENTORY") || !strings.Contains(out, "token:") {
		t.Fatalf("audit: %s", out)
	}
}

// The core's name rule is checked when a slice is applied from the CLI,
// keys can be replaced, and the core's status is shown.
func TestCoreRulesAndKeysFromTheCLI(t *testing.T) {
	isolate(t)
	url, token := connHub(t)
	t.Setenv("SHOPFLOOR_URL", url)
	t.Setenv("SHOPFLOOR_TOKEN", token)

	path := filepath.Join(t.TempDir(), "slice.json")
	if err := os.WriteFile(path, []byte(`{"name":"3d-printers","site":"plant","sst":1,"sd":"1","defaultBehavior":"ALLOW-ALL"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "slice", "apply", "3d-printers", "-f", path)
	if err == nil || !strings.Contains(err.Error(), connectivity.CoreNameRule) {
		t.Fatalf("a slice name led by a digit: %v", err)
	}
	ok(t, "sim", "create", "8944500000000000014", "--imsi", "001010000000001")
	_, _, err = run(t, "sim", "keys", "8944500000000000014", "--ki", "not-hex")
	if err == nil || !strings.Contains(err.Error(), "32 hex digits") {
		t.Fatalf("a bad Ki: %v", err)
	}
	ok(t, "sim", "keys", "8944500000000000014", "--ki", "465B5CE8B199B49FAA5F0A2EE238A6BC", "--opc", "D4416644F6154936193433DD20A0ACE0")
	if out := ok(t, "core", "status"); !strings.Contains(out, "link: not_configured") {
		t.Fatalf("core status: %s", out)
	}
}
