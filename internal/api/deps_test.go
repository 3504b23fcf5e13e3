package api_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries fails when the package links what doc.go forbids:
// of Shopfloor's packages only internal/registry, internal/connectivity and internal/quota (their types), and no cloud
// SDK.
func TestImportBoundaries(t *testing.T) {
	checkDeps(t, ".", "github.com/shopfloor/shopfloor/internal/api",
		"github.com/shopfloor/shopfloor/internal/registry", "github.com/shopfloor/shopfloor/internal/connectivity",
		"github.com/shopfloor/shopfloor/internal/quota", "github.com/shopfloor/shopfloor/internal/template",
		"github.com/shopfloor/shopfloor/internal/jobs", "github.com/shopfloor/shopfloor/internal/sqldb")
	checkDeps(t, "./apitest", "github.com/shopfloor/shopfloor/internal/api/apitest",
		"github.com/shopfloor/shopfloor/internal/api", "github.com/shopfloor/shopfloor/internal/registry",
		"github.com/shopfloor/shopfloor/internal/connectivity", "github.com/shopfloor/shopfloor/internal/quota",
		"github.com/shopfloor/shopfloor/internal/template", "github.com/shopfloor/shopfloor/internal/jobs",
		"github.com/shopfloor/shopfloor/internal/sqldb")
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
