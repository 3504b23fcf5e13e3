package cli_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries fails when the command line links what doc.go
// forbids: it talks to the hub over HTTP, so of Shopfloor's packages it
// links only internal/registry and internal/quota (their JSON types).
func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/shopfloor/shopfloor/internal/cli", dep == "github.com/shopfloor/shopfloor/internal/registry",
			dep == "github.com/shopfloor/shopfloor/internal/quota":
		case strings.HasPrefix(dep, "github.com/shopfloor/shopfloor/"):
			t.Errorf("internal/cli links %s; see doc.go for what it may import", dep)
		case strings.HasPrefix(dep, "github.com/prometheus/prometheus/"), strings.HasPrefix(dep, "github.com/nats-io/"),
			strings.HasPrefix(dep, "modernc.org/sqlite"), strings.HasPrefix(dep, "github.com/mochi-mqtt/"):
			t.Errorf("internal/cli links the server-side module package %s", dep)
		}
	}
}
