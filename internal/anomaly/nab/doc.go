// Package nab scores anomaly detections: the Numenta Anomaly Benchmark rules
// (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms — the
// Numenta Anomaly Benchmark", ICMLA 2015) with its standard,
// reward-low-FP and reward-low-FN profiles; the variant used by SKAB's
// published changepoint leaderboard (Katser & Kozitsin 2020); and
// point-wise precision, recall and F1; and NAB's threshold sweep and
// optimiser (Sweep, Optimize). Implemented from the papers' rules, not from
// NAB's (AGPL) or TSAD's (GPL) code; TestPublishedNABResults checks the
// scores against results NAB published (opt-in: SHOPFLOOR_NAB).
//
// It must not import anything else from shopfloor.
package nab
