package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The binary must not link worlds it has no business with: cloud SDKs,
// Kubernetes clients, a second logging stack, or the heavy parts of
// Prometheus that pull those in (ARCHITECTURE.md, rule 7).
func TestBinaryLinksNoForbiddenModules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{with .Module}}{{.Path}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbiddenPrefix := []string{
		"github.com/aws/", "github.com/Azure/", "cloud.google.com/", "google.golang.org/api",
		"k8s.io/", "github.com/sirupsen/logrus", "go.uber.org/zap", "github.com/rs/zerolog",
		"github.com/prometheus/prometheus/web", "github.com/prometheus/prometheus/discovery",
	}
	forbiddenExact := []string{"github.com/prometheus/prometheus/tsdb"}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 100 {
		t.Fatalf("go list found only %d packages; the check is not looking at the binary", len(lines))
	}
	for _, line := range lines {
		for _, name := range strings.Fields(line) {
			for _, f := range forbiddenPrefix {
				if strings.HasPrefix(name, f) {
					t.Errorf("cmd/shopfloor links %s", name)
				}
			}
			for _, f := range forbiddenExact {
				if name == f {
					t.Errorf("cmd/shopfloor links %s", name)
				}
			}
		}
	}
}
