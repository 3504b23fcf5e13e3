package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// The template and job commands work against a real hub.
func TestTemplateJobCLI(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	t.Setenv("SHOPFLOOR_CONFIG", t.TempDir()+"/none.yaml")
	t.Setenv("SHOPFLOOR_URL", hub.URL)
	t.Setenv("SHOPFLOOR_TOKEN", hub.Token)
	t.Setenv("SHOPFLOOR_ORG", "")
	dir := t.TempDir()
	b, _ := json.Marshal(pressTemplate)
	file := filepath.Join(dir, "press.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}

	if out, err := shopfloor(t, "template", "create", "--file", file); err != nil || !strings.Contains(out, "press") {
		t.Fatalf("template create: %v\n%s", err, out)
	}
	out, err := shopfloor(t, "template", "get", "press")
	if err != nil || !strings.Contains(out, "temperature") || !strings.Contains(out, "-40..150") {
		t.Fatalf("template get: %v\n%s", err, out)
	}
	exported := filepath.Join(dir, "exported.json")
	if out, err := shopfloor(t, "template", "export", "press", "--file", exported); err != nil {
		t.Fatalf("template export: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "template", "import", exported); err == nil || !strings.Contains(err.Error()+out, "exists") {
		t.Fatalf("import over an existing template: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "template", "delete", "press"); err != nil {
		t.Fatalf("template delete: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "template", "import", exported); err != nil || !strings.Contains(out, "press") {
		t.Fatalf("template import: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "template", "list"); err != nil || !strings.Contains(out, "press") {
		t.Fatalf("template list: %v\n%s", err, out)
	}

	for _, id := range []string{"press-1", "press-2", "press-3"} {
		hub.API().CreateDevice(t, id, map[string]any{"template": "press"})
	}
	out, err = shopfloor(t, "-o", "json", "job", "create", "--desired", `{"setpoint":70}`, "--template", "press", "--rate", "50")
	if err != nil {
		t.Fatalf("job create: %v\n%s", err, out)
	}
	var j struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.ID == "" {
		t.Fatalf("job create output %q: %v", out, err)
	}
	out, err = shopfloor(t, "job", "get", j.ID, "--watch", "--every", "50ms")
	if err != nil || !strings.Contains(out, "[##############################] 3/3 completed (succeeded 3, failed 0, cancelled 0)") {
		t.Fatalf("job get --watch: %v\n%s", err, out)
	}
	out, err = shopfloor(t, "job", "get", j.ID, "--devices")
	if err != nil || strings.Count(out, "succeeded") != 3 {
		t.Fatalf("job get --devices: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "job", "list"); err != nil || !strings.Contains(out, j.ID) || !strings.Contains(out, "3/3") {
		t.Fatalf("job list: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "job", "cancel", j.ID); err == nil || !strings.Contains(err.Error()+out, "completed") {
		t.Fatalf("cancel a finished job: %v\n%s", err, out)
	}
}
