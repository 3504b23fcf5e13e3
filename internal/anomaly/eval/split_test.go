package eval

import (
	"testing"

	"github.com/shopfloor/shopfloor/internal/anomaly/nab"
)

func TestSplitsPartitionTheLabelledFiles(t *testing.T) {
	mk := func(file string, labelled bool, c nab.Confusion, raw float64) FileResult {
		tl := nab.Tally{Raw: raw, Null: -2, Perfect: 2, TP: 1, FN: 1}
		return FileResult{File: file, Labelled: labelled, Pointwise: metricsOf(c),
			NAB: NABSet{"standard": {Tally: tl}}, SKABNAB: NABSet{"standard": {Tally: tl}}}
	}
	files := []FileResult{
		mk("valve1/0.csv", true, nab.Confusion{TP: 10, FP: 2, TN: 30, FN: 5}, 1),
		mk("valve1/1.csv", true, nab.Confusion{TP: 4, FP: 0, TN: 20, FN: 1}, 0.5),
		mk("other/1.csv", true, nab.Confusion{TP: 1, FP: 9, TN: 10, FN: 8}, -1),
		mk("valve2/0.csv", true, nab.Confusion{TP: 7, FP: 1, TN: 10, FN: 0}, 2),
		// Unlabelled files count in no split.
		mk("anomaly-free/anomaly-free.csv", false, nab.Confusion{FP: 100, TN: 9000}, -50),
	}
	sp := splits(files, []string{"valve1"})
	if len(sp) != 3 {
		t.Fatalf("%d splits, want dev, held-out, all", len(sp))
	}
	dev, held, all := sp[0], sp[1], sp[2]
	if dev.Files != 2 || held.Files != 2 || all.Files != 4 {
		t.Fatalf("files dev %d held-out %d all %d, want 2, 2, 4", dev.Files, held.Files, all.Files)
	}
	if got := held.Folders; len(got) != 2 || got[0] != "other" || got[1] != "valve2" {
		t.Errorf("held-out folders %v, want [other valve2]", got)
	}
	if dev.Pointwise.Confusion != (nab.Confusion{TP: 14, FP: 2, TN: 50, FN: 6}) {
		t.Errorf("dev confusion %+v", dev.Pointwise.Confusion)
	}
	if all.Pointwise.Confusion != dev.Pointwise.Confusion.Add(held.Pointwise.Confusion) {
		t.Errorf("all %+v is not dev + held-out", all.Pointwise.Confusion)
	}
	// NAB normalises the summed tallies: dev raw 1.5 over null −4 and
	// perfect 4 is 100·5.5/8.
	if got := dev.NAB["standard"].Score; got < 68.74 || got > 68.76 {
		t.Errorf("dev NAB %v, want 68.75", got)
	}
	// Flag-everything over dev: 20 positives, 52 negatives: 2·20/(2·20+52).
	if got, want := dev.AlwaysOnF1, 40.0/92; got != want {
		t.Errorf("dev flag-everything F1 %v, want %v", got, want)
	}
}
