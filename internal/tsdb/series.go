package tsdb

import (
	"math"
	"slices"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

const (
	kindInOrder uint8 = 0
	kindOOO     uint8 = 1
)

// memChunk is a cut chunk not yet known to be in the chunk store.
type memChunk struct {
	kind       uint8
	seq        uint64
	mint, maxt int64
	data       []byte // encodeChunk format; immutable
}

// memSeries is the in-memory state of one series.
//
// Ordering: samples newer than lastT go to the in-order head chunk; a sample
// at lastT, or one already in the head or the out-of-order head, is a
// duplicate and dropped (the first write wins); older samples within the
// out-of-order window go to the out-of-order head, a sorted slice cut into
// its own chunks.
type memSeries struct {
	ref     uint64
	lset    labels.Labels
	visible labels.Labels // lset without the org label, for PromQL
	org     string
	device  string
	field   string

	mu       sync.Mutex
	head     *chunkenc.XORChunk // nil when empty
	app      chunkenc.Appender
	headMinT int64
	headMaxT int64
	pending  []*memChunk
	ooo      []sample
	// lastT is the newest in-order timestamp ever accepted (math.MinInt64
	// when none); lastV its value when lastKnown.
	lastT     int64
	lastV     float64
	lastKnown bool
	nextSeq   [2]uint64
	inDB      bool

	// Guarded by DB.appendMu: per-batch validation scratch.
	scratchGen   uint64
	scratchLastT int64
}

func newMemSeries(ref uint64, lset labels.Labels) *memSeries {
	return &memSeries{
		ref:     ref,
		lset:    lset,
		visible: labels.NewBuilder(lset).Del(LabelOrg).Labels(),
		org:     lset.Get(LabelOrg),
		device:  lset.Get(LabelDevice),
		field:   lset.Get(LabelField),
		lastT:   math.MinInt64,
	}
}

// append adds one sample; s.mu must be held. scratch is reusable memory for
// cutting chunks.
func (s *memSeries) append(t int64, v float64, o *Options, scratch []sample) []sample {
	switch {
	case t > s.lastT:
		if s.head != nil && (s.head.NumSamples() >= o.ChunkSamples || t-s.headMinT >= o.ChunkSpan.Milliseconds()) {
			scratch = s.cutHead(scratch)
		}
		if s.head == nil {
			s.head = chunkenc.NewXORChunk()
			s.app, _ = s.head.Appender() // cannot fail on a fresh chunk
			s.headMinT = t
		}
		s.app.Append(0, t, v)
		s.headMaxT = t
		s.lastT, s.lastV, s.lastKnown = t, v, true
	case t == s.lastT:
		// Duplicate of the newest sample: first write wins.
	default:
		if s.head != nil && t >= s.headMinT && s.headHas(t) {
			return scratch
		}
		i, found := slices.BinarySearchFunc(s.ooo, t, func(a sample, t int64) int {
			switch {
			case a.t < t:
				return -1
			case a.t > t:
				return 1
			}
			return 0
		})
		if found {
			return scratch
		}
		s.ooo = slices.Insert(s.ooo, i, sample{t, v})
		if len(s.ooo) >= o.ChunkSamples {
			s.cutOOO()
		}
	}
	return scratch
}

func (s *memSeries) headHas(t int64) bool {
	it := s.head.Iterator(nil)
	if it.Seek(t) == chunkenc.ValNone {
		return false
	}
	return it.AtT() == t
}

func (s *memSeries) cutHead(scratch []sample) []sample {
	scratch = decodeXOR(scratch[:0], s.head)
	s.pending = append(s.pending, &memChunk{
		kind: kindInOrder,
		seq:  s.nextSeq[kindInOrder],
		mint: s.headMinT,
		maxt: s.headMaxT,
		data: encodeChunk(scratch),
	})
	s.nextSeq[kindInOrder]++
	s.head, s.app = nil, nil
	return scratch
}

func (s *memSeries) cutOOO() {
	s.pending = append(s.pending, &memChunk{
		kind: kindOOO,
		seq:  s.nextSeq[kindOOO],
		mint: s.ooo[0].t,
		maxt: s.ooo[len(s.ooo)-1].t,
		data: encodeChunk(s.ooo),
	})
	s.nextSeq[kindOOO]++
	s.ooo = nil
}

// index maps refs and label sets to series and keeps postings lists for
// label matching.
type index struct {
	mu       sync.RWMutex
	byRef    map[uint64]*memSeries
	byHash   map[uint64][]*memSeries
	postings map[string]map[string][]uint64 // name -> value -> sorted refs
	nextRef  uint64
}

func newIndex() *index {
	return &index{
		byRef:    map[uint64]*memSeries{},
		byHash:   map[uint64][]*memSeries{},
		postings: map[string]map[string][]uint64{},
		nextRef:  1,
	}
}

func (ix *index) count() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byRef)
}

func (ix *index) get(ref uint64) *memSeries {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.byRef[ref]
}

func (ix *index) lookup(lset labels.Labels, h uint64) *memSeries {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for _, s := range ix.byHash[h] {
		if labels.Equal(s.lset, lset) {
			return s
		}
	}
	return nil
}

// getOrCreate returns the series with ref, creating it with lset when it is
// unknown. Used while loading and replaying.
func (ix *index) getOrCreate(ref uint64, lset labels.Labels) *memSeries {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s := ix.byRef[ref]; s != nil {
		return s
	}
	return ix.addLocked(ref, lset)
}

// create adds a new series with the next free ref. The caller has checked
// that lset is unknown.
func (ix *index) create(lset labels.Labels) *memSeries {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.addLocked(ix.nextRef, lset)
}

func (ix *index) addLocked(ref uint64, lset labels.Labels) *memSeries {
	s := newMemSeries(ref, lset)
	ix.byRef[ref] = s
	h := lset.Hash()
	ix.byHash[h] = append(ix.byHash[h], s)
	lset.Range(func(l labels.Label) {
		vals := ix.postings[l.Name]
		if vals == nil {
			vals = map[string][]uint64{}
			ix.postings[l.Name] = vals
		}
		list := vals[l.Value]
		if n := len(list); n == 0 || list[n-1] < ref {
			vals[l.Value] = append(list, ref)
		} else {
			i, _ := slices.BinarySearch(list, ref)
			vals[l.Value] = slices.Insert(list, i, ref)
		}
	})
	if ref >= ix.nextRef {
		ix.nextRef = ref + 1
	}
	return s
}

// postingsFor returns the refs having label name=value (a copy).
func (ix *index) postingsFor(name, value string) []uint64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return slices.Clone(ix.postings[name][value])
}

// labelValues returns the distinct values of label name.
func (ix *index) labelValues(name string) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]string, 0, len(ix.postings[name]))
	for v := range ix.postings[name] {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// all returns every series.
func (ix *index) all() []*memSeries {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]*memSeries, 0, len(ix.byRef))
	for _, s := range ix.byRef {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *memSeries) int {
		switch {
		case a.ref < b.ref:
			return -1
		case a.ref > b.ref:
			return 1
		}
		return 0
	})
	return out
}

func intersect(a, b []uint64) []uint64 {
	out := a[:0]
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}
