package eval

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/anomaly/nab"
	"github.com/shopfloor/shopfloor/internal/anomaly/synth"
)

// TestEvalNABCSVAsNAB checks the nab-csv results as NAB would read them:
// labels with NAB's ".000000" timestamps, a data file with extra columns
// (one a label column) and values written in odd forms, a file missing
// from the labels; the results echo timestamps and values, mark window
// rows 1, and NAB's rule re-applied to the written anomaly_score gives
// the reported nab_rule scores and score tables.
func TestEvalNABCSVAsNAB(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)
	ts := func(i int) string { return t0.Add(time.Duration(i) * 5 * time.Minute).Format("2006-01-02 15:04:05") }
	write := func(rel, text string) {
		p := filepath.Join(dir, "data", filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vals, _ := synth.Series(synth.Spec{N: 1400, Level: 20, Noise: 1, Fault: synth.Shift, At: 1000, Size: 6, Seed: 4})
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i, v := range vals {
		fmt.Fprintf(&b, "%s,%.3f\n", ts(i), v) // trailing zeros must survive
	}
	write("realKnownCause/shift.csv", strings.TrimSuffix(b.String(), "\n")) // no final newline, like NAB's files
	b.Reset()
	b.WriteString("timestamp,value,label,note\n")
	for i, v := range vals[:1200] {
		fmt.Fprintf(&b, "%s,%.4e,%d,x\n", ts(i), 30-v, i%2)
	}
	write("realTraffic/extra.csv", b.String())
	write("other/unlabelled.csv", "timestamp,value\n"+ts(0)+",1\n"+ts(1)+",2\n")
	labels := fmt.Sprintf(`{"realKnownCause/shift.csv": [["%s.000000", "%s.000000"]], "realTraffic/extra.csv": [["%s.000000", "%s.000000"], ["%s.000000", "%s.000000"]]}`,
		ts(980), ts(1040), ts(400), ts(430), ts(1100), ts(1160))
	lp := filepath.Join(dir, "windows.json")
	if err := os.WriteFile(lp, []byte(labels), 0o644); err != nil {
		t.Fatal(err)
	}
	windows, err := readLabels(lp)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var progress strings.Builder
	sum, err := Run(context.Background(), Options{Data: filepath.Join(dir, "data"), Format: FormatNABCSV, Labels: lp, Out: out, Detector: "univariate", Sensitivity: 0.8, NABOptimize: true}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "other/unlabelled.csv: 2 rows, 0 alerts (not in the labels file: not scored)") {
		t.Errorf("unlabelled file not reported: %s", progress.String())
	}
	scored := 0
	for _, fr := range sum.Files {
		if fr.File == "other/unlabelled.csv" {
			if fr.Labelled || fr.NABRule != nil {
				t.Errorf("file missing from the labels was scored: %+v", fr)
			}
			continue
		}
		scored++
		in := readCSVFile(t, filepath.Join(dir, "data", fr.File))
		res := readCSVFile(t, filepath.Join(out, sum.Detector, filepath.Dir(fr.File), sum.Detector+"_"+filepath.Base(fr.File)))
		if strings.Join(res[0], ",") != "timestamp,value,anomaly_score,label" || len(res) != len(in) {
			t.Fatalf("%s: header %v, %d rows for %d", fr.File, res[0], len(res), len(in))
		}
		times := make([]time.Time, len(res)-1)
		det := make([]bool, len(res)-1)
		for i, r := range res[1:] {
			if r[0] != in[i+1][0] || r[1] != in[i+1][1] {
				t.Fatalf("%s row %d: %v does not echo %v", fr.File, i, r[:2], in[i+1][:2])
			}
			times[i], _ = parseTime(r[0])
			inWin := false
			for _, w := range windows[fr.File] {
				inWin = inWin || (!times[i].Before(w.Start) && !times[i].After(w.End))
			}
			if (r[3] == "1") != inWin {
				t.Fatalf("%s row %d: label %s, in a window %v", fr.File, i, r[3], inWin)
			}
			v, err := strconv.ParseFloat(r[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			det[i] = v >= 1-sum.Sensitivity
		}
		for _, p := range nab.Profiles() {
			want := nab.Score(times, det, windows[fr.File], nab.Probation(len(times)), p)
			if got := fr.NABRule[p.Name].Tally; math.Abs(got.Raw-want.Raw) > 1e-12 || got.FP != want.FP || got.TP != want.TP {
				t.Errorf("%s %s: reported %+v, NAB's rule on the file %+v", fr.File, p.Name, got, want)
			}
			table := readCSVFile(t, filepath.Join(out, sum.Detector, sum.Detector+"_"+p.Name+"_scores.csv"))
			for _, r := range table[1:] {
				if r[2] == fr.File {
					if v, _ := strconv.ParseFloat(r[4], 64); v != want.Raw {
						t.Errorf("%s %s: table score %s, want %v", fr.File, p.Name, r[4], want.Raw)
					}
				}
			}
		}
	}
	if scored != 2 {
		t.Fatalf("%d files scored, want 2", scored)
	}
	for _, p := range nab.Profiles() {
		opt, rule := sum.NABOptimized[p.Name], sum.NABRule[p.Name]
		// Any fixed threshold is one of the thresholds the optimiser tries.
		if opt.Raw < rule.Raw-1e-9 || opt.Null != rule.Null || opt.Perfect != rule.Perfect {
			t.Errorf("%s: optimised %+v below the fixed threshold's %+v", p.Name, opt, rule)
		}
	}

	// Labels keyed for another root: every file would go unscored.
	_, err = Run(context.Background(), Options{Data: dir, Format: FormatNABCSV, Labels: lp, Out: t.TempDir(), Detector: "pca"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "relative to the data directory") {
		t.Errorf("labels matching no file: %v", err)
	}
}

func readCSVFile(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
