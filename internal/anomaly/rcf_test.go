package anomaly

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/shopfloor/shopfloor/internal/anomaly/synth"
)

// checkTree verifies a tree's invariants: parent links, counts equal to the
// samples below, boxes that are exactly the hull of the points below, cuts
// that separate the children, and slots that point at live leaves.
func checkTree(t *testing.T, tr *rcTree, D int) {
	t.Helper()
	if tr.root == none {
		if tr.nheap != 0 {
			t.Fatalf("empty tree with %d samples", tr.nheap)
		}
		return
	}
	var walk func(r, parent int32) (int32, []float64, []float64)
	walk = func(r, parent int32) (int32, []float64, []float64) {
		if tr.parent(r) != parent {
			t.Fatalf("node %d: parent %d, want %d", r, tr.parent(r), parent)
		}
		if r < 0 {
			p := tr.pt[int(^r)*D : int(^r)*D+D]
			return tr.lf[^r].cnt, append([]float64(nil), p...), append([]float64(nil), p...)
		}
		cl, llo, lhi := walk(tr.nd[r].left, r)
		cr, rlo, rhi := walk(tr.nd[r].right, r)
		k, c := tr.nd[r].dim, tr.nd[r].cut
		if !(lhi[k] <= c && rlo[k] > c) {
			t.Fatalf("node %d: cut %v on dim %d does not separate left max %v from right min %v", r, c, k, lhi[k], rlo[k])
		}
		if tr.nd[r].cnt != cl+cr {
			t.Fatalf("node %d: count %d, children %d+%d", r, tr.nd[r].cnt, cl, cr)
		}
		lo, hi := tr.box(r, D)
		for j := 0; j < D; j++ {
			if lo[j] != math.Min(llo[j], rlo[j]) || hi[j] != math.Max(lhi[j], rhi[j]) {
				t.Fatalf("node %d dim %d: box [%v,%v], hull [%v,%v]", r, j, lo[j], hi[j], math.Min(llo[j], rlo[j]), math.Max(lhi[j], rhi[j]))
			}
		}
		return tr.nd[r].cnt, append([]float64(nil), lo...), append([]float64(nil), hi...)
	}
	total, _, _ := walk(tr.root, none)
	if total != tr.nheap {
		t.Fatalf("tree holds %d samples, reservoir %d", total, tr.nheap)
	}
	refs := map[int32]int32{}
	for s := int32(0); s < tr.nheap; s++ {
		refs[tr.sleaf[s]]++
	}
	for l, c := range refs {
		if tr.lf[l].cnt != c {
			t.Fatalf("leaf %d: multiplicity %d, %d slots", l, tr.lf[l].cnt, c)
		}
	}
	for i := int32(1); i < tr.nheap; i++ {
		if tr.skey[tr.heap[i]] < tr.skey[tr.heap[(i-1)/2]] {
			t.Fatalf("reservoir heap out of order at %d", i)
		}
	}
}

func TestRCFTreeInvariants(t *testing.T) {
	f, err := NewRCF(RCFConfig{Fields: []string{"a", "b"}, Trees: 4, SampleSize: 32, Shingle: 2, Warmup: 40, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	var res Result
	for i := 0; i < 3000; i++ {
		// Quantised values make repeats, which exercise leaf multiplicity.
		x := []float64{math.Round(4 * r.NormFloat64()), 100 * r.Float64()}
		if i%7 == 0 {
			x[1] = 50
		}
		f.Observe(x, &res)
		if i%97 == 0 || i == 19 || i == 20 || i == 21 {
			for k := range f.trees {
				checkTree(t, &f.trees[k], f.D)
			}
		}
	}
}

// rcfRun feeds rows and returns copies of the results.
func rcfRun(t *testing.T, f *RCF, rows [][]float64) []Result {
	t.Helper()
	out := make([]Result, len(rows))
	var r Result
	for i, x := range rows {
		f.Observe(x, &r)
		if r.Score < 0 || r.Score > 1 || math.IsNaN(r.Score) {
			t.Fatalf("row %d: score %v", i, r.Score)
		}
		if !r.Warm && (r.Alert || r.Score != 0) {
			t.Fatalf("row %d: alert %v score %v while warming up", i, r.Alert, r.Score)
		}
		out[i] = r
		out[i].Contributions = append([]Contribution(nil), r.Contributions...)
	}
	return out
}

func column(vals []float64) [][]float64 {
	rows := make([][]float64, len(vals))
	for i, v := range vals {
		rows[i] = []float64{v}
	}
	return rows
}

func TestRCFSyntheticFaults(t *testing.T) {
	// Report, per fault, the alert rows before and after onset; the faults
	// a forest of past shapes is built for must alert within the bound.
	cases := []struct {
		fault  synth.Fault
		size   float64
		within int // 0: not required (reported only)
	}{
		{synth.Spike, 12, 5},
		{synth.Shift, 6, 10},
		{synth.Variance, 5, 40},
		{synth.Stuck, 0, 0},   // reported only: a repeated value sits inside the sample
		{synth.Drift, 8, 600}, // 8 sd over 1,000 rows
	}
	for _, c := range cases {
		t.Run(c.fault.String(), func(t *testing.T) {
			const at = 2000
			vals, _ := synth.Series(synth.Spec{N: 3000, Level: 50, Noise: 2, Fault: c.fault, At: at, Size: c.size, Seed: 7})
			f, err := NewRCF(RCFConfig{Fields: []string{"temp"}})
			if err != nil {
				t.Fatal(err)
			}
			res := rcfRun(t, f, column(vals))
			before, after, first := 0, 0, -1
			for i, r := range res {
				if !r.Alert {
					continue
				}
				if i < at {
					before++
					continue
				}
				after++
				if first < 0 {
					first = i
					if len(r.Contributions) == 0 || r.Contributions[0].Field != "temp" {
						t.Errorf("first alert explained by %+v", r.Contributions)
					}
				}
			}
			t.Logf("%s: %d alert rows on %d clean rows, %d after onset, first at +%d", c.fault, before, at-400, after, first-at)
			if before > 3 {
				t.Errorf("%d alerts before the fault", before)
			}
			if c.within > 0 && (first < 0 || first >= at+c.within) {
				t.Fatalf("first alert at row %d, want within %d rows of %d", first, c.within, at)
			}
		})
	}
}

func TestRCFQuietOnNoise(t *testing.T) {
	for _, d := range []int{1, 2, 8} {
		names := make([]string, d)
		for i := range names {
			names[i] = fmt.Sprint("f", i)
		}
		r := rand.New(rand.NewPCG(5, uint64(d)))
		f, _ := NewRCF(RCFConfig{Fields: names})
		var res Result
		x := make([]float64, d)
		alerts, scored := 0, 0
		const n = 25000
		for i := 0; i < n; i++ {
			for j := range x {
				x[j] = float64(j*100) + float64(j+1)*r.NormFloat64() // mixed units
			}
			f.Observe(x, &res)
			if res.Warm {
				scored++
			}
			if res.Alert {
				alerts++
			}
		}
		per10k := 1e4 * float64(alerts) / float64(scored)
		t.Logf("Gaussian noise, %d fields: %d alert rows in %d scored (%.2f per 10,000)", d, alerts, scored, per10k)
		if per10k > 5 {
			t.Errorf("%d fields: %.1f alert rows per 10,000 on Gaussian noise", d, per10k)
		}
	}
}

func TestRCFNamesSpikedField(t *testing.T) {
	rows, _ := synth.Correlated{N: 1200, D: 4, K: 2, Noise: 0.3, Seed: 8}.Rows()
	fields := []string{"a", "b", "c", "d"}
	for k := range fields {
		t.Run(fields[k], func(t *testing.T) {
			f, _ := NewRCF(RCFConfig{Fields: fields, Seed: uint64(k)})
			x := make([][]float64, len(rows))
			for i := range rows {
				x[i] = append([]float64(nil), rows[i]...)
			}
			const at = 1000
			x[at][k] += 10 // several standard deviations of that field
			res := rcfRun(t, f, x)
			if !res[at].Alert {
				t.Fatalf("spike in %s did not alert (score %.3f)", fields[k], res[at].Score)
			}
			c := res[at].Contributions
			if len(c) == 0 || c[0].Field != fields[k] || c[0].Reason != ReasonSpike {
				t.Fatalf("spike in %s explained as %+v", fields[k], c)
			}
			sum := 0.0
			for _, x := range c {
				sum += x.Share
			}
			if sum > 1+1e-9 {
				t.Errorf("shares sum to %v", sum)
			}
		})
	}
}

// TestRCFSeasonalJump is a NAB-style case: daily seasonality (5-minute
// steps, so 288 points a day; amplitude 10, noise sd 1) with a +30 jump
// for 10 points at row 2500. A shingle sees that the recent shape is unlike
// any in the sample. The alert may outlast the jump while the smoothed
// displacement decays, but must end within 100 rows, and nothing else may
// alert.
func TestRCFSeasonalJump(t *testing.T) {
	vals, _ := synth.Series(synth.Spec{N: 4000, Level: 0, Noise: 1, SeasonAmp: 10, SeasonPeriod: 288, Seed: 21})
	const at = 2500
	for i := at; i < at+10; i++ {
		vals[i] += 30
	}
	f, _ := NewRCF(RCFConfig{Fields: []string{"value"}, Warmup: 600}) // NAB probation: 15% of 4000
	res := rcfRun(t, f, column(vals))
	first, elsewhere, best := -1, 0, 0.0
	for i, r := range res {
		switch {
		case i >= at && i < at+10:
			best = math.Max(best, r.Score)
			if r.Alert && first < 0 {
				first = i
			}
		case r.Alert && (i < at || i >= at+100):
			elsewhere++
		}
	}
	u, _ := NewUnivariate(UnivariateConfig{Field: "value", Warmup: 600})
	ur := runUni(t, u, vals)
	ubest := 0.0
	for i := at; i < at+10; i++ {
		ubest = math.Max(ubest, ur[i].Score)
	}
	t.Logf("jump: RCF first alert at +%d, best score %.3f, %d alert rows elsewhere; univariate best score %.3f", first-at, best, elsewhere, ubest)
	if first < 0 {
		t.Fatalf("no alert during the +30 jump (best score %.3f)", best)
	}
	if elsewhere > 0 {
		t.Errorf("%d alert rows away from the jump", elsewhere)
	}
}

func TestRCFMissingValues(t *testing.T) {
	rows, _ := synth.Correlated{N: 1500, D: 3, K: 1, Noise: 0.1, Seed: 4}.Rows()
	f, _ := NewRCF(RCFConfig{Fields: []string{"a", "b", "c"}})
	var res Result
	alerts := 0
	for i, row := range rows {
		if i > 600 && i%3 == 0 {
			row[1] = math.NaN()
		}
		f.Observe(row, &res)
		if res.Alert {
			alerts++
		}
		if math.IsNaN(res.Score) {
			t.Fatalf("row %d: NaN score", i)
		}
	}
	if alerts > 3 {
		t.Fatalf("%d alerts with one field missing on every third row", alerts)
	}
	// An all-missing point is scored (as the previous values) but not learned.
	n := f.n
	f.Observe([]float64{math.NaN(), math.NaN(), math.NaN()}, &res)
	if f.n != n || math.IsNaN(res.Score) {
		t.Fatalf("all-missing point: learned %v, score %v", f.n != n, res.Score)
	}
}

func TestRCFSnapshotRestore(t *testing.T) {
	rows, _ := synth.Correlated{N: 1400, D: 3, K: 2, Noise: 0.2, At: 1000, Field: 1, Break: 1, Seed: 5}.Rows()
	fields := []string{"a", "b", "c"}
	for _, warm := range []int{400, 1000} { // after and during warm-up
		t.Run(fmt.Sprint(warm), func(t *testing.T) {
			cfg := RCFConfig{Fields: fields, Warmup: warm, Trees: 10, SampleSize: 64, Seed: 9}
			a, _ := NewRCF(cfg)
			b, _ := NewRCF(cfg)
			snapshotCase(t, a, b, rows)
			// snapshotCase compares scores; the forests must match too.
			ab, _ := a.MarshalBinary()
			bb, _ := b.MarshalBinary()
			if string(ab) != string(bb) {
				t.Fatal("restored forest diverged from the original")
			}
		})
	}
	a, _ := NewRCF(RCFConfig{Fields: fields, Seed: 1})
	blob, _ := a.MarshalBinary()
	for _, c := range []RCFConfig{{Fields: fields, Seed: 2}, {Fields: fields, Seed: 1, Shingle: 3}, {Fields: fields[:2], Seed: 1}} {
		b, _ := NewRCF(c)
		if err := b.UnmarshalBinary(blob); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%+v: err %v, want ErrSnapshot", c, err)
		}
	}
	p, _ := NewPCA(PCAConfig{Fields: fields})
	if err := p.UnmarshalBinary(blob); !errors.Is(err, ErrSnapshot) {
		t.Errorf("pca reading an rcf snapshot: %v", err)
	}
}

func TestRCFMemory(t *testing.T) {
	for _, c := range []struct {
		fields, shingle int
	}{{1, 4}, {8, 1}, {8, 4}} {
		names := make([]string, c.fields)
		for i := range names {
			names[i] = fmt.Sprint("f", i)
		}
		f, _ := NewRCF(RCFConfig{Fields: names, Shingle: c.shingle})
		var arrays int
		for i := range f.trees {
			tr := &f.trees[i]
			for _, v := range [][]int32{tr.sleaf, tr.heap, tr.freeI, tr.freeL} {
				arrays += 4 * len(v)
			}
			for _, v := range [][]float64{tr.bx, tr.pt, tr.skey} {
				arrays += 8 * len(v)
			}
			arrays += int(unsafe.Sizeof(rcNode{}))*len(tr.nd) + 8*len(tr.lf)
		}
		got := f.MemoryBytes()
		t.Logf("%d fields, shingle %d: %d bytes (tree arrays %d)", c.fields, c.shingle, got, arrays)
		if got < arrays || got > arrays+arrays/20+4096 {
			t.Errorf("MemoryBytes %d, tree arrays alone %d", got, arrays)
		}
		if avg := testing.AllocsPerRun(100, func() { var r Result; f.Observe(make([]float64, c.fields), &r) }); avg > 2 {
			t.Errorf("%v allocations per point", avg)
		}
	}
}

func TestRCFConfigErrors(t *testing.T) {
	for _, c := range []RCFConfig{{}, {Fields: []string{"a"}, Shingle: -1}, {Fields: []string{"a"}, SampleSize: 1}, {Fields: make([]string, 9), Shingle: 30}} {
		if _, err := NewRCF(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err %v, want ErrConfig", c, err)
		}
	}
}

func benchRCF(b *testing.B, d int) {
	names := make([]string, d)
	for i := range names {
		names[i] = fmt.Sprint("f", i)
	}
	f, err := NewRCF(RCFConfig{Fields: names})
	if err != nil {
		b.Fatal(err)
	}
	benchObserve(b, f, 2000) // past warm-up: the steady state is measured
}

func BenchmarkRCF1(b *testing.B) { benchRCF(b, 1) }
func BenchmarkRCF8(b *testing.B) { benchRCF(b, 8) }

// TestManagerRCFKind runs the rcf kind through the Manager, snapshots it and
// checks the restored device continues identically.
func TestManagerRCFKind(t *testing.T) {
	names := []string{"a", "b", "c"}
	rows, _ := synth.Correlated{N: 900, D: 3, K: 1, Noise: 0.2, Seed: 8}.Rows()
	for i := 700; i < len(rows); i++ {
		rows[i][0] += 5 // a level shift of several sd in field a
	}
	t0 := time.Unix(1e9, 0)
	mk := func() *Manager {
		m, err := NewManager(ManagerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetTemplate("o", "forest", Template{Kind: KindRCF, Fields: names}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := mk()
	feed(t, a, "o", "dev", "forest", rows[:500], names, t0)
	var buf bytes.Buffer
	if err := a.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	b := mk()
	if skipped, err := b.Restore(bytes.NewReader(buf.Bytes())); err != nil || skipped != 0 {
		t.Fatalf("restore: skipped %d, err %v", skipped, err)
	}
	ra := feed(t, a, "o", "dev", "forest", rows[500:], names, t0.Add(500*time.Second))
	rb := feed(t, b, "o", "dev", "forest", rows[500:], names, t0.Add(500*time.Second))
	alerts := 0
	for i := range ra {
		if ra[i].Score != rb[i].Score || ra[i].Alert != rb[i].Alert {
			t.Fatalf("update %d: original %+v, restored %+v", 500+i, ra[i].Result, rb[i].Result)
		}
		if ra[i].Alert {
			alerts++
		}
	}
	if alerts == 0 {
		t.Errorf("no alert after field a shifted")
	}
	if err := (&Manager{}).SetTemplate("o", "x", Template{Kind: "forest"}); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown kind: err %v", err)
	}
}

// TestRCFCorruptSnapshot flips bytes of a snapshot: each restore must either
// be refused or give a detector that keeps running.
func TestRCFCorruptSnapshot(t *testing.T) {
	rows, _ := synth.Correlated{N: 700, D: 2, K: 1, Noise: 0.2, Seed: 2}.Rows()
	cfg := RCFConfig{Fields: []string{"a", "b"}, Trees: 3, SampleSize: 16, Warmup: 100, Seed: 4}
	a, _ := NewRCF(cfg)
	var res Result
	for _, x := range rows[:500] {
		a.Observe(x, &res)
	}
	blob, _ := a.MarshalBinary()
	r := rand.New(rand.NewPCG(3, 3))
	refused := 0
	for trial := 0; trial < 2000; trial++ {
		c := append([]byte(nil), blob...)
		i := r.IntN(len(c))
		c[i] ^= byte(1 << r.IntN(8))
		b, _ := NewRCF(cfg)
		if err := b.UnmarshalBinary(c); err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("byte %d: err %v, want ErrSnapshot", i, err)
			}
			refused++
			continue
		}
		for _, x := range rows[500:520] {
			b.Observe(x, &res)
		}
	}
	t.Logf("%d of 2000 corrupted snapshots refused", refused)
}
