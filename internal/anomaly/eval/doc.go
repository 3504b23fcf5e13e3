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
//   - nab-csv: warm-up is NAB's probationary period; each alert onset is a
//     detection. Thresholds are the detector's own alert level: nothing is
//     tuned on labels, unlike NAB's threshold optimiser.
//
// It must not import the hub's runtime packages (bus, gateway, api).
package eval
