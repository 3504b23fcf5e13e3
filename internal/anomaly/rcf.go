package anomaly

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"
)

// RCFConfig configures the random cut forest detector.
type RCFConfig struct {
	// Fields are the numeric fields the model covers (at least 1).
	Fields []string
	// Sensitivity in (0,1): an alert needs Score >= 1-Sensitivity. Default 0.5.
	Sensitivity float64
	// Warmup is the learning period in points: the first half fills the
	// trees and learns each field's scale, the second half is scored to set
	// the alarm limit. Default 400.
	Warmup int
	// Shingle is how many consecutive points are concatenated into one
	// tree point, so the shape of the recent series is what is scored.
	// Default 4/len(Fields), at least 1: a single series needs a shingle to
	// see shapes (a step on a seasonal cycle), while on SKAB's 8 fields
	// shingles 1, 2, 4 and 8 scored alike and 1 is fastest.
	Shingle int
	// Trees is the number of trees. Default 20: on SKAB valve1, 20 × 128
	// scored as well as 50 × 256 (within the spread between seeds) and
	// keeps 8 fields above 50,000 points per second.
	Trees int
	// SampleSize is the number of points each tree holds. Default 128.
	SampleSize int
	// Memory is the mean age, in points, of a tree's sample: the time decay
	// of the weighted reservoir is 1/Memory. Default 16 × SampleSize.
	Memory int
	// Smoothing is the span, in points, of the exponential average whose
	// limit is checked beside the instant displacement's. Default 40.
	Smoothing int
	// ScaleHalfLife is the half-life, in points, of the per-field scale
	// statistics after warm-up. Default 5 × Warmup.
	ScaleHalfLife int
	// Margin multiplies the limit found while calibrating. Default 1.
	Margin float64
	// Floor is the lowest limit of the instant displacement, in multiples
	// of its mean while calibrating: its tail is far heavier than a short
	// calibration run shows. Default 12 (set on Gaussian noise).
	Floor float64
	// SmoothFloor is the same for the smoothed displacement. Default 3 for
	// one field, 2 for more (the lowest that keep Gaussian noise under 1
	// alert row per 10,000; see RESULTS.md).
	SmoothFloor float64
	// Seed makes the forest reproducible. Zero is a valid seed.
	Seed uint64
}

// rcfMaxDims bounds Fields × Shingle so one model stays a sensible size.
const rcfMaxDims = 256

func (c *RCFConfig) withDefaults() (RCFConfig, error) {
	o := *c
	o.Fields = append([]string(nil), c.Fields...)
	if len(o.Fields) == 0 {
		return o, fmt.Errorf("%w: a random cut forest needs at least one field", ErrConfig)
	}
	if err := baseDefaults(&o.Sensitivity, &o.Warmup); err != nil {
		return o, err
	}
	if o.Shingle == 0 {
		o.Shingle = max(1, 4/len(o.Fields))
	}
	if o.Trees == 0 {
		o.Trees = 20
	}
	if o.SampleSize == 0 {
		o.SampleSize = 128
	}
	if o.Memory == 0 {
		o.Memory = 16 * o.SampleSize
	}
	if o.Smoothing == 0 {
		o.Smoothing = 40
	}
	if o.ScaleHalfLife == 0 {
		o.ScaleHalfLife = 5 * o.Warmup
	}
	if o.Margin == 0 {
		o.Margin = 1
	}
	if o.Floor == 0 {
		o.Floor = 12
	}
	if o.SmoothFloor == 0 {
		o.SmoothFloor = 2
		if len(o.Fields) == 1 {
			o.SmoothFloor = 3
		}
	}
	if o.Warmup < 8 || o.Floor < 0 || o.SmoothFloor < 0 || o.Shingle < 1 || o.Trees < 1 || o.SampleSize < 2 || o.SampleSize > 1<<20 ||
		o.Memory < 1 || o.Smoothing < 1 || o.ScaleHalfLife < 1 || o.Margin < 0 {
		return o, fmt.Errorf("%w: random cut forest needs warm-up ≥ 8, sample size ≥ 2 and positive shingle, trees, memory, smoothing and half-life", ErrConfig)
	}
	if len(o.Fields)*o.Shingle > rcfMaxDims {
		return o, fmt.Errorf("%w: %d fields × shingle %d is more than %d dimensions; split the template or shorten the shingle", ErrConfig, len(o.Fields), o.Shingle, rcfMaxDims)
	}
	return o, nil
}

// none marks an absent node reference.
const none = math.MinInt32

// rcTree is one robust random cut tree over at most n sample points (Guha
// et al. 2016). Node references are int32: r ≥ 0 is internal node r, r < 0
// (and not none) is leaf ^r. A leaf holds a distinct point and how many
// sample slots share it, so repeated values need no cut. All storage is
// allocated once.
type rcTree struct {
	root int32
	// Internal nodes (n−1) and their boxes: node i's lower corner is
	// bx[2Di:2Di+D], its upper corner the next D values (kept together
	// so a visit touches few cache lines).
	nd []rcNode
	bx []float64
	// Leaves (n): point (pt[Dl:Dl+D]), parent and multiplicity.
	lf []rcLeaf
	pt []float64
	// Sample slots (n): their leaf and reservoir key; heap is a min-heap of
	// slots by key.
	sleaf []int32
	skey  []float64
	heap  []int32
	nheap int32
	// Free lists of internal nodes and leaves.
	freeI, freeL   []int32
	nFreeI, nFreeL int32
}

// rcNode is an internal node: children, parent, the cut (dimension and
// value) and how many samples lie below.
type rcNode struct {
	left, right, up, dim, cnt int32
	cut                       float64
}

type rcLeaf struct{ up, cnt int32 }

func (t *rcTree) reset() {
	t.root = none
	t.nheap = 0
	ni, nl := int32(len(t.nd)), int32(len(t.lf))
	for i := int32(0); i < ni; i++ {
		t.freeI[i] = ni - 1 - i
	}
	for i := int32(0); i < nl; i++ {
		t.freeL[i] = nl - 1 - i
	}
	t.nFreeI, t.nFreeL = ni, nl
}

func (t *rcTree) size(r int32) int32 {
	if r >= 0 {
		return t.nd[r].cnt
	}
	return t.lf[^r].cnt
}

func (t *rcTree) parent(r int32) int32 {
	if r >= 0 {
		return t.nd[r].up
	}
	return t.lf[^r].up
}

func (t *rcTree) setParent(r, p int32) {
	if r >= 0 {
		t.nd[r].up = p
	} else {
		t.lf[^r].up = p
	}
}

// box returns the bounding box of a node; a leaf's is its point.
func (t *rcTree) box(r int32, D int) (lo, hi []float64) {
	if r >= 0 {
		o := 2 * int(r) * D
		return t.bx[o : o+D], t.bx[o+D : o+2*D]
	}
	o := int(^r) * D
	p := t.pt[o : o+D]
	return p, p
}

// replaceChild points old's parent p (or the root) at nw.
func (t *rcTree) replaceChild(p, old, nw int32) {
	switch {
	case p == none:
		t.root = nw
	case t.nd[p].left == old:
		t.nd[p].left = nw
	default:
		t.nd[p].right = nw
	}
	t.setParent(nw, p)
}

// insert adds m samples of x to the tree, drawing cuts with u (uniform in
// [0,1)), and returns the leaf that holds them. leaf is a detached leaf
// that already holds x (when rebuilding), or none for a new one; the
// caller guarantees a free leaf and node.
func (t *rcTree) insert(x []float64, D int, u func() float64, leaf, m int32) int32 {
	if t.root == none {
		l := t.leafFor(leaf, x, D, m)
		t.root = ^l
		t.lf[l].up = none
		return l
	}
	r, p := t.root, int32(none)
	for {
		lo, hi := t.box(r, D)
		total := 0.0
		for k, v := range x {
			total += max(hi[k], v) - min(lo[k], v)
		}
		if total > 0 {
			// Cut the box grown to hold x: dimension proportional to its
			// range, value uniform within it. A cut outside the old box
			// separates x from everything below r.
			c := u() * total
			for k, v := range x {
				a, b := min(lo[k], v), max(hi[k], v)
				w := b - a
				if c >= w && k < D-1 {
					c -= w
					continue
				}
				cv := a + c
				if (v <= cv && cv < lo[k]) || (hi[k] <= cv && cv < v) {
					return t.split(r, p, x, k, cv, D, leaf, m)
				}
				break
			}
		}
		if r < 0 { // a repeat of the leaf's point (or lost to rounding)
			l := ^r
			t.lf[l].cnt += m
			return l
		}
		blo, bhi := t.box(r, D)
		for k, v := range x {
			if v < blo[k] {
				blo[k] = v
			}
			if v > bhi[k] {
				bhi[k] = v
			}
		}
		t.nd[r].cnt += m
		p = r
		if x[t.nd[r].dim] <= t.nd[r].cut {
			r = t.nd[r].left
		} else {
			r = t.nd[r].right
		}
	}
}

// leafFor returns the leaf to hold m samples of x: the given detached one
// or a fresh one.
func (t *rcTree) leafFor(leaf int32, x []float64, D int, m int32) int32 {
	l := leaf
	if l == none {
		t.nFreeL--
		l = t.freeL[t.nFreeL]
		copy(t.pt[int(l)*D:int(l)*D+D], x)
	}
	t.lf[l].cnt = m
	return l
}

// split puts a new node above r (child of p) that cuts dimension k at cv,
// with x's leaf on one side and r on the other.
func (t *rcTree) split(r, p int32, x []float64, k int, cv float64, D int, leaf, m int32) int32 {
	l := t.leafFor(leaf, x, D, m)
	t.nFreeI--
	w := t.freeI[t.nFreeI]
	t.nd[w].dim, t.nd[w].cut = int32(k), cv
	if x[k] <= cv {
		t.nd[w].left, t.nd[w].right = ^l, r
	} else {
		t.nd[w].left, t.nd[w].right = r, ^l
	}
	lo, hi := t.box(r, D)
	wlo, whi := t.box(w, D)
	for j, v := range x {
		wlo[j] = min(lo[j], v)
		whi[j] = max(hi[j], v)
	}
	t.nd[w].cnt = t.size(r) + m
	t.replaceChild(p, r, w)
	t.setParent(r, w)
	t.lf[l].up = w
	return l
}

// remove takes one sample off leaf l, deleting the leaf (and its parent)
// when none is left and shrinking the boxes above.
func (t *rcTree) remove(l int32, D int) {
	t.lf[l].cnt--
	for a := t.lf[l].up; a != none; a = t.nd[a].up {
		t.nd[a].cnt--
	}
	if t.lf[l].cnt > 0 {
		return
	}
	t.freeL[t.nFreeL] = l
	t.nFreeL++
	p := t.lf[l].up
	if p == none {
		t.root = none
		return
	}
	sib := t.nd[p].left
	if sib == ^l {
		sib = t.nd[p].right
	}
	g := t.nd[p].up
	t.replaceChild(g, p, sib)
	t.freeI[t.nFreeI] = p
	t.nFreeI++
	for a := g; a != none; a = t.nd[a].up {
		llo, lhi := t.box(t.nd[a].left, D)
		rlo, rhi := t.box(t.nd[a].right, D)
		alo, ahi := t.box(a, D)
		changed := false
		for k := 0; k < D; k++ {
			nl, nh := min(llo[k], rlo[k]), max(lhi[k], rhi[k])
			if nl != alo[k] || nh != ahi[k] {
				changed = true
				alo[k], ahi[k] = nl, nh
			}
		}
		if !changed {
			break
		}
	}
}

// codisp is the expected collusive displacement of x as if it were
// inserted (the expectation over the insertion's random cut, computed
// exactly along x's path). At each node v, x is cut off with probability
// p = (growth of the box)/(range of the grown box); it then becomes the
// sibling of v, and its displacement is the largest of |v|/1 and
// |sibling(u)|/(|u|+1) for v and its ancestors u. attr[k] gets dimension
// k's part: the separation probability split by each dimension's growth.
// Dimensions marked in miss (imputed values; nil for none) never grow the
// box: the point is taken to lie within the sample there.
func (t *rcTree) codisp(x []float64, D int, attr []float64, miss []bool) float64 {
	r := t.root
	if r == none {
		return 0
	}
	reach, anc, total, psz := 1.0, 0.0, 0.0, 0.0
	for {
		sz := float64(t.size(r))
		if psz > 0 { // the sibling holds the parent's samples less r's
			if a := (psz - sz) / (sz + 1); a > anc {
				anc = a
			}
		}
		psz = sz
		lo, hi := t.box(r, D)
		lo, hi = lo[:len(x)], hi[:len(x)]
		grow := 0.0
		for k, v := range x {
			switch l, h := lo[k], hi[k]; {
			case v < l:
				if miss == nil || !miss[k] {
					grow += l - v
				}
			case v > h:
				if miss == nil || !miss[k] {
					grow += v - h
				}
			}
		}
		rng := 0.0
		if grow > 0 { // usually x lies inside the box and this is skipped
			for k, l := range lo {
				rng += hi[k] - l
			}
			c := float64(sz)
			if anc > c {
				c = anc
			}
			w := reach * c / (grow + rng)
			total += w * grow
			for k, v := range x {
				if miss != nil && miss[k] {
					continue
				}
				if l := lo[k]; v < l {
					attr[k] += w * (l - v)
				} else if h := hi[k]; v > h {
					attr[k] += w * (v - h)
				}
			}
			reach *= rng / (grow + rng)
		}
		if r < 0 {
			if grow == 0 { // a repeat of this leaf's point
				total += reach * anc
			}
			return total
		}
		if reach < 1e-12 {
			return total
		}
		if x[t.nd[r].dim] <= t.nd[r].cut {
			r = t.nd[r].left
		} else {
			r = t.nd[r].right
		}
	}
}

// Heap of sample slots by key (smallest first).
func (t *rcTree) heapLess(i, j int32) bool { return t.skey[t.heap[i]] < t.skey[t.heap[j]] }

func (t *rcTree) heapPush(s int32) {
	i := t.nheap
	t.heap[i] = s
	t.nheap++
	for i > 0 {
		p := (i - 1) / 2
		if !t.heapLess(i, p) {
			break
		}
		t.heap[i], t.heap[p] = t.heap[p], t.heap[i]
		i = p
	}
}

func (t *rcTree) heapFix0() {
	i, n := int32(0), t.nheap
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.heapLess(r, l) {
			m = r
		}
		if !t.heapLess(m, i) {
			return
		}
		t.heap[i], t.heap[m] = t.heap[m], t.heap[i]
		i = m
	}
}

// RCF is a shingled robust random cut forest detector (see doc.go).
type RCF struct {
	cfg            RCFConfig
	d, D, nt, ns   int
	fitN           int64
	lambda         float64 // reservoir time decay per point
	beta           float64 // smoothing rate
	alphaS         float64 // post-warm-up scale learning rate
	rescaleEvery   int64
	rng            rand.PCG
	n              int64 // points learned
	calN           int64
	cal            [2]tail    // instant and smoothed displacement while calibrating
	limit          [2]float64 // their limits
	stat           float64    // smoothed mean displacement
	sattr          []float64  // smoothed per-field attribution
	alert          bool
	sinceRescale   int64
	mean, vr       []float64 // per-field running moments
	cm, cs         []float64 // centre and scale the trees are in
	prev           []float64 // last value per field
	ring           []float64 // last Shingle raw points, Shingle × d
	ringMiss       []bool    // which ring values were imputed
	qMiss          []bool    // scratch: ringMiss in q's order
	nMiss          int       // how many ring values were imputed
	head           int       // index of the oldest point in ring
	started        bool
	trees          []rcTree
	q, attr, fattr []float64 // scratch
	newest         []float64 // scratch: per-field part from the newest point
	uf             func() float64
}

// NewRCF builds a random cut forest detector.
func NewRCF(cfg RCFConfig) (*RCF, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := len(c.Fields)
	D := d * c.Shingle
	n := c.SampleSize
	f := &RCF{
		cfg:          c,
		d:            d,
		D:            D,
		nt:           c.Trees,
		ns:           n,
		fitN:         int64(c.Warmup / 2),
		lambda:       1 / float64(c.Memory),
		beta:         2 / (float64(c.Smoothing) + 1),
		alphaS:       1 - math.Exp2(-1/float64(c.ScaleHalfLife)),
		rescaleEvery: int64(4 * n),
		mean:         make([]float64, d),
		vr:           make([]float64, d),
		cm:           make([]float64, d),
		cs:           make([]float64, d),
		prev:         make([]float64, d),
		ring:         make([]float64, D),
		ringMiss:     make([]bool, D),
		qMiss:        make([]bool, D),
		trees:        make([]rcTree, c.Trees),
		q:            make([]float64, D),
		attr:         make([]float64, D),
		fattr:        make([]float64, d),
		sattr:        make([]float64, d),
		newest:       make([]float64, d),
	}
	f.rng = *rand.NewPCG(c.Seed, c.Seed^0x5851f42d4c957f2d)
	f.uf = f.uniform
	for i := range f.cs {
		f.cs[i] = 1 // until the first half of warm-up sets the scale
		f.prev[i] = math.NaN()
	}
	// One allocation per array kind, sliced per tree.
	ni := n - 1
	i32 := make([]int32, c.Trees*(ni+3*n))
	f64 := make([]float64, c.Trees*(2*ni*D+n*D+n))
	nodes := make([]rcNode, c.Trees*ni)
	leaves := make([]rcLeaf, c.Trees*n)
	take32 := func(k int) []int32 { s := i32[:k:k]; i32 = i32[k:]; return s }
	take64 := func(k int) []float64 { s := f64[:k:k]; f64 = f64[k:]; return s }
	for i := range f.trees {
		t := &f.trees[i]
		t.nd, t.lf = nodes[i*ni:(i+1)*ni:(i+1)*ni], leaves[i*n:(i+1)*n:(i+1)*n]
		t.sleaf, t.heap = take32(n), take32(n)
		t.freeI, t.freeL = take32(ni), take32(n)
		t.bx = take64(2 * ni * D)
		t.pt = take64(n * D)
		t.skey = take64(n)
		t.reset()
	}
	return f, nil
}

func (f *RCF) uniform() float64 { return float64(f.rng.Uint64()>>11) * (1.0 / (1 << 53)) }

// Fields implements Detector.
func (f *RCF) Fields() []string { return f.cfg.Fields }

// MemoryBytes implements Detector: the forest's arrays, the per-field state
// and scratch, and the fixed part, excluding the shared field names.
func (f *RCF) MemoryBytes() int {
	n, ni, D, d := f.ns, f.ns-1, f.D, f.d
	perTree := 4*(ni+3*n) + 8*(2*ni*D+n*D+n) + ni*int(unsafe.Sizeof(rcNode{})) + n*int(unsafe.Sizeof(rcLeaf{})) + int(unsafe.Sizeof(rcTree{}))
	return f.nt*perTree + 8*(8*d+3*D) + 2*D + int(unsafe.Sizeof(*f))
}

// Observe implements Detector. A missing value (NaN or ±Inf) is replaced
// by the field's previous value (its centre before any value arrived); the
// point is scored but not learned, so gaps teach the model nothing.
func (f *RCF) Observe(x []float64, res *Result) {
	res.Contributions = res.Contributions[:0]
	res.Score, res.Alert = 0, false
	warm := f.n >= int64(f.cfg.Warmup)
	res.Warm = warm
	res.WarmupRemaining = 0
	if !warm {
		res.WarmupRemaining = f.cfg.Warmup - int(f.n)
	}
	d := f.d
	complete := true
	newest := f.ring[f.head*d : f.head*d+d] // the slot the oldest point leaves
	nmiss := f.ringMiss[f.head*d : f.head*d+d]
	for i := 0; i < d; i++ {
		v := x[i]
		if nmiss[i] {
			f.nMiss--
		}
		nmiss[i] = false
		if math.IsNaN(v) || math.IsInf(v, 0) {
			complete = false
			nmiss[i] = true
			f.nMiss++
			v = f.prev[i]
			if math.IsNaN(v) {
				v = f.cm[i]
			}
		}
		newest[i] = v
	}
	if !f.started { // fill the shingle with the first point
		for s := 0; s < f.cfg.Shingle; s++ {
			copy(f.ring[s*d:s*d+d], newest)
			copy(f.ringMiss[s*d:s*d+d], nmiss)
		}
		f.nMiss *= f.cfg.Shingle
		f.started = true
	}
	f.head = (f.head + 1) % f.cfg.Shingle
	f.point()

	// Score before learning.
	for k := range f.attr {
		f.attr[k] = 0
	}
	var miss []bool
	if f.nMiss > 0 {
		miss = f.qMiss
	}
	if f.n >= f.fitN {
		disp := 0.0
		for i := range f.trees {
			disp += f.trees[i].codisp(f.q, f.D, f.attr, miss)
		}
		disp /= float64(f.nt)
		f.fieldParts()
		if f.calN == 0 {
			f.stat = disp
			copy(f.sattr, f.fattr)
		} else {
			f.stat += f.beta * (disp - f.stat)
			for i, a := range f.fattr {
				f.sattr[i] += f.beta * (a - f.sattr[i])
			}
		}
		switch {
		case !warm:
			f.cal[0].add(disp)
			// Calibrate the average once it has forgotten its start (or
			// over the second half of a short calibration).
			if f.calN >= min(int64(f.cfg.Smoothing), (int64(f.cfg.Warmup)-f.fitN)/2) {
				f.cal[1].add(f.stat)
			}
			f.calN++
		default:
			r0, r1 := disp/f.limit[0], f.stat/f.limit[1]
			r := max(r0, r1)
			res.Score = scoreOf(r)
			// Hysteresis: an alert lasts while the statistic stays above a
			// fraction of the alert level.
			need := -math.Log2(f.cfg.Sensitivity)
			if f.alert {
				need *= rcfHysteresis
			}
			res.Alert = r >= need
			f.alert = res.Alert
			if res.Score >= alertLevel(f.cfg.Sensitivity)/2 {
				f.explain(res, r1 > r0)
			}
		}
	}

	for i := 0; i < d; i++ {
		if v := x[i]; !math.IsNaN(v) && !math.IsInf(v, 0) {
			f.prev[i] = v
		}
	}
	if !complete {
		return
	}
	f.learnScale(x, warm, res.Alert)
	f.insert(res.Alert)
	f.n++
	switch {
	case f.n == f.fitN:
		f.refit()
	case f.n == int64(f.cfg.Warmup):
		// The instant displacement's tail is far heavier than a short
		// calibration shows: floor its limit at Floor × the mean. The
		// smoothed one is autocorrelated: moment-matched tail (calib.go).
		f.limit[0] = math.Max(f.cfg.Margin*f.cal[0].max, f.cfg.Floor*f.cal[0].mean)
		f.limit[1] = math.Max(f.cfg.Margin*math.Max(f.cal[1].limit(), f.cal[1].max), f.cfg.SmoothFloor*f.cal[1].mean)
		for i, l := range f.limit {
			if !(l > 0) {
				f.limit[i] = 1 // a calibration with no displacement at all
			}
		}
	case warm:
		f.sinceRescale++
		if f.sinceRescale >= f.rescaleEvery {
			f.rescale()
		}
	}
}

// point writes the normalised shingle, oldest point first, into q.
func (f *RCF) point() {
	d, S := f.d, f.cfg.Shingle
	for s := 0; s < S; s++ {
		o := ((f.head + s) % S) * d
		src := f.ring[o : o+d]
		dst := f.q[s*d : s*d+d]
		for i := range dst {
			dst[i] = (src[i] - f.cm[i]) / f.cs[i]
		}
		copy(f.qMiss[s*d:s*d+d], f.ringMiss[o:o+d])
	}
}

// fieldParts sums the attribution of this point over shingle positions
// into per-field parts (fattr) and keeps the newest position's (newest).
func (f *RCF) fieldParts() {
	d, S := f.d, f.cfg.Shingle
	for i := 0; i < d; i++ {
		f.fattr[i], f.newest[i] = 0, f.attr[(S-1)*d+i]
	}
	for k, a := range f.attr {
		f.fattr[k%d] += a
	}
}

// explain names the fields by their share of the displacement: of this
// point's (a spike when most of the field's part comes from the newest
// point, else a shift: the recent pattern as a whole is unlike the
// sample), or, when the smoothed statistic leads, of the smoothed parts
// (a shift).
func (f *RCF) explain(res *Result, smoothed bool) {
	parts := f.fattr
	if smoothed {
		parts = f.sattr
	}
	total := 0.0
	for _, a := range parts {
		total += a
	}
	if total <= 0 {
		return
	}
	for i, a := range parts {
		s := a / total
		if s < minShare {
			continue
		}
		reason := ReasonShift
		if !smoothed && f.newest[i] >= 0.5*a {
			reason = ReasonSpike
		}
		res.Contributions = append(res.Contributions, Contribution{Field: f.cfg.Fields[i], Share: s, Reason: reason})
	}
	sortContributions(res.Contributions)
}

// learnScale updates each field's mean and variance: exact while warming
// up, then exponentially forgotten with values winsorised at 6 sd, and
// four times slower while alerting.
func (f *RCF) learnScale(x []float64, warm, alert bool) {
	a := 1 / float64(f.n+1)
	if warm {
		a = math.Max(a, f.alphaS)
		if alert {
			a /= 4
		}
	}
	for i, v := range x {
		if f.n >= f.fitN {
			s := 6 * f.cs[i]
			v = math.Max(math.Min(v, f.mean[i]+s), f.mean[i]-s)
		}
		dv := v - f.mean[i]
		f.mean[i] += a * dv
		f.vr[i] = (1 - a) * (f.vr[i] + a*dv*dv)
	}
}

// scaleOf is the field's current spread, floored so a field that barely
// moves does not turn rounding into distance.
func (f *RCF) scaleOf(i int) float64 {
	s := math.Sqrt(math.Max(f.vr[i], 0))
	if floor := 1e-9 + 1e-6*math.Abs(f.mean[i]); s < floor {
		s = floor
	}
	return s
}

// insert offers the current point to every tree's time-decayed weighted
// reservoir (Efraimidis & Spirakis 2006, with weight e^{λt}): its key is
// λt − ln(−ln u), and it replaces the sample with the smallest key when
// larger. A point scored as an alert gets a quarter of the weight.
func (f *RCF) insert(alert bool) {
	base := f.lambda * float64(f.n)
	if alert {
		base -= math.Ln2 * 2
	}
	for i := range f.trees {
		t := &f.trees[i]
		u := (float64(f.rng.Uint64()>>11) + 0.5) * (1.0 / (1 << 53))
		key := base - math.Log(-math.Log(u))
		var slot int32
		if t.nheap < int32(f.ns) {
			slot = t.nheap
			t.skey[slot] = key
			t.sleaf[slot] = t.insert(f.q, f.D, f.uf, none, 1)
			t.heapPush(slot)
			continue
		}
		slot = t.heap[0]
		if key <= t.skey[slot] {
			continue
		}
		t.remove(t.sleaf[slot], f.D)
		t.sleaf[slot] = t.insert(f.q, f.D, f.uf, none, 1)
		t.skey[slot] = key
		t.heapFix0()
	}
}

// refit sets the scale from the first half of warm-up and rebuilds every
// tree on its sample in the new units, so cut dimensions are chosen by
// normalised ranges from then on. (Random cut trees built by insertion
// have the same distribution whatever the order, so rebuilding by
// inserting the distinct points again is a fresh forest on the sample.)
func (f *RCF) refit() {
	for i := 0; i < f.d; i++ {
		f.affine(i, f.mean[i], f.scaleOf(i))
	}
	D := f.D
	for ti := range f.trees {
		t := &f.trees[ti]
		f.transformLeaves(t)
		t.root = none
		ni := int32(len(t.nd))
		for i := int32(0); i < ni; i++ {
			t.freeI[i] = ni - 1 - i
		}
		t.nFreeI = ni
		for l := int32(0); l < int32(f.ns); l++ {
			m := t.lf[l].cnt
			if m <= 0 { // free leaf
				continue
			}
			got := t.insert(t.pt[int(l)*D:int(l)*D+D], D, f.uf, l, m)
			if got == l {
				continue
			}
			// Rounding made l equal to a point already placed: l's samples
			// moved there; free l.
			t.lf[l].cnt = 0
			t.freeL[t.nFreeL] = l
			t.nFreeL++
			for s := int32(0); s < t.nheap; s++ {
				if t.sleaf[s] == l {
					t.sleaf[s] = got
				}
			}
		}
	}
	f.sinceRescale = 0
}

// affine records field i's new centre and scale, returning the map
// v' = a·v + b from the old units to the new.
func (f *RCF) affine(i int, centre, scale float64) (a, b float64) {
	a = f.cs[i] / scale
	b = (f.cm[i] - centre) / scale
	f.cm[i], f.cs[i] = centre, scale
	return a, b
}

// transformLeaves maps leaf points from the units before refit (the raw
// values: centre 0, scale 1) into the current units.
func (f *RCF) transformLeaves(t *rcTree) {
	d := f.d
	for k := range t.pt {
		i := k % d
		t.pt[k] = (t.pt[k] - f.cm[i]) / f.cs[i]
	}
}

// rescale moves the trees to the slowly learned scale: an increasing
// affine map per dimension keeps every cut's sides, so points, boxes and
// cuts are mapped and the trees stay valid.
func (f *RCF) rescale() {
	f.sinceRescale = 0
	d := f.d
	as, bs := f.fattr, f.newest // scratch
	for i := 0; i < d; i++ {
		as[i], bs[i] = f.affine(i, f.mean[i], f.scaleOf(i))
	}
	for ti := range f.trees {
		t := &f.trees[ti]
		for k := range t.pt {
			t.pt[k] = as[k%d]*t.pt[k] + bs[k%d]
		}
		for k := range t.bx {
			t.bx[k] = as[k%d]*t.bx[k] + bs[k%d]
		}
		for k := range t.nd {
			i := int(t.nd[k].dim) % d
			t.nd[k].cut = as[i]*t.nd[k].cut + bs[i]
		}
	}
}

const rcfVersion = 1

func encI32s(e *encoder, v []int32) {
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.b = binary.LittleEndian.AppendUint32(e.b, uint32(x))
	}
}

// i32 reads one little-endian int32.
func (d *decoder) i32() int32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail("integer")
		return 0
	}
	v := int32(binary.LittleEndian.Uint32(d.b))
	d.b = d.b[4:]
	return v
}

func decI32s(d *decoder, dst []int32) {
	n := d.length(4)
	if d.err != nil {
		return
	}
	if n != len(dst) {
		d.fail("array size")
		return
	}
	for i := range dst {
		dst[i] = int32(binary.LittleEndian.Uint32(d.b))
		d.b = d.b[4:]
	}
}

func decF64s(d *decoder, dst []float64) {
	n := d.length(8)
	if d.err == nil && n != len(dst) {
		d.fail("array size")
	}
	for i := range dst {
		dst[i] = d.f64()
	}
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (f *RCF) MarshalBinary() ([]byte, error) {
	e := encoder{b: make([]byte, 0, f.MemoryBytes())}
	e.header("rcf", rcfVersion)
	e.strs(f.cfg.Fields)
	c := f.cfg
	for _, v := range []int{c.Warmup, c.Shingle, c.Trees, c.SampleSize, c.Memory, c.Smoothing, c.ScaleHalfLife} {
		e.i64(int64(v))
	}
	e.f64(c.Margin)
	e.f64(c.Floor)
	e.f64(c.SmoothFloor)
	e.u64(c.Seed)
	rb, err := f.rng.MarshalBinary()
	if err != nil {
		return nil, err
	}
	e.str(string(rb))
	e.i64(f.n)
	e.i64(f.calN)
	for i := range f.cal {
		f.cal[i].encode(&e)
		e.f64(f.limit[i])
	}
	e.f64(f.stat)
	e.f64s(f.sattr)
	flags := int64(0)
	if f.alert {
		flags |= 1
	}
	if f.started {
		flags |= 2
	}
	e.i64(flags)
	e.i64(f.sinceRescale)
	e.i64(int64(f.head))
	for _, v := range [][]float64{f.mean, f.vr, f.cm, f.cs, f.prev, f.ring} {
		e.f64s(v)
	}
	e.u64(uint64(len(f.ringMiss)))
	for _, m := range f.ringMiss {
		if m {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
	}
	for i := range f.trees {
		t := &f.trees[i]
		e.i64(int64(t.root))
		e.i64(int64(t.nheap))
		e.i64(int64(t.nFreeI))
		e.i64(int64(t.nFreeL))
		for _, x := range t.nd {
			for _, v := range [...]int32{x.left, x.right, x.up, x.dim, x.cnt} {
				e.b = binary.LittleEndian.AppendUint32(e.b, uint32(v))
			}
			e.f64(x.cut)
		}
		for _, x := range t.lf {
			e.b = binary.LittleEndian.AppendUint32(e.b, uint32(x.up))
			e.b = binary.LittleEndian.AppendUint32(e.b, uint32(x.cnt))
		}
		for _, v := range [][]int32{t.sleaf, t.heap, t.freeI, t.freeL} {
			encI32s(&e, v)
		}
		for _, v := range [][]float64{t.bx, t.pt, t.skey} {
			e.f64s(v)
		}
	}
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. The receiver must
// have been built with the same fields, model settings and seed;
// sensitivity may differ.
func (f *RCF) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	d.header("rcf", rcfVersion)
	fields := d.strs()
	var ints [7]int64
	for i := range ints {
		ints[i] = d.i64()
	}
	margin, floor, sfloor, seed := d.f64(), d.f64(), d.f64(), d.u64()
	if d.err != nil {
		return d.err
	}
	c := f.cfg
	want := [7]int{c.Warmup, c.Shingle, c.Trees, c.SampleSize, c.Memory, c.Smoothing, c.ScaleHalfLife}
	same := equalStrings(fields, c.Fields) && margin == c.Margin && floor == c.Floor && sfloor == c.SmoothFloor && seed == c.Seed
	for i, v := range want {
		same = same && ints[i] == int64(v)
	}
	if !same {
		return fmt.Errorf("%w: the snapshot was taken with different fields, model settings or seed; the model will relearn", ErrSnapshot)
	}
	t, err := NewRCF(c)
	if err != nil {
		return err
	}
	if err := t.rng.UnmarshalBinary([]byte(d.str())); err != nil && d.err == nil {
		d.err = fmt.Errorf("%w: random state: %v", ErrSnapshot, err)
	}
	t.n, t.calN = d.i64(), d.i64()
	for i := range t.cal {
		t.cal[i].decode(&d)
		t.limit[i] = d.f64()
	}
	t.stat = d.f64()
	decF64s(&d, t.sattr)
	flags := d.i64()
	t.alert, t.started = flags&1 != 0, flags&2 != 0
	t.sinceRescale = d.i64()
	t.head = int(d.i64())
	for _, v := range [][]float64{t.mean, t.vr, t.cm, t.cs, t.prev, t.ring} {
		decF64s(&d, v)
	}
	if n := d.length(1); d.err == nil {
		if n != len(t.ringMiss) {
			d.fail("array size")
		} else {
			for i := range t.ringMiss {
				t.ringMiss[i] = d.b[i] == 1
				if t.ringMiss[i] {
					t.nMiss++
				}
			}
			d.b = d.b[n:]
		}
	}
	for i := range t.trees {
		tr := &t.trees[i]
		tr.root, tr.nheap, tr.nFreeI, tr.nFreeL = int32(d.i64()), int32(d.i64()), int32(d.i64()), int32(d.i64())
		if len(d.b) < 24*len(tr.nd)+8*len(tr.lf) {
			d.fail("tree")
		}
		for k := range tr.nd {
			if d.err != nil {
				break
			}
			x := &tr.nd[k]
			x.left, x.right, x.up, x.dim, x.cnt = d.i32(), d.i32(), d.i32(), d.i32(), d.i32()
			x.cut = d.f64()
		}
		for k := range tr.lf {
			if d.err != nil {
				break
			}
			tr.lf[k].up, tr.lf[k].cnt = d.i32(), d.i32()
		}
		for _, v := range [][]int32{tr.sleaf, tr.heap, tr.freeI, tr.freeL} {
			decI32s(&d, v)
		}
		for _, v := range [][]float64{tr.bx, tr.pt, tr.skey} {
			decF64s(&d, v)
		}
	}
	if err := d.done(); err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	*f = *t
	f.uf = f.uniform // bound to the receiver, not the decoded copy
	return nil
}

// check rejects a snapshot whose indices would send the trees out of
// their arrays.
func (f *RCF) check() error {
	bad := fmt.Errorf("%w: tree indices out of range", ErrSnapshot)
	if f.n < 0 || f.head < 0 || f.head >= f.cfg.Shingle {
		return bad
	}
	ni, n := int32(f.ns-1), int32(f.ns)
	ref := func(r int32) bool { return r == none || (r >= 0 && r < ni) || (r < 0 && ^r < n) }
	for i := range f.trees {
		t := &f.trees[i]
		if !ref(t.root) || t.nheap < 0 || t.nheap > n || t.nFreeI < 0 || t.nFreeI > ni || t.nFreeL < 0 || t.nFreeL > n {
			return bad
		}
		for k := int32(0); k < ni; k++ {
			// Free nodes keep stale but valid values, never-used ones zeros.
			if !ref(t.nd[k].left) || !ref(t.nd[k].right) || !ref(t.nd[k].up) || t.nd[k].dim < 0 || int(t.nd[k].dim) >= f.D || t.freeI[k] < 0 || t.freeI[k] >= ni {
				return bad
			}
		}
		for k := int32(0); k < n; k++ {
			if !ref(t.lf[k].up) || t.sleaf[k] < 0 || t.sleaf[k] >= n || t.heap[k] < 0 || t.heap[k] >= n || t.freeL[k] < 0 || t.freeL[k] >= n {
				return bad
			}
		}
		if !t.wellFormed() {
			return fmt.Errorf("%w: a tree is not well formed", ErrSnapshot)
		}
	}
	return nil
}

// wellFormed checks what the algorithms rely on, so a corrupt snapshot
// cannot make them loop or reuse a live node: every node is reached once
// from the root with matching parent links and counts, the free lists
// hold exactly the unreached nodes, and the sample slots and heap cover
// the reached leaves' counts. (Indices are already known to be in range.)
func (t *rcTree) wellFormed() bool {
	ni, n := int32(len(t.nd)), int32(len(t.lf))
	seenI, seenL := make([]bool, ni), make([]bool, n)
	reachedI, reachedL := int32(0), int32(0)
	var count func(r, parent int32, depth int32) int32 // -1 when malformed
	count = func(r, parent, depth int32) int32 {
		if depth > ni+1 {
			return -1
		}
		if r < 0 {
			l := ^r
			if seenL[l] || t.lf[l].up != parent || t.lf[l].cnt <= 0 {
				return -1
			}
			seenL[l] = true
			reachedL++
			return t.lf[l].cnt
		}
		if seenI[r] || t.nd[r].up != parent {
			return -1
		}
		seenI[r] = true
		reachedI++
		a := count(t.nd[r].left, r, depth+1)
		b := count(t.nd[r].right, r, depth+1)
		if a < 0 || b < 0 || t.nd[r].left == none || t.nd[r].right == none || a+b != t.nd[r].cnt {
			return -1
		}
		return a + b
	}
	total := int32(0)
	if t.root != none {
		if total = count(t.root, none, 0); total < 0 {
			return false
		}
	}
	if total != t.nheap || reachedI+t.nFreeI != ni || reachedL+t.nFreeL != n {
		return false
	}
	slots := make([]int32, n)
	for _, l := range t.sleaf[:t.nheap] {
		slots[l]++
	}
	for l := int32(0); l < n; l++ {
		if (seenL[l] && slots[l] != t.lf[l].cnt) || (!seenL[l] && slots[l] != 0) {
			return false
		}
	}
	inHeap := make([]bool, n)
	for _, s := range t.heap[:t.nheap] {
		if s >= t.nheap || inHeap[s] {
			return false
		}
		inHeap[s] = true
	}
	for _, k := range t.freeI[:t.nFreeI] {
		if seenI[k] {
			return false
		}
		seenI[k] = true
	}
	for _, k := range t.freeL[:t.nFreeL] {
		if seenL[k] {
			return false
		}
		seenL[k] = true
	}
	return true
}

// rcfHysteresis is the fraction of the alert level below which an RCF
// alert ends (chosen on SKAB's valve1 against no hysteresis; RESULTS.md).
const rcfHysteresis = 0.7
