package audit_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries fails when the package links what doc.go forbids:
// of Shopfloor's packages only internal/sqldb.
func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch dep {
		case "github.com/shopfloor/shopfloor/internal/audit", "github.com/shopfloor/shopfloor/internal/sqldb":
			continue
		}
		if strings.HasPrefix(dep, "github.com/shopfloor/shopfloor/") {
			t.Errorf("internal/audit links %s; see doc.go for what it may import", dep)
		}
	}
}
