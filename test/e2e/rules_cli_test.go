package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/cli"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

func shopfloor(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := cli.NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// The rule, alert and export commands work against a real hub.
func TestRuleAlertExportCLI(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	t.Setenv("SHOPFLOOR_CONFIG", t.TempDir()+"/none.yaml")
	t.Setenv("SHOPFLOOR_URL", hub.URL)
	t.Setenv("SHOPFLOOR_TOKEN", hub.Token)
	t.Setenv("SHOPFLOOR_ORG", "")

	if out, err := shopfloor(t, "rule", "create", "bad", "--condition", "temperature >"); err == nil || !strings.Contains(err.Error()+out, "column") {
		t.Fatalf("bad condition: %v\n%s", err, out)
	}
	out, err := shopfloor(t, "-o", "json", "rule", "create", "hot", "--condition", "temperature > 80", "--severity", "critical")
	if err != nil || !strings.Contains(out, `"severity": "critical"`) {
		t.Fatalf("rule create: %v\n%s", err, out)
	}
	out, err = shopfloor(t, "rule", "list")
	if err != nil || !strings.Contains(out, "hot") || !strings.Contains(out, "temperature > 80") {
		t.Fatalf("rule list: %v\n%s", err, out)
	}
	dev := hub.API().CreateDevice(t, "press-9", nil)
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	var id string
	testutil.Eventually(t, 20*time.Second, "an alert in the CLI", func() bool {
		testutil.Publish(t, c, dev.ID, map[string]any{"temperature": 95})
		out, err := shopfloor(t, "alert", "list", "--state", "open")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 {
			return false
		}
		id = strings.Fields(lines[1])[0]
		return true
	})
	if out, err := shopfloor(t, "alert", "ack", id, "--note", "on it"); err != nil || !strings.Contains(out, "acknowledged") {
		t.Fatalf("alert ack: %v\n%s", err, out)
	}
	if _, err := shopfloor(t, "alert", "note", id, "valve replaced"); err != nil {
		t.Fatal(err)
	}
	if out, err := shopfloor(t, "alert", "get", id); err != nil || !strings.Contains(out, "valve replaced") {
		t.Fatalf("alert get: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "alert", "resolve", id); err != nil || !strings.Contains(out, "resolved") {
		t.Fatalf("alert resolve: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "export", "create", "feed", "--type", "nats", "--target", "line3"); err != nil || !strings.Contains(out, "feed") {
		t.Fatalf("export create: %v\n%s", err, out)
	}
	if out, err := shopfloor(t, "export", "list"); err != nil || !strings.Contains(out, "line3") {
		t.Fatalf("export list: %v\n%s", err, out)
	}
}
