package eval

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/anomaly/nab"
	"github.com/shopfloor/shopfloor/internal/anomaly/synth"
)

// writeNABTree builds a small NAB-style corpus: two categories, faults at
// known rows, and combined-windows labels.
func writeNABTree(t *testing.T, dir string) string {
	t.Helper()
	t0 := time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)
	labels := map[string][][2]string{}
	specs := []struct {
		rel  string
		spec synth.Spec
	}{
		{"artificialWithAnomaly/spike.csv", synth.Spec{N: 1500, Level: 20, Noise: 1, Fault: synth.Spike, At: 1100, Size: 15, Seed: 1}},
		{"artificialWithAnomaly/shift.csv", synth.Spec{N: 1500, Level: 20, Noise: 1, Fault: synth.Shift, At: 1000, Size: 6, Seed: 2}},
		{"realKnownCause/noise.csv", synth.Spec{N: 1200, Level: 5, Noise: 0.5, Seed: 3}},
	}
	ts := func(i int) string { return t0.Add(time.Duration(i) * 5 * time.Minute).Format("2006-01-02 15:04:05") }
	for _, s := range specs {
		vals, _ := synth.Series(s.spec)
		var b strings.Builder
		b.WriteString("timestamp,value\n")
		for i, v := range vals {
			fmt.Fprintf(&b, "%s,%g\n", ts(i), v)
		}
		p := filepath.Join(dir, "data", filepath.FromSlash(s.rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		labels[s.rel] = [][2]string{}
		if s.spec.Fault != synth.None {
			labels[s.rel] = append(labels[s.rel], [2]string{ts(s.spec.At - 20), ts(s.spec.At + 40)})
		}
	}
	lb, _ := json.Marshal(labels)
	lp := filepath.Join(dir, "windows.json")
	if err := os.WriteFile(lp, lb, 0o644); err != nil {
		t.Fatal(err)
	}
	return lp
}

func TestEvalNABCSVEndToEnd(t *testing.T) {
	dir := t.TempDir()
	labels := writeNABTree(t, dir)
	out := filepath.Join(dir, "results")
	cmd := NewCommand(slog.New(slog.DiscardHandler))
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"eval", "--format", "nab-csv", "--data", filepath.Join(dir, "data"), "--labels", labels, "--out", out})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("eval failed: %v\nstderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "[3/3]") {
		t.Errorf("no progress on stderr: %q", stderr.String())
	}
	det := DefaultDetector(FormatNABCSV)
	for _, rel := range []string{"artificialWithAnomaly/" + det + "_spike.csv", "artificialWithAnomaly/" + det + "_shift.csv", "realKnownCause/" + det + "_noise.csv"} {
		p := filepath.Join(out, det, filepath.FromSlash(rel))
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("missing result file: %v", err)
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(rows[0], ","); got != "timestamp,value,anomaly_score,label" {
			t.Fatalf("%s header %q", rel, got)
		}
		if len(rows) < 1201 {
			t.Fatalf("%s has %d rows", rel, len(rows))
		}
		if rows[1][0] != "2014-04-01 00:00:00" {
			t.Errorf("%s: first timestamp %q not echoed as written", rel, rows[1][0])
		}
	}
	var sum Summary
	b, err := os.ReadFile(filepath.Join(out, det, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	std := sum.NAB["standard"]
	if std.TP != 2 || std.FN != 0 {
		t.Errorf("windows detected %d missed %d, want both faults found", std.TP, std.FN)
	}
	if std.Score <= 50 {
		t.Errorf("NAB standard score %.1f on easy synthetic faults", std.Score)
	}
	if sum.FreeAlerts > 1 {
		t.Errorf("%d alerts on the clean file", sum.FreeAlerts)
	}
	if _, err := os.Stat(filepath.Join(out, det, det+"_standard_scores.csv")); err != nil {
		t.Errorf("NAB score table missing: %v", err)
	}
	if !strings.Contains(stdout.String(), "NAB (alert onsets):") || !strings.Contains(stdout.String(), "NAB's rule") {
		t.Errorf("summary not printed: %q", stdout.String())
	}
}

func TestEvalRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.csv"), []byte("time,val\n1,2\n"), 0o644)
	_, err := Run(context.Background(), Options{Data: dir, Format: FormatNABCSV, Out: filepath.Join(dir, "o")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "timestamp") {
		t.Fatalf("want a message about the timestamp column, got %v", err)
	}
	_, err = Run(context.Background(), Options{Data: dir, Format: "csv", Out: dir}, io.Discard)
	if err == nil {
		t.Fatal("unknown format accepted")
	}
	_, err = Run(context.Background(), Options{Data: dir, Format: FormatNABCSV, Out: dir, Detector: "magic"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "univariate") {
		t.Fatalf("unknown detector: %v", err)
	}
}

// datasets finds ../shared/datasets relative to the repository, or
// $SHOPFLOOR_DATASETS.
func datasets(t *testing.T) string {
	if d := os.Getenv("SHOPFLOOR_DATASETS"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(d), "shared", "datasets")
		}
	}
	return ""
}

// TestEvalSKAB reproduces the published figures (RESULTS.md): every
// detector over SKAB under the per-file protocol, with totals for the
// development folder (valve1, the only one defaults were tuned on), the
// held-out folders and all files. Run with -v to see the table.
func TestEvalSKAB(t *testing.T) {
	root := filepath.Join(datasets(t), "skab", "data")
	if _, err := os.Stat(filepath.Join(root, "valve1")); err != nil {
		t.Skipf("SKIPPING SKAB EVALUATION: dataset not found at %s (set SHOPFLOOR_DATASETS to the shared datasets directory)", root)
	}
	var sums []*Summary
	for _, det := range []string{"univariate", "changepoint", "hotelling", "pca", "rcf"} {
		out := t.TempDir()
		sum, err := Run(context.Background(), Options{Data: root, Format: FormatSKAB, Out: out, Detector: det}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum)
		if len(sum.Files) != 35 {
			t.Errorf("%s: %d files evaluated, want 35", det, len(sum.Files))
		}
		if len(sum.Splits) != 3 || sum.Splits[0].Files != 16 || sum.Splits[1].Files != 18 || sum.Splits[2].Files != 34 {
			t.Fatalf("%s: splits %+v, want dev 16 files, held-out 18, all 34", det, sum.Splits)
		}
		all := sum.Splits[2]
		if all.Pointwise.Confusion != sum.Pointwise.Confusion || all.NAB["standard"].Tally != sum.NAB["standard"].Tally {
			t.Errorf("%s: the all-files split disagrees with the run totals", det)
		}
		p := filepath.Join(out, det, "valve1", det+"_0.csv")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "timestamp,value,anomaly_score,label,changepoint,alert,top_field\n2020-03-09 10:14:33,") {
			t.Errorf("unexpected SKAB result file start: %.120q", b)
		}
	}
	t.Log("SKAB, per-file protocol (400 training rows, scored from row 400), default sensitivity 0.5:\n" + Table(sums))
	def := sums[0]
	// A detector that flags everything scores about 0.70 here; the
	// default must beat it clearly, on the held-out folders too.
	for _, sp := range def.Splits {
		if sp.Pointwise.F1 < sp.AlwaysOnF1+0.05 {
			t.Errorf("%s %s: F1 %.3f does not beat flag-everything %.3f", def.Detector, sp.Name, sp.Pointwise.F1, sp.AlwaysOnF1)
		}
	}
}

// TestSKABPeriodicBaseline scores a detector that ignores the data and
// reports a change every P rows after training, under the same changepoint
// protocol as TestEvalSKAB. RESULTS.md quotes these figures: SKAB's
// changepoints come about 57 rows apart and each false positive costs only
// 0.11, so the NAB standard score rewards frequent reports, and a
// changepoint detector's score means something only next to this baseline.
func TestSKABPeriodicBaseline(t *testing.T) {
	root := filepath.Join(datasets(t), "skab", "data")
	if _, err := os.Stat(filepath.Join(root, "valve1")); err != nil {
		t.Skipf("SKIPPING SKAB BASELINE: dataset not found at %s (set SHOPFLOOR_DATASETS to the shared datasets directory)", root)
	}
	files, err := listCSV(root)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("| report every | split | NAB std (paper) | NAB std (SKAB) | NAB low-FP (paper) | CP windows hit | CP FPs |\n|---:|---|---:|---:|---:|---:|---:|\n")
	held60 := 0.0
	for _, period := range []int{30, 60, 120} {
		type acc struct{ paper, skab, lowFP nab.Tally }
		var dev, held acc
		for _, rel := range files {
			s, err := readSKAB(filepath.Join(root, filepath.FromSlash(rel)), rel)
			if err != nil {
				t.Fatal(err)
			}
			if !containsTrue(s.anomaly) {
				continue
			}
			times := s.times[skabTrainRows:]
			det := make([]bool, len(times))
			for i := range det {
				det[i] = i > 0 && i%period == 0
			}
			var cps []time.Time
			var ws []nab.Window
			for i := skabTrainRows; i < s.rows(); i++ {
				if s.cp[i] {
					cps = append(cps, s.times[i])
					ws = append(ws, nab.Window{Start: s.times[i], End: s.times[i].Add(skabCPWindow)})
				}
			}
			a := &held
			if folderOf(rel) == "valve1" {
				a = &dev
			}
			a.paper = a.paper.Add(nab.Score(times, det, ws, 0, nab.Profiles()[0]))
			a.skab = a.skab.Add(nab.ScoreSKAB(times, det, cps, skabCPWindow, nab.Profiles()[0]))
			a.lowFP = a.lowFP.Add(nab.Score(times, det, ws, 0, nab.Profiles()[1]))
		}
		for _, sp := range []struct {
			name string
			a    acc
		}{{"dev (valve1)", dev}, {"held-out (other+valve2)", held}} {
			fmt.Fprintf(&sb, "| %d rows | %s | %.2f | %.2f | %.2f | %d/%d | %d |\n", period, sp.name, sp.a.paper.Normalized(), sp.a.skab.Normalized(), sp.a.lowFP.Normalized(),
				sp.a.paper.TP, sp.a.paper.TP+sp.a.paper.FN, sp.a.paper.FP)
		}
		if period == 60 {
			held60 = held.paper.Normalized()
		}
	}
	t.Log("SKAB changepoints, a detector that reports every P rows regardless of the data:\n" + sb.String())
	if held60 < 33 {
		t.Errorf("periodic baseline scores %.2f on held-out files; RESULTS.md says it beats the target of 33: update it", held60)
	}
}
