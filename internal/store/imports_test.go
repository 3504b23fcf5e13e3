package store_test

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports keeps each store package to the standard library, the
// registry, and its own driver.
func TestImports(t *testing.T) {
	const mod = "github.com/shopfloor/shopfloor/"
	allowed := map[string][]string{
		".":        {mod + "internal/registry"},
		"sqlite":   {mod + "internal/registry", mod + "internal/store", "modernc.org/sqlite"},
		"postgres": {mod + "internal/registry", mod + "internal/store", "github.com/jackc/pgx/v5"},
	}
	for dir, ok := range allowed {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
	imports:
		for _, imp := range pkg.Imports {
			if first, _, _ := strings.Cut(imp, "/"); !strings.Contains(first, ".") {
				continue // standard library
			}
			for _, p := range ok {
				if imp == p || strings.HasPrefix(imp, p+"/") {
					continue imports
				}
			}
			t.Errorf("package %s imports %s: allowed beyond the standard library are %v", pkg.ImportPath, imp, ok)
		}
	}
}
