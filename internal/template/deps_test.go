package template_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries fails when the package links what doc.go forbids:
// only the standard library.
func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	self := "github.com/shopfloor/shopfloor/internal/template"
	for _, dep := range strings.Fields(string(out)) {
		if dep == self || dep == "github.com/shopfloor/shopfloor/internal/sqldb" {
			continue // sqldb is a standard-library-only leaf
		}
		if first, _, _ := strings.Cut(dep, "/"); strings.Contains(first, ".") {
			t.Errorf("the package links %s; see doc.go: it may import only the standard library and internal/sqldb", dep)
		}
	}
}
