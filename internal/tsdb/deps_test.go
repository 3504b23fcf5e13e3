package tsdb

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries fails when the package links what doc.go forbids.
func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("SKIPPING import boundary check: go list failed: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{
			"github.com/prometheus/prometheus/web", "github.com/prometheus/prometheus/tsdb/wlog",
			"github.com/aws/", "github.com/Azure/", "cloud.google.com/", "google.golang.org/api",
			"github.com/shopfloor/shopfloor/internal/",
		} {
			if strings.HasPrefix(dep, bad) && dep != "github.com/shopfloor/shopfloor/internal/tsdb" && dep != "github.com/shopfloor/shopfloor/internal/sqldb" {
				t.Errorf("internal/tsdb links %s; see doc.go for what it must not import", dep)
			}
		}
		if dep == "github.com/prometheus/prometheus/tsdb" {
			t.Errorf("internal/tsdb links prometheus/tsdb, which drags in cloud SDKs")
		}
	}
}
