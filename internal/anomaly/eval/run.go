package eval

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/anomaly"
	"github.com/shopfloor/shopfloor/internal/anomaly/nab"
)

// Formats the harness reads.
const (
	FormatSKAB   = "skab"
	FormatNABCSV = "nab-csv"
)

// SKAB protocol constants.
const (
	skabTrainRows = 400              // the first 400 rows of each file train, the rest test
	skabCPWindow  = 60 * time.Second // changepoint window, to the right of each changepoint
)

// Options is one evaluation run.
type Options struct {
	Data        string // dataset directory
	Format      string // FormatSKAB or FormatNABCSV
	Out         string // results directory
	Labels      string // NAB combined-windows JSON (nab-csv only; optional)
	Detector    string // detector name; "" picks the format's default
	Sensitivity float64
	// Warmup overrides the learning period; 0 uses the protocol's: the 400
	// SKAB training rows, or NAB's probationary period per file.
	Warmup int
	// DevFolders are the top-level folders defaults were tuned on; the
	// others are held out. Empty means SKAB's: valve1.
	DevFolders []string
	Model      ModelOptions
	// NABOptimize (nab-csv) also reports NAB's leaderboard figure: the
	// threshold on anomaly_score that maximises the corpus score, chosen
	// on the labels as NAB's optimiser does.
	NABOptimize bool
}

func (o Options) devFolders() []string {
	if len(o.DevFolders) > 0 {
		return o.DevFolders
	}
	return []string{"valve1"}
}

// Metrics is a point-wise confusion matrix with its ratios.
type Metrics struct {
	nab.Confusion
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	FAR       float64 `json:"false_alarm_rate"`
	MAR       float64 `json:"missed_alarm_rate"`
}

func metricsOf(c nab.Confusion) Metrics {
	return Metrics{Confusion: c, Precision: c.Precision(), Recall: c.Recall(), F1: c.F1(), FAR: c.FAR(), MAR: c.MAR()}
}

// NABResult is one profile's tally and normalised score.
type NABResult struct {
	nab.Tally
	Score float64 `json:"score"`
}

// NABSet holds the three profiles.
type NABSet map[string]NABResult

func (s NABSet) add(name string, t nab.Tally) {
	cur := s[name]
	cur.Tally = cur.Tally.Add(t)
	cur.Score = cur.Tally.Normalized()
	s[name] = cur
}

// FileResult is one file's outcome.
type FileResult struct {
	File         string  `json:"file"`
	Rows         int     `json:"rows"`
	Warmup       int     `json:"warmup"`
	Scored       int     `json:"scored"` // rows evaluated (after training/probation)
	Alerts       int     `json:"alerts"`
	AlertsPer10k float64 `json:"alerts_per_10k"`
	Labelled     bool    `json:"labelled"`
	Pointwise    Metrics `json:"pointwise"`
	// NAB is the windowed score with the NAB paper's rules: for nab-csv
	// over the label windows, for SKAB over 60 s windows after each
	// changepoint, with alert onsets and ends as the detections.
	NAB NABSet `json:"nab,omitempty"`
	// SKABNAB is the same changepoint evaluation under the variant of the
	// rules SKAB's leaderboard used (skab only).
	SKABNAB NABSet `json:"skab_nab,omitempty"`
	// NABRule (nab-csv) scores the written results file as NAB's scorer
	// does: every row from probation on whose anomaly_score is at or above
	// the alert level 1 − sensitivity is a detection. RuleCounts are its
	// point counts, the TP/TN/FP/FN of NAB's score tables.
	NABRule    NABSet         `json:"nab_rule,omitempty"`
	RuleCounts *nab.Confusion `json:"nab_rule_counts,omitempty"`
}

// NABOptimum is the result at the threshold NAB's optimiser picks.
type NABOptimum struct {
	Threshold float64 `json:"threshold"`
	NABResult
}

// Summary is a whole run.
type Summary struct {
	Detector    string       `json:"detector"`
	Format      string       `json:"format"`
	Data        string       `json:"data"`
	Sensitivity float64      `json:"sensitivity"`
	Protocol    string       `json:"protocol"`
	Files       []FileResult `json:"files"`
	// Totals over labelled files (for SKAB: every file with anomalies,
	// as published; anomaly-free files are reported in FreeFiles).
	Pointwise Metrics `json:"pointwise"`
	NAB       NABSet  `json:"nab,omitempty"`
	SKABNAB   NABSet  `json:"skab_nab,omitempty"`
	NABRule   NABSet  `json:"nab_rule,omitempty"`
	// NABOptimized (nab-csv with NABOptimize) is NAB's leaderboard
	// figure per profile: threshold tuned on the labels, so an upper
	// bound, not a deployable score.
	NABOptimized map[string]NABOptimum `json:"nab_optimized,omitempty"`
	// False alarms on files with no anomaly labels at all.
	FreeRows         int     `json:"anomaly_free_rows"`
	FreeAlerts       int     `json:"anomaly_free_alerts"`
	FreeAlertsPer10k float64 `json:"anomaly_free_alerts_per_10k"`
	// AlwaysOnF1 is the point-wise F1 of a detector that flags every
	// scored row: the floor any detector must beat to mean anything.
	AlwaysOnF1 float64 `json:"always_on_f1"`
	// Splits repeat the totals over the development folders (the only
	// ones defaults may be tuned on), the held-out folders and all files.
	Splits     []Split `json:"splits,omitempty"`
	Elapsed    string  `json:"elapsed"`
	PointsPerS float64 `json:"points_per_second"`

	series []nab.Series // nab-csv labelled files, kept for NABOptimize
}

// Run evaluates a detector over a dataset directory, writing results under
// opts.Out and progress lines to progress.
func Run(ctx context.Context, opts Options, progress io.Writer) (*Summary, error) {
	if opts.Format != FormatSKAB && opts.Format != FormatNABCSV {
		return nil, fmt.Errorf("%w: unknown --format %q; use %q or %q", ErrData, opts.Format, FormatSKAB, FormatNABCSV)
	}
	if opts.Detector == "" {
		opts.Detector = DefaultDetector(opts.Format)
	}
	if _, err := newDetector(opts.Detector, []string{"x"}, 64, opts.Sensitivity, opts.Model); err != nil {
		return nil, err
	}
	if opts.Sensitivity == 0 {
		opts.Sensitivity = 0.5
	}
	if opts.Labels != "" && opts.Format == FormatSKAB {
		return nil, fmt.Errorf("%w: --labels applies to nab-csv; SKAB files carry their own label columns", ErrData)
	}
	if opts.NABOptimize && (opts.Format != FormatNABCSV || opts.Labels == "") {
		return nil, fmt.Errorf("%w: --nab-optimize needs --format nab-csv and --labels", ErrData)
	}
	files, err := listCSV(opts.Data)
	if err != nil {
		return nil, err
	}
	var labels map[string][]nab.Window
	if opts.Labels != "" {
		if labels, err = readLabels(opts.Labels); err != nil {
			return nil, err
		}
	}
	sum := &Summary{Detector: opts.Detector, Format: opts.Format, Data: opts.Data, Sensitivity: opts.Sensitivity, NAB: NABSet{}}
	if opts.Format == FormatSKAB {
		sum.SKABNAB = NABSet{}
		sum.Protocol = "SKAB: per file, the detector starts empty and learns from the first 400 rows (training; the second half of them sets the alarm limit); rows 400+ are scored one at a time as they stream; point-wise metrics use the anomaly column, changepoint NAB uses 60 s windows after each changepoint with alert starts and ends as detections"
	} else {
		sum.Protocol = "NAB: per file, the detector learns during NAB's probationary period (15% of the file, at most 750 rows); each alert onset after it is a detection (an alert is raised once per episode, as the hub does), scored with the NAB rules; point-wise metrics count every alerting row; the threshold is the detector's own alert level, not tuned on labels. anomaly_score is the detector's likelihood score (univariate: a calibrated tail probability, 0.5 at 1e-5, high where an anomaly starts) or, for the other detectors, its alert score. nab_rule scores the written anomaly_score as NAB's own scorer does (every row at or above 1 - sensitivity is a detection); the score tables hold that. nab_optimized, if asked for, tunes that threshold on the labels as NAB's leaderboard does. Files not in the labels file are not scored (as in NAB) and count as anomaly-free"
		sum.NABRule = NABSet{}
	}
	start := time.Now()
	points, labelled := 0, 0
	var always nab.Confusion
	for i, rel := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		full := filepath.Join(opts.Data, filepath.FromSlash(rel))
		var s *series
		if opts.Format == FormatSKAB {
			s, err = readSKAB(full, rel)
		} else {
			s, err = readNABCSV(full, rel)
		}
		if err != nil {
			return nil, err
		}
		fr, err := evalFile(s, opts, labels, sum, &always)
		if err != nil {
			return nil, err
		}
		points += s.rows()
		sum.Files = append(sum.Files, fr)
		if fr.Labelled {
			labelled++
		}
		if progress != nil {
			fmt.Fprintf(progress, "anomaly eval: [%d/%d] %s: %d rows, %d alerts", i+1, len(files), rel, fr.Rows, fr.Alerts)
			switch {
			case fr.Labelled:
				fmt.Fprintf(progress, ", F1 %.3f", fr.Pointwise.F1)
			case labels != nil:
				fmt.Fprint(progress, " (not in the labels file: not scored)")
			}
			fmt.Fprintln(progress)
		}
	}
	if labels != nil && labelled == 0 {
		return nil, fmt.Errorf("%w: no file under %s is named in %s; label keys are paths relative to the data directory (e.g. realKnownCause/nyc_taxi.csv), so point --data at NAB's data directory", ErrData, opts.Data, opts.Labels)
	}
	if opts.NABOptimize {
		sum.NABOptimized = map[string]NABOptimum{}
		for _, p := range nab.Profiles() {
			pt := nab.Optimize(sum.series, p)
			sum.NABOptimized[p.Name] = NABOptimum{Threshold: pt.Threshold, NABResult: NABResult{Tally: pt.Tally, Score: pt.Tally.Normalized()}}
		}
	}
	el := time.Since(start)
	sum.Elapsed = el.Round(time.Millisecond).String()
	if el > 0 {
		sum.PointsPerS = float64(points) / el.Seconds()
	}
	sum.AlwaysOnF1 = always.F1()
	sum.Splits = splits(sum.Files, opts.devFolders())
	if sum.FreeRows > 0 {
		sum.FreeAlertsPer10k = 1e4 * float64(sum.FreeAlerts) / float64(sum.FreeRows)
	}
	if err := writeSummary(opts, sum); err != nil {
		return nil, err
	}
	return sum, nil
}

// evalFile streams one file through a fresh detector and scores it.
func evalFile(s *series, opts Options, labels map[string][]nab.Window, sum *Summary, always *nab.Confusion) (FileResult, error) {
	n := s.rows()
	fr := FileResult{File: s.rel, Rows: n}
	warm := opts.Warmup
	start := 0 // first evaluated row
	var windows []nab.Window
	haveWindows := false
	if opts.Format == FormatSKAB {
		if warm == 0 {
			warm = skabTrainRows
		}
		start = skabTrainRows
		fr.Labelled = containsTrue(s.anomaly)
	} else {
		start = nab.Probation(n)
		if warm == 0 {
			warm = max(start, 16)
		}
		if labels != nil {
			windows, haveWindows = labels[s.rel]
			fr.Labelled = haveWindows
		}
	}
	fr.Warmup = warm
	det, err := newDetector(opts.Detector, s.fields, warm, opts.Sensitivity, opts.Model)
	if err != nil {
		return fr, fmt.Errorf("%s: %w", s.rel, err)
	}
	scores := make([]float64, n)
	alerts := make([]bool, n)
	top := make([]string, n)
	var res anomaly.Result
	td, timed := det.(anomaly.TimedDetector)
	for i := 0; i < n; i++ {
		if timed {
			td.ObserveAt(s.times[i], s.row(i), &res)
		} else {
			det.Observe(s.row(i), &res)
		}
		scores[i] = res.Score
		if opts.Format == FormatNABCSV && likelihoodDetector(opts.Detector) {
			// NAB's sweep wants a score that is high where an anomaly
			// starts and low elsewhere: the likelihood, not the
			// statistic the alert state machine holds.
			scores[i] = res.Likelihood
		}
		alerts[i] = res.Alert
		if len(res.Contributions) > 0 {
			top[i] = res.Contributions[0].Field + ":" + res.Contributions[0].Reason.String()
		}
	}

	// Point-wise labels.
	label := make([]bool, n)
	switch {
	case opts.Format == FormatSKAB && s.anomaly != nil:
		copy(label, s.anomaly)
	case haveWindows:
		for _, w := range windows {
			for i, t := range s.times {
				if !t.Before(w.Start) && !t.After(w.End) {
					label[i] = true
				}
			}
		}
	}
	var conf, on nab.Confusion
	for i := start; i < n; i++ {
		conf.Count(label[i], alerts[i])
		on.Count(label[i], true)
		if alerts[i] {
			fr.Alerts++
		}
	}
	fr.Scored = max(n-start, 0)
	if fr.Scored > 0 {
		fr.AlertsPer10k = 1e4 * float64(fr.Alerts) / float64(fr.Scored)
	}
	fr.Pointwise = metricsOf(conf)

	if !fr.Labelled {
		sum.FreeRows += fr.Scored
		sum.FreeAlerts += fr.Alerts
	} else {
		sum.Pointwise = metricsOf(sum.Pointwise.Confusion.Add(conf))
		*always = always.Add(on)
		fr.NAB = NABSet{}
		if opts.Format == FormatSKAB {
			fr.SKABNAB = NABSet{}
			times := s.times[start:]
			det := edges(alerts[start:])
			if eventDetector(opts.Detector) {
				det = alerts[start:]
			}
			var cps []time.Time
			for i := start; i < n; i++ {
				if s.cp != nil && s.cp[i] {
					cps = append(cps, s.times[i])
				}
			}
			ws := make([]nab.Window, len(cps))
			for k, c := range cps {
				ws[k] = nab.Window{Start: c, End: c.Add(skabCPWindow)}
			}
			for _, p := range nab.Profiles() {
				t := nab.Score(times, det, ws, 0, p)
				fr.NAB.add(p.Name, t)
				sum.NAB.add(p.Name, t)
				k := nab.ScoreSKAB(times, det, cps, skabCPWindow, p)
				fr.SKABNAB.add(p.Name, k)
				sum.SKABNAB.add(p.Name, k)
			}
		} else {
			onsets := edges(alerts)
			for i := range onsets {
				onsets[i] = onsets[i] && alerts[i]
			}
			// NAB's own rule on the written scores, at the alert level.
			th := 1 - opts.Sensitivity
			rows := make([]bool, n)
			var rc nab.Confusion
			for i, v := range scores {
				rows[i] = v >= th
				if i >= start {
					rc.Count(label[i], rows[i])
				}
			}
			fr.RuleCounts = &rc
			fr.NABRule = NABSet{}
			for _, p := range nab.Profiles() {
				t := nab.Score(s.times, onsets, windows, start, p)
				fr.NAB.add(p.Name, t)
				sum.NAB.add(p.Name, t)
				r := nab.Score(s.times, rows, windows, start, p)
				fr.NABRule.add(p.Name, r)
				sum.NABRule.add(p.Name, r)
			}
			if opts.NABOptimize {
				sum.series = append(sum.series, nab.Series{Times: s.times, Scores: scores, Windows: windows, Probation: start})
			}
		}
	}
	if err := writeFile(opts, s, scores, alerts, label, top); err != nil {
		return fr, err
	}
	return fr, nil
}

// edges turns an alert series into changepoint detections: the rows where
// the alert state changes, and the first row if it starts in alert (the
// convention of SKAB's published changepoint evaluation).
func edges(a []bool) []bool {
	out := make([]bool, len(a))
	for i := range a {
		if i == 0 {
			out[i] = a[i]
		} else {
			out[i] = a[i] != a[i-1]
		}
	}
	return out
}

func containsTrue(b []bool) bool {
	for _, v := range b {
		if v {
			return true
		}
	}
	return false
}

// outPath is OUT/<detector>/<relative dir>/<detector>_<file name>.
func outPath(opts Options, rel string) string {
	dir, file := path.Split(rel)
	return filepath.Join(opts.Out, opts.Detector, filepath.FromSlash(dir), opts.Detector+"_"+file)
}

func writeFile(opts Options, s *series, scores []float64, alerts, label []bool, top []string) error {
	p := outPath(opts, s.rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("%w: cannot create results directory: %v", ErrData, err)
	}
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("%w: cannot write results: %v", ErrData, err)
	}
	w := bufio.NewWriter(f)
	b := make([]byte, 0, 128)
	if opts.Format == FormatNABCSV {
		w.WriteString("timestamp,value,anomaly_score,label\n")
	} else {
		// NAB's four columns first; "value" is the detector's statistic
		// over its limit, since a SKAB row has eight sensor values.
		w.WriteString("timestamp,value,anomaly_score,label,changepoint,alert,top_field\n")
	}
	for i := range s.times {
		b = b[:0]
		b = append(b, s.raw[i]...)
		b = append(b, ',')
		if opts.Format == FormatNABCSV {
			b = append(b, s.rawVal[i]...)
		} else {
			b = strconv.AppendFloat(b, ratioOf(scores[i]), 'g', 6, 64)
		}
		b = append(b, ',')
		// Full precision, so that NAB's scorer reading the file sees the
		// scores the harness scored.
		b = strconv.AppendFloat(b, scores[i], 'g', -1, 64)
		b = append(b, ',')
		b = appendBool(b, label[i])
		if opts.Format == FormatSKAB {
			b = append(b, ',')
			b = appendBool(b, s.cp != nil && s.cp[i])
			b = append(b, ',')
			b = appendBool(b, alerts[i])
			b = append(b, ',')
			b = append(b, csvField(top[i])...)
		}
		b = append(b, '\n')
		w.Write(b)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("%w: writing %s: %v", ErrData, p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: writing %s: %v", ErrData, p, err)
	}
	return nil
}

// ratioOf inverts the score mapping: statistic over limit.
func ratioOf(score float64) float64 {
	if score <= 0 {
		return 0
	}
	if score >= 1 {
		return math.Inf(1)
	}
	return -math.Log2(1 - score)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, '1')
	}
	return append(b, '0')
}

func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// writeSummary writes summary.json and NAB-style score tables.
func writeSummary(opts Options, sum *Summary) error {
	dir := filepath.Join(opts.Out, opts.Detector)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: cannot create results directory: %v", ErrData, err)
	}
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("%w: writing summary: %v", ErrData, err)
	}
	// One table per profile, in the columns of NAB's <detector>_<profile>_scores.csv.
	for _, p := range nab.Profiles() {
		var sb strings.Builder
		sb.WriteString("Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count,Windows_Detected,Windows_Missed,NAB_Score\n")
		var total nab.Tally
		var conf nab.Confusion
		for _, f := range sum.Files {
			// nab-csv tables hold NAB's own rule, so NAB's scorer would
			// write the same rows for these results files.
			r, ok := f.NAB[p.Name]
			c := f.Pointwise.Confusion
			if opts.Format == FormatNABCSV {
				r, ok = f.NABRule[p.Name]
				if f.RuleCounts != nil {
					c = *f.RuleCounts
				}
			}
			if !ok {
				continue
			}
			total = total.Add(r.Tally)
			conf = conf.Add(c)
			fmt.Fprintf(&sb, "%s,%s,%s,%g,%v,%d,%d,%d,%d,%d,%d,%d,%.2f\n", opts.Detector, p.Name, csvField(f.File), 1-sum.Sensitivity, r.Raw,
				c.TP, c.TN, c.FP, c.FN, c.TP+c.TN+c.FP+c.FN, r.TP, r.FN, r.Score)
		}
		fmt.Fprintf(&sb, "%s,%s,Totals,%g,%v,%d,%d,%d,%d,%d,%d,%d,%.2f\n", opts.Detector, p.Name, 1-sum.Sensitivity, total.Raw,
			conf.TP, conf.TN, conf.FP, conf.FN, conf.TP+conf.TN+conf.FP+conf.FN, total.TP, total.FN, total.Normalized())
		name := filepath.Join(dir, opts.Detector+"_"+p.Name+"_scores.csv")
		if err := os.WriteFile(name, []byte(sb.String()), 0o644); err != nil {
			return fmt.Errorf("%w: writing %s: %v", ErrData, name, err)
		}
	}
	return nil
}

// sortedKeys lists a NAB set's profiles in the standard order.
func sortedKeys(s NABSet) []string {
	var ks []string
	for _, p := range nab.Profiles() {
		if _, ok := s[p.Name]; ok {
			ks = append(ks, p.Name)
		}
	}
	return ks
}
