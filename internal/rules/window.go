package rules

import (
	"math"
	"time"
)

// stats summarises samples: count, mean and M2 (Welford, so stddev stays
// accurate for large values), min, max, sum, and the first and last sample
// for rate. Summaries of disjoint sets merge exactly (Chan et al.).
type stats struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	M2   float64 `json:"m2"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Sum  float64 `json:"sum"`
	T0   int64   `json:"t0"`
	TN   int64   `json:"tn"`
	V0   float64 `json:"v0"`
	VN   float64 `json:"vn"`
}

func (s *stats) add(t int64, v float64) {
	if s.N == 0 {
		*s = stats{N: 1, Mean: v, Min: v, Max: v, Sum: v, T0: t, TN: t, V0: v, VN: v}
		return
	}
	s.N++
	d := v - s.Mean
	s.Mean += d / float64(s.N)
	s.M2 += d * (v - s.Mean)
	s.Sum += v
	if v < s.Min {
		s.Min = v
	}
	if v > s.Max {
		s.Max = v
	}
	if t < s.T0 {
		s.T0, s.V0 = t, v
	}
	if t >= s.TN {
		s.TN, s.VN = t, v
	}
}

func (s *stats) merge(o *stats) {
	if o.N == 0 {
		return
	}
	if s.N == 0 {
		*s = *o
		return
	}
	n := s.N + o.N
	d := o.Mean - s.Mean
	s.Mean += d * float64(o.N) / float64(n)
	s.M2 += o.M2 + d*d*float64(s.N)*float64(o.N)/float64(n)
	s.N = n
	s.Sum += o.Sum
	s.Min = math.Min(s.Min, o.Min)
	s.Max = math.Max(s.Max, o.Max)
	if o.T0 < s.T0 {
		s.T0, s.V0 = o.T0, o.V0
	}
	if o.TN >= s.TN {
		s.TN, s.VN = o.TN, o.VN
	}
}

// value computes an aggregate; ok is false when it is undefined (no samples,
// or fewer than two distinct times for rate). count of nothing is 0.
func (s *stats) value(fn aggFunc) (float64, bool) {
	if fn == aggCount {
		return float64(s.N), true
	}
	if s.N == 0 {
		return 0, false
	}
	switch fn {
	case aggAvg:
		return s.Mean, true
	case aggMin:
		return s.Min, true
	case aggMax:
		return s.Max, true
	case aggSum:
		return s.Sum, true
	case aggStddev: // population standard deviation, as PromQL's stddev_over_time
		return math.Sqrt(math.Max(s.M2, 0) / float64(s.N)), true
	case aggRate: // per-second change between the first and last sample
		if s.TN == s.T0 {
			return 0, false
		}
		return (s.VN - s.V0) / (float64(s.TN-s.T0) / 1000), true
	}
	return 0, false
}

// window is one per-(rule, device, field) aggregate window with bounded
// memory. Times are unix milliseconds.
type window interface {
	add(t int64, v float64)
	// stats summarises the window as seen at time t; ok is false when the
	// window knows nothing yet.
	stats(t int64) (stats, bool)
	snap() windowSnap
}

const never = math.MinInt64

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// sliding covers the last Dur in fixed buckets of Dur/n: at time t it holds
// the samples whose bucket floor(ts/width) lies in (K-n, K], K =
// floor(t/width), i.e. between Dur-width and Dur of history. Memory is n
// summaries whatever the message rate.
type sliding struct {
	width int64
	idx   []int64
	b     []stats
	// The bucket of the last sample: consecutive samples usually land in
	// the same one, and finding it costs three divisions.
	lastLo, lastHi, lastK int64
	lastS                 int
}

func newSliding(d time.Duration, buckets int) *sliding {
	ms := d.Milliseconds()
	n := int64(buckets)
	if n < 1 {
		n = 1
	}
	if per := ms / 1000; per < n { // buckets no narrower than a second
		n = max(per, 1)
	}
	w := &sliding{width: ms / n, idx: make([]int64, n), b: make([]stats, n)}
	for i := range w.idx {
		w.idx[i] = never
	}
	return w
}

func (w *sliding) add(t int64, v float64) {
	if t >= w.lastLo && t < w.lastHi && w.idx[w.lastS] == w.lastK {
		w.b[w.lastS].add(t, v)
		return
	}
	k := floorDiv(t, w.width)
	n := int64(len(w.b))
	s := ((k % n) + n) % n
	switch {
	case w.idx[s] == k:
	case w.idx[s] > k:
		return // older than what the slot holds now: outside the window
	default:
		w.idx[s], w.b[s] = k, stats{}
	}
	w.lastLo, w.lastHi, w.lastK, w.lastS = k*w.width, (k+1)*w.width, k, int(s)
	w.b[s].add(t, v)
}

func (w *sliding) stats(t int64) (stats, bool) {
	k := floorDiv(t, w.width)
	lo := k - int64(len(w.b))
	var acc stats
	known := false
	for i := range w.b {
		if w.idx[i] != never {
			known = true
		}
		if w.idx[i] > lo && w.idx[i] <= k {
			acc.merge(&w.b[i])
		}
	}
	return acc, known
}

// tumbling covers fixed, epoch-aligned windows [k·Dur, (k+1)·Dur); at time
// t it reports the last completed window, so its value changes once per
// window.
type tumbling struct {
	d     int64
	curK  int64
	cur   stats
	doneK int64
	done  stats
}

func newTumbling(d time.Duration) *tumbling {
	return &tumbling{d: d.Milliseconds(), curK: never, doneK: never}
}

func (w *tumbling) add(t int64, v float64) {
	k := floorDiv(t, w.d)
	switch {
	case k == w.curK:
	case k > w.curK:
		if w.curK != never {
			w.doneK, w.done = w.curK, w.cur
		}
		w.curK, w.cur = k, stats{}
	case k == w.doneK:
		w.done.add(t, v) // a little late, still in the last completed window
		return
	default:
		return
	}
	w.cur.add(t, v)
}

func (w *tumbling) stats(t int64) (stats, bool) {
	if w.curK == never {
		return stats{}, false
	}
	k := floorDiv(t, w.d)
	switch {
	case w.curK == k-1:
		return w.cur, true
	case w.curK == k && w.doneK == k-1:
		return w.done, true
	case w.curK < k-1 || (w.curK == k && w.doneK != never):
		return stats{}, true // tracked, but the last window had no samples
	}
	return stats{}, false // the first window since tracking began is still open
}

// windowSnap is a window's persisted form.
type windowSnap struct {
	Kind  string  `json:"k"` // "s" sliding, "t" tumbling
	Width int64   `json:"w"`
	Idx   []int64 `json:"i,omitempty"`
	B     []stats `json:"b,omitempty"`
	CurK  int64   `json:"ck"`
	Cur   stats   `json:"c"`
	DoneK int64   `json:"dk"`
	Done  stats   `json:"d"`
}

func (w *sliding) snap() windowSnap {
	s := windowSnap{Kind: "s", Width: w.width}
	for i := range w.b {
		if w.idx[i] != never {
			s.Idx = append(s.Idx, w.idx[i])
			s.B = append(s.B, w.b[i])
		}
	}
	s.Idx = append(s.Idx, int64(len(w.b))) // last entry: bucket count
	return s
}

func (w *tumbling) snap() windowSnap {
	return windowSnap{Kind: "t", Width: w.d, CurK: w.curK, Cur: w.cur, DoneK: w.doneK, Done: w.done}
}

// restore rebuilds a window if the snapshot matches spec; otherwise nil.
func (s windowSnap) restore(spec windowSpec) window {
	switch {
	case s.Kind == "t" && spec.Tumbling && s.Width == spec.Dur.Milliseconds():
		return &tumbling{d: s.Width, curK: s.CurK, cur: s.Cur, doneK: s.DoneK, done: s.Done}
	case s.Kind == "s" && !spec.Tumbling && len(s.Idx) == len(s.B)+1 && s.Width > 0:
		n := s.Idx[len(s.Idx)-1]
		if n <= 0 || n > 10000 || n*s.Width > spec.Dur.Milliseconds() || n*s.Width < spec.Dur.Milliseconds()-n {
			return nil
		}
		w := &sliding{width: s.Width, idx: make([]int64, n), b: make([]stats, n)}
		for i := range w.idx {
			w.idx[i] = never
		}
		for i, k := range s.Idx[:len(s.B)] {
			slot := ((k % n) + n) % n
			w.idx[slot], w.b[slot] = k, s.B[i]
		}
		return w
	}
	return nil
}

func newWindow(spec windowSpec, buckets int) window {
	if spec.Tumbling {
		return newTumbling(spec.Dur)
	}
	return newSliding(spec.Dur, buckets)
}
