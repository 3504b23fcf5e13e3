package nab

import (
	"encoding/csv"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPublishedNABResults re-scores results files a NAB detector published
// (results/<detector>/<category>/<detector>_<file>.csv) with this package,
// at the detector's published thresholds (config/thresholds.json), and
// compares the raw score and point counts per file with NAB's own
// <detector>_<profile>_scores.csv rows and S(t)_<profile> columns, and the
// corpus normalisation with results/final_results.json. SHOPFLOOR_NAB
// points at a directory laid out like the NAB repository holding any
// subset of those files (NAB is AGPL: never copy them into this
// repository).
func TestPublishedNABResults(t *testing.T) {
	root := os.Getenv("SHOPFLOOR_NAB")
	if root == "" {
		t.Skip("SKIPPED: SHOPFLOOR_NAB is not set, so the NAB scorer is NOT validated against NAB's published results; " +
			"set SHOPFLOOR_NAB to a directory laid out like the NAB repository (labels/combined_windows.json, config/thresholds.json, results/<detector>/...)")
	}
	windows := readCombinedWindows(t, filepath.Join(root, "labels", "combined_windows.json"))
	var thresholds map[string]map[string]struct{ Threshold, Score float64 }
	readJSON(t, filepath.Join(root, "config", "thresholds.json"), &thresholds)
	checkProfiles(t, filepath.Join(root, "config", "profiles.json"))

	totalWindows := 0
	for _, ws := range windows {
		totalWindows += len(ws)
	}
	compared := 0
	dets, err := os.ReadDir(filepath.Join(root, "results"))
	if err != nil {
		t.Fatalf("SHOPFLOOR_NAB=%s has no results directory: %v", root, err)
	}
	for _, d := range dets {
		if !d.IsDir() {
			continue
		}
		det := d.Name()
		dir := filepath.Join(root, "results", det)
		published := map[string]map[string]scoreRow{} // profile -> file -> row
		for _, p := range Profiles() {
			rows, total, ok := readScores(t, filepath.Join(dir, det+"_"+p.Name+"_scores.csv"))
			if !ok {
				continue
			}
			published[p.Name] = rows
			if math.IsNaN(total) {
				t.Errorf("%s %s: scores file has no Totals row", det, p.Name)
				continue
			}
			if th, ok := thresholds[det][p.Name]; ok && math.Abs(th.Score-total) > 1e-6 {
				t.Errorf("%s %s: scores total %.9f but thresholds.json says %.9f: files from different NAB versions", det, p.Name, total, th.Score)
			}
			checkFinal(t, root, det, p, total, totalWindows)
		}
		var files []Series
		expect := map[string]float64{} // profile -> sum of published per-file scores
		have := map[string]int{}       // profile -> files with a published score
		err := filepath.WalkDir(dir, func(fp string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(fp, ".csv") || strings.HasSuffix(fp, "_scores.csv") {
				return err
			}
			rel, _ := filepath.Rel(dir, fp)
			rel = filepath.ToSlash(rel)
			cat, file := path.Split(rel)
			rel = cat + strings.TrimPrefix(file, det+"_")
			ws, ok := windows[rel]
			if !ok {
				t.Errorf("%s: %s is not in combined_windows.json", det, rel)
				return nil
			}
			m, series, want := checkResultsFile(t, fp, det, rel, ws, thresholds[det], published)
			compared += m
			files = append(files, series)
			for k, v := range want {
				expect[k] += v
				have[k]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for k, n := range have {
			if n != len(files) {
				delete(expect, k) // the sweep covers every file
			}
		}
		checkSweep(t, det, files, thresholds[det], expect)
	}
	if compared == 0 {
		t.Fatalf("SHOPFLOOR_NAB=%s: no results file had a published score to compare with", root)
	}
	t.Logf("%d published per-file scores reproduced", compared)
}

type scoreRow struct {
	threshold, score      float64
	tp, tn, fp, fn, total int
}

// checkResultsFile scores one results file under every profile with a
// published threshold. It returns how many published figures it matched
// against, the file as a sweep series, and the published score per
// profile.
func checkResultsFile(t *testing.T, fp, det, rel string, ws []Window, th map[string]struct{ Threshold, Score float64 }, published map[string]map[string]scoreRow) (int, Series, map[string]float64) {
	recs := readCSV(t, fp)
	head := map[string]int{}
	for i, h := range recs[0] {
		head[h] = i
	}
	for _, c := range []string{"timestamp", "anomaly_score", "label"} {
		if _, ok := head[c]; !ok {
			t.Fatalf("%s has no %q column", fp, c)
		}
	}
	n := len(recs) - 1
	times := make([]time.Time, n)
	scores := make([]float64, n)
	labels := make([]bool, n)
	for i, r := range recs[1:] {
		times[i] = parseNABTime(t, r[head["timestamp"]])
		scores[i] = parseF(t, r[head["anomaly_score"]])
		labels[i] = r[head["label"]] == "1"
	}
	// The label column NAB wrote must be the windows we were given.
	for i, tm := range times {
		in := false
		for _, w := range ws {
			in = in || (!tm.Before(w.Start) && !tm.After(w.End))
		}
		if in != labels[i] {
			t.Fatalf("%s %s row %d: label column %v but the windows say %v: labels and results from different NAB versions", det, rel, i, labels[i], in)
		}
	}
	prob := Probation(n)
	matched := 0
	want := map[string]float64{}
	for _, p := range Profiles() {
		pt, ok := th[p.Name]
		if !ok {
			continue
		}
		detect := make([]bool, n)
		var conf Confusion
		for i, s := range scores {
			detect[i] = s >= pt.Threshold
			if i >= prob {
				conf.Count(labels[i], detect[i])
			}
		}
		got := Score(times, detect, ws, prob, p)
		if row, ok := published[p.Name][rel]; ok {
			matched++
			if math.Abs(row.threshold-pt.Threshold) > 1e-9 {
				t.Errorf("%s %s %s: scores file threshold %v, thresholds.json %v", det, p.Name, rel, row.threshold, pt.Threshold)
			}
			want[p.Name] = row.score
			if math.Abs(got.Raw-row.score) > 1e-9 {
				t.Errorf("%s %s %s: raw score %.12f, NAB published %.12f", det, p.Name, rel, got.Raw, row.score)
			}
			if conf.TP != row.tp || conf.TN != row.tn || conf.FP != row.fp || conf.FN != row.fn {
				t.Errorf("%s %s %s: counts TP %d TN %d FP %d FN %d, NAB published %d %d %d %d", det, p.Name, rel,
					conf.TP, conf.TN, conf.FP, conf.FN, row.tp, row.tn, row.fp, row.fn)
			}
			// Older NAB wrote the file length, newer the scored rows.
			if row.total != n && row.total != n-prob {
				t.Errorf("%s %s %s: Total_Count %d, file has %d rows (%d after probation)", det, p.Name, rel, row.total, n, n-prob)
			}
			if got.FP != conf.FP {
				t.Errorf("%s %s %s: %d false-positive detections scored, %d counted", det, p.Name, rel, got.FP, conf.FP)
			}
		}
		if c, ok := head["S(t)_"+p.Name]; ok {
			// NAB's per-row score contributions, summed: the file's score.
			matched++
			sum := 0.0
			for _, r := range recs[1:] {
				sum += parseF(t, r[c])
			}
			want[p.Name] = sum
			if math.Abs(got.Raw-sum) > 1e-9 {
				t.Errorf("%s %s %s: raw score %.12f, NAB's S(t) column sums to %.12f", det, p.Name, rel, got.Raw, sum)
			}
		}
		t.Logf("%s %-18s %s: threshold %v, raw %.9f (windows hit %d, missed %d, FP %d), normalised %.2f", det, p.Name, rel,
			pt.Threshold, got.Raw, got.TP, got.FN, got.FP, got.Normalized())
	}
	return matched, Series{Times: times, Scores: scores, Windows: ws, Probation: prob}, want
}

// checkSweep checks the threshold sweep at each published threshold
// against the published scores of the files, and logs what NAB's
// optimiser would choose on this subset (NAB optimises over its whole
// corpus, so that has no published counterpart unless the subset is the
// corpus).
func checkSweep(t *testing.T, det string, files []Series, th map[string]struct{ Threshold, Score float64 }, expect map[string]float64) {
	for _, p := range Profiles() {
		pt, ok := th[p.Name]
		want, ok2 := expect[p.Name]
		if !ok || !ok2 || len(files) == 0 {
			continue
		}
		pts := Sweep(files, p)
		at := pts[0]
		for _, q := range pts {
			if q.Threshold >= pt.Threshold {
				at = q
			}
		}
		if math.Abs(at.Tally.Raw-want) > 1e-9 {
			t.Errorf("%s %s: sweep at threshold %v gives %.12f, published %.12f", det, p.Name, pt.Threshold, at.Tally.Raw, want)
		}
		best := Optimize(files, p)
		t.Logf("%s %-18s sweep over %d files: published threshold %v -> raw %.9f (published %.9f); optimum on this subset: threshold %v, raw %.9f, normalised %.2f",
			det, p.Name, len(files), pt.Threshold, at.Tally.Raw, want, best.Threshold, best.Tally.Raw, best.Tally.Normalized())
	}
}

// checkFinal compares NAB's corpus normalisation of a scores total with
// final_results.json, if that file has the detector: null is −FN and
// perfect +TP per window of the whole label file.
func checkFinal(t *testing.T, root, det string, p Profile, total float64, windows int) {
	var final map[string]map[string]float64
	if _, err := os.Stat(filepath.Join(root, "results", "final_results.json")); err != nil {
		return
	}
	readJSON(t, filepath.Join(root, "results", "final_results.json"), &final)
	want, ok := final[det][p.Name]
	if !ok {
		return
	}
	w := float64(windows)
	got := Tally{Raw: total, Null: -p.FN * w, Perfect: p.TP * w}.Normalized()
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("%s %s: normalised %.9f from total %.9f over %d windows, final_results.json %.9f", det, p.Name, got, total, windows, want)
	} else {
		t.Logf("%s %s: corpus total %.9f normalises to %.6f = final_results.json", det, p.Name, total, got)
	}
}

func checkProfiles(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(name); err != nil {
		return
	}
	var ps map[string]struct {
		CostMatrix map[string]float64
	}
	readJSON(t, name, &ps)
	for _, p := range Profiles() {
		c, ok := ps[p.Name]
		if !ok {
			t.Errorf("profiles.json has no %s profile", p.Name)
			continue
		}
		if c.CostMatrix["tpWeight"] != p.TP || c.CostMatrix["fpWeight"] != p.FP || c.CostMatrix["fnWeight"] != p.FN {
			t.Errorf("profile %s: ours %+v, NAB's %v", p.Name, p, c.CostMatrix)
		}
	}
}

func readScores(t *testing.T, name string) (map[string]scoreRow, float64, bool) {
	t.Helper()
	if _, err := os.Stat(name); err != nil {
		return nil, 0, false
	}
	recs := readCSV(t, name)
	out := map[string]scoreRow{}
	total := math.NaN()
	for _, r := range recs[1:] {
		if r[0] == "Totals" {
			total = parseF(t, r[4])
			continue
		}
		out[r[2]] = scoreRow{threshold: parseF(t, r[3]), score: parseF(t, r[4]),
			tp: atoi(t, r[5]), tn: atoi(t, r[6]), fp: atoi(t, r[7]), fn: atoi(t, r[8]), total: atoi(t, r[9])}
	}
	return out, total, true
}

func readCombinedWindows(t *testing.T, name string) map[string][]Window {
	t.Helper()
	var raw map[string][][2]string
	readJSON(t, name, &raw)
	out := map[string][]Window{}
	for f, ws := range raw {
		out[f] = []Window{}
		for _, w := range ws {
			out[f] = append(out[f], Window{Start: parseNABTime(t, w[0]), End: parseNABTime(t, w[1])})
		}
	}
	return out
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func readCSV(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("%s: %v (%d records)", name, err, len(recs))
	}
	return recs
}

func parseNABTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse("2006-01-02 15:04:05.999999999", s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func parseF(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
