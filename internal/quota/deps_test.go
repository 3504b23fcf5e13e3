package quota_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries fails when the package links another Shopfloor
// package: it must stay a leaf the gateway and the api can both use.
func TestImportBoundaries(t *testing.T) {
	checkDeps(t, ".", "github.com/shopfloor/shopfloor/internal/quota")
}

func checkDeps(t *testing.T, pkg string, allowed ...string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/shopfloor/shopfloor/") && !ok[dep] {
			t.Errorf("%s links %s; see doc.go for what it may import", pkg, dep)
		}
		for _, bad := range []string{"github.com/aws/", "github.com/Azure/", "cloud.google.com/", "google.golang.org/api"} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("%s links the cloud SDK package %s", pkg, dep)
			}
		}
	}
}
