package egress

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries fails when the package links another Shopfloor
// package, which doc.go forbids.
func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/shopfloor/shopfloor/") && dep != "github.com/shopfloor/shopfloor/internal/egress" {
			t.Errorf("internal/egress links %s; see doc.go for what it must not import", dep)
		}
	}
}
