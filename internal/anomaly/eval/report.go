package eval

import (
	"fmt"
	"io"
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
	printNAB(w, label, s.NAB)
	if s.SKABNAB != nil {
		printNAB(w, "changepoint NAB (SKAB leaderboard rules)", s.SKABNAB)
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
