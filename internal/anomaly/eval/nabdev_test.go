package eval

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/shopfloor/shopfloor/internal/anomaly/nab"
)

// nabDevFiles is how many files ../shared/datasets/nab-dev holds (its
// README): the test refuses a directory with fewer, so a partial copy
// cannot pass on a subset.
const nabDevFiles = 24

// nabDevRecord is the line of RESULTS.md that records the dev figures.
var nabDevRecord = regexp.MustCompile(`(?m)^NAB dev record: standard ([0-9.]+), reward_low_FP_rate ([0-9.]+), reward_low_FN_rate ([0-9.]+)$`)

// TestNABDev runs the default detector, at its defaults, over NAB's
// development files exactly as `shopfloor anomaly eval --format nab-csv
// --nab-optimize` does, and fails if any profile's score falls below the
// figure RESULTS.md records (its "NAB dev record" line). A change that
// lowers the dev score must lower the record too, in the same commit, and
// say why. Run with -v to see the figures.
func TestNABDev(t *testing.T) {
	root := filepath.Join(datasets(t), "nab-dev")
	if _, err := os.Stat(filepath.Join(root, "combined_windows.json")); err != nil {
		t.Skipf("SKIPPING NAB DEV EVALUATION: dataset not found at %s (set SHOPFLOOR_DATASETS to the shared datasets directory)", root)
	}
	b, err := os.ReadFile(filepath.Join("..", "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := nabDevRecord.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("RESULTS.md has no line matching %q: the dev score has nothing to be held to", nabDevRecord)
	}
	sum, err := Run(context.Background(), Options{Data: filepath.Join(root, "data"), Format: FormatNABCSV,
		Labels: filepath.Join(root, "combined_windows.json"), Out: t.TempDir(), NABOptimize: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Files) != nabDevFiles {
		t.Fatalf("%d files under %s, want NAB's %d development files", len(sum.Files), root, nabDevFiles)
	}
	for i, p := range nab.Profiles() {
		rec, err := strconv.ParseFloat(m[i+1], 64)
		if err != nil {
			t.Fatal(err)
		}
		got := sum.NABOptimized[p.Name]
		t.Logf("%s: %.2f (threshold %.4f, windows %d/%d, false positives %d); RESULTS.md records %.2f",
			p.Name, got.Score, got.Threshold, got.TP, got.TP+got.FN, got.FP, rec)
		// The record is rounded to two decimals.
		if got.Score < rec-0.005 {
			t.Errorf("%s: NAB dev score %.2f is below the %.2f RESULTS.md records", p.Name, got.Score, rec)
		}
	}
}
