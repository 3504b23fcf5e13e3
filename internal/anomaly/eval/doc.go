// Package eval is the anomaly evaluation harness and the "shopfloor
// anomaly" command (NewCommand). It streams labelled files (SKAB or NAB
// CSV) through a fresh detector per file, one row at a time, exactly as
// the hub would, and writes NAB-format results, NAB score tables and a
// JSON summary.
//
// Protocol, stated so results are honest:
//   - SKAB: the detector's warm-up is the 400 training rows of each file;
//     its alarm limit is set from those rows only; rows 400+ are scored.
//     Point-wise metrics use the anomaly column over the test rows of the
//     34 files with anomalies (anomaly-free.csv is reported separately as
//     false alarms per 10,000 rows). Changepoint NAB: 60 s windows after
//     each changepoint; detections are the rows where the alert state
//     changes (SKAB's published convention for outlier detectors), or, for
//     the changepoint detector, whose alerts are change events, the
//     alerting rows themselves; scored both with the NAB paper rules and
//     with SKAB's leaderboard variant. TestSKABPeriodicBaseline scores a
//     detector that reports every P rows regardless of the data: quote
//     changepoint scores beside it.
//   - Development split: defaults may be tuned on the development
//     folders only (Options.DevFolders, SKAB default valve1); every run
//     also reports the held-out folders (valve2 and other for SKAB) and
//     all labelled files, as Summary.Splits. Figures quoted anywhere must
//     give the held-out ones. The anomaly-free file is not in any split:
//     it is reported as alarms per 10,000 rows, and it was looked at
//     during development (it is the false-alarm target), so that figure
//     is not held out.
//   - TestEvalSKAB (go test -run TestEvalSKAB -v ./internal/anomaly/eval/)
//     prints the table of every detector and split; RESULTS.md holds it.
//     TestSKABFalseAlarmFrontier prints what lower false-alarm rates cost
//     in F1 (sensitivity, alert half-life, anomaly likelihood, multi-field
//     confirmation).
//   - nab-csv: warm-up is NAB's probationary period. Two scores: "NAB
//     (alert onsets)", each alert onset a detection, as the hub raises
//     alerts; and "NAB's rule", every row whose written anomaly_score is at
//     or above the alert level 1 − sensitivity, which is what NAB's own
//     scorer gives for the results files (the score tables hold this one).
//     Neither is tuned on labels. --nab-optimize adds NAB's leaderboard
//     figure, the threshold that maximises the score chosen on the labels
//     as NAB's optimiser does: an upper bound, comparable with NAB's
//     published scores only over the whole corpus. Files missing from the
//     labels file are not scored, as in NAB. The scorer is checked against
//     NAB's published results by nab.TestPublishedNABResults (set
//     SHOPFLOOR_NAB).
//
// It must not import the hub's runtime packages (bus, gateway, api).
package eval
