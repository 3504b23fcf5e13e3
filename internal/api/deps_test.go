package api_test

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/shopfloor/shopfloor/internal/"

// TestImportBoundaries fails when the package reaches past what doc.go
// allows. api takes and returns the domain packages' types, so it links
// them and what they link (rules brings the bus envelope); it must never
// reach the infrastructure itself: it imports neither the bus, the store,
// the tsdb, the gateway nor the app, and links no store, tsdb, gateway, app
// or cloud SDK at all.
func TestImportBoundaries(t *testing.T) {
	for _, pkg := range []string{".", "./apitest"} {
		direct, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(direct)) {
			for _, bad := range []string{"bus", "store", "tsdb", "gateway", "app", "ingest"} {
				if dep == mod+bad || strings.HasPrefix(dep, mod+bad+"/") {
					t.Errorf("%s imports %s; it talks to it only through the interfaces in api.go", pkg, dep)
				}
			}
		}
		all, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(all)) {
			for _, bad := range []string{mod + "store", mod + "tsdb", mod + "gateway", mod + "app",
				"github.com/aws/", "github.com/Azure/", "cloud.google.com/", "google.golang.org/api"} {
				if strings.HasPrefix(dep, bad) {
					t.Errorf("%s links %s; see doc.go for what it may import", pkg, dep)
				}
			}
		}
	}
}
