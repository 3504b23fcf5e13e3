package eval

import (
	"fmt"
	"io"
	"strings"

	"github.com/shopfloor/shopfloor/internal/anomaly/nab"
)

func printSummary(w io.Writer, s *Summary) {
	fmt.Fprintf(w, "detector %s, format %s, sensitivity %g, %d files, %s (%.0f points/s)\n", s.Detector, s.Format, s.Sensitivity, len(s.Files), s.Elapsed, s.PointsPerS)
	p := s.Pointwise
	fmt.Fprintf(w, "point-wise: precision %.3f recall %.3f F1 %.3f (FAR %.1f%%, MAR %.1f%%; TP %d FP %d TN %d FN %d; flag-everything F1 %.3f)\n",
		p.Precision, p.Recall, p.F1, 100*p.FAR, 100*p.MAR, p.TP, p.FP, p.TN, p.FN, s.AlwaysOnF1)
	label := "NAB"
	if s.Format == FormatSKAB {
		label = "changepoint NAB (paper rules)"
	}
	if s.Format == FormatNABCSV {
		label = "NAB (alert onsets)"
	}
	printNAB(w, label, s.NAB)
	printNAB(w, fmt.Sprintf("NAB (NAB's rule: rows with anomaly_score >= %g)", 1-s.Sensitivity), s.NABRule)
	if len(s.NABOptimized) > 0 {
		fmt.Fprint(w, "NAB (threshold optimised on the labels, as NAB's leaderboard; an upper bound):")
		for _, p := range nab.Profiles() {
			if r, ok := s.NABOptimized[p.Name]; ok {
				fmt.Fprintf(w, " %s %.2f (threshold %.6g; windows %d/%d, FP %d)", p.Name, r.Score, r.Threshold, r.TP, r.TP+r.FN, r.FP)
			}
		}
		fmt.Fprintln(w)
	}
	if s.SKABNAB != nil {
		printNAB(w, "changepoint NAB (SKAB leaderboard rules)", s.SKABNAB)
	}
	if len(s.Splits) > 0 && s.Format == FormatSKAB {
		fmt.Fprintln(w, "splits (defaults were tuned on dev only):")
		printSplits(w, s)
	}
	if s.FreeRows > 0 {
		fmt.Fprintf(w, "anomaly-free files: %d alerts in %d rows (%.2f per 10,000)\n", s.FreeAlerts, s.FreeRows, s.FreeAlertsPer10k)
	}
}

func printNAB(w io.Writer, label string, set NABSet) {
	if len(set) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:", label)
	for _, k := range sortedKeys(set) {
		r := set[k]
		fmt.Fprintf(w, " %s %.2f", k, r.Score)
	}
	if r, ok := set["standard"]; ok {
		fmt.Fprintf(w, " (windows detected %d, missed %d, false positives %d)", r.TP, r.FN, r.FP)
	}
	fmt.Fprintln(w)
}

// printSplits writes one line per split: point-wise F1 and NAB standard
// under both rule sets.
func printSplits(w io.Writer, s *Summary) {
	for _, sp := range s.Splits {
		fmt.Fprintf(w, "  %-8s %2d files %-22s F1 %.3f (P %.3f R %.3f; flag-everything %.3f)  NAB standard %.2f (paper) %.2f (SKAB rules)  windows %d/%d, FP %d\n",
			sp.Name, sp.Files, strings.Join(sp.Folders, "+"), sp.Pointwise.F1, sp.Pointwise.Precision, sp.Pointwise.Recall, sp.AlwaysOnF1,
			sp.NAB["standard"].Score, sp.SKABNAB["standard"].Score, sp.NAB["standard"].TP, sp.NAB["standard"].TP+sp.NAB["standard"].FN, sp.NAB["standard"].FP)
	}
}

// Table formats several runs over the same data as a Markdown table: one
// row per detector and split, plus false alarms on anomaly-free files and
// throughput.
func Table(sums []*Summary) string {
	var b strings.Builder
	b.WriteString("| detector | split | files | point F1 | precision | recall | NAB std (paper) | NAB std (SKAB) | NAB low-FP (paper) | NAB low-FN (paper) | CP windows hit | CP FPs |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range sums {
		for _, sp := range s.Splits {
			std := sp.NAB["standard"]
			fmt.Fprintf(&b, "| %s | %s (%s) | %d | %.3f | %.3f | %.3f | %.2f | %.2f | %.2f | %.2f | %d/%d | %d |\n",
				s.Detector, sp.Name, strings.Join(sp.Folders, "+"), sp.Files, sp.Pointwise.F1, sp.Pointwise.Precision, sp.Pointwise.Recall,
				std.Score, sp.SKABNAB["standard"].Score, sp.NAB["reward_low_FP_rate"].Score, sp.NAB["reward_low_FN_rate"].Score,
				std.TP, std.TP+std.FN, std.FP)
		}
	}
	b.WriteString("\n| detector | anomaly-free alarms | rows | per 10,000 | eval rows/s (incl. CSV read and result writing, one run) |\n|---|---:|---:|---:|---:|\n")
	for _, s := range sums {
		fmt.Fprintf(&b, "| %s | %d | %d | %.2f | %.0f |\n", s.Detector, s.FreeAlerts, s.FreeRows, s.FreeAlertsPer10k, s.PointsPerS)
	}
	return b.String()
}
