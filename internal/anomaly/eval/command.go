package eval

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
)

// NewCommand returns the "anomaly" command with its "eval" subcommand.
func NewCommand(logger *slog.Logger) *cobra.Command {
	root := &cobra.Command{
		Use:   "anomaly",
		Short: "Streaming anomaly detection tools",
	}
	root.AddCommand(newEvalCommand(logger))
	return root
}

func newEvalCommand(logger *slog.Logger) *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "eval --data DIR --format skab|nab-csv --out DIR",
		Short: "Run the detectors over a labelled dataset, one point at a time, and score them",
		Long: `Runs an anomaly detector over every CSV file under --data exactly as it would
run on live data: one row at a time, scoring each row before learning from it.

Formats:
  skab     ';'-separated SKAB files (datetime, 8 sensors, anomaly, changepoint).
           The first 400 rows of each file are training (the detector's warm-up,
           which also sets its alarm limit); the rest is scored.
  nab-csv  NAB data files "timestamp,value" (other columns are ignored);
           labels from --labels in NAB combined-windows JSON, whose keys are
           paths relative to --data (point --data at NAB's data directory).
           Files not in the labels file are not scored, as in NAB. The
           detector learns during NAB's probationary period. anomaly_score
           is the univariate detector's likelihood score (a calibrated tail
           probability: 0.5 at 1e-5, high where an anomaly starts), the
           other detectors' alert score. Reported: NAB
           score of the alert onsets (how the hub raises alerts), and NAB's
           own rule on the written anomaly_score at the alert level
           1 - sensitivity (what NAB's scorer gives for the results files;
           the score tables hold this). --nab-optimize adds NAB's leaderboard
           figure: the anomaly_score threshold that maximises the score,
           chosen on the labels (an upper bound, not a deployable setting).

Writes OUT/<detector>/<relative dir>/<detector>_<file> with columns
timestamp,value,anomaly_score,label (SKAB adds changepoint,alert,top_field),
OUT/<detector>/<detector>_<profile>_scores.csv per NAB profile, and
OUT/<detector>/summary.json.

Detectors:
` + DetectorHelp(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Data == "" || o.Out == "" {
				return fmt.Errorf("both --data and --out are required")
			}
			logger.Info("anomaly eval starting", "data", o.Data, "format", o.Format, "detector", o.Detector)
			sum, err := Run(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			printSummary(cmd.OutOrStdout(), sum)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Data, "data", "", "dataset directory (read recursively)")
	f.StringVar(&o.Format, "format", FormatSKAB, "input format: skab or nab-csv")
	f.StringVar(&o.Out, "out", "", "results directory")
	f.StringVar(&o.Labels, "labels", "", "NAB combined-windows JSON (nab-csv only)")
	f.BoolVar(&o.NABOptimize, "nab-optimize", false, "nab-csv: also report the NAB score at the threshold NAB's optimiser picks on the labels")
	f.StringVar(&o.Detector, "detector", "", "detector name (default: the best measured one for the format)")
	f.Float64Var(&o.Sensitivity, "sensitivity", 0.5, "alert when score >= 1-sensitivity")
	f.IntVar(&o.Warmup, "warmup", 0, "learning period in rows (default: the protocol's)")
	f.Float64Var(&o.Model.Variance, "variance", 0, "pca: variance share kept in the principal subspace (default 0.9)")
	f.IntVar(&o.Model.Smoothing, "smoothing", 0, "pca: span of the score smoothing in rows (default 20)")
	f.Float64Var(&o.Model.Margin, "margin", 0, "limit = margin × largest statistic while calibrating (default 1; changepoint 1.5)")
	f.IntVar(&o.Model.Window, "window", 0, "univariate: short window span in rows (default 20)")
	f.IntVar(&o.Model.HalfLife, "halflife", 0, "post-warm-up adaptation half-life in rows (default 5 × warm-up)")
	f.IntVar(&o.Model.AlertHalfLife, "alert-halflife", 0, "univariate: adaptation half-life while alerting (default 4 × halflife)")
	f.Float64Var(&o.Model.Wander, "wander", 0, "univariate: how fast the normal wander of each field's level is learned, relative to the level (default 0.25; -1 turns it off)")
	f.IntVar(&o.Model.Persist, "persist", 0, "univariate: points in a row above the alert level before an alert starts (default 30)")
	f.Float64Var(&o.Model.Hysteresis, "hysteresis", 0, "univariate: fraction of the alert level below which an alert ends (default 0.1)")
	f.Float64Var(&o.Model.Drift, "drift", 0, "changepoint: CUSUM drift k in noise sd (default 0.5)")
	f.Float64Var(&o.Model.Floor, "floor", 0, "changepoint: lowest CUSUM limit h in noise sd (default 10)")
	f.IntVar(&o.Model.Refractory, "refractory", 0, "changepoint: rows after a report with no other (default 10)")
	return cmd
}
