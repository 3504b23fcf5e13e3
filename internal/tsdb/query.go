package tsdb

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// seriesSamples appends to dst the samples of s in [mint, maxt], merged from
// stored chunks, chunks waiting in memory, the head and the out-of-order
// head, sorted by time with one sample per timestamp. For a timestamp held
// by several sources the first-written value wins: in-order data before
// out-of-order chunks (oldest chunk first) before the out-of-order head.
func (db *DB) seriesSamples(ctx context.Context, s *memSeries, mint, maxt int64, dst []sample) ([]sample, error) {
	type src struct {
		kind       uint8
		seq        uint64
		mint, maxt int64
		data       []byte
		raw        bool // plain XOR bytes of the head
	}
	var srcs []src
	var ooo []sample
	s.mu.Lock()
	if s.head != nil && s.headMaxT >= mint && s.headMinT <= maxt {
		srcs = append(srcs, src{kind: kindInOrder, seq: math.MaxUint64, mint: s.headMinT, maxt: s.headMaxT, data: slices.Clone(s.head.Bytes()), raw: true})
	}
	for _, c := range s.pending {
		if c.maxt >= mint && c.mint <= maxt {
			srcs = append(srcs, src{kind: c.kind, seq: c.seq, mint: c.mint, maxt: c.maxt, data: c.data})
		}
	}
	for _, x := range s.ooo {
		if x.t >= mint && x.t <= maxt {
			ooo = append(ooo, x)
		}
	}
	inDB := s.inDB
	s.mu.Unlock()
	if inDB {
		stored, err := db.store.Chunks(ctx, s.ref, mint, maxt)
		if err != nil {
			return dst, err
		}
		for _, c := range stored {
			srcs = append(srcs, src{kind: c.Kind, seq: c.Seq, mint: c.MinT, maxt: c.MaxT, data: c.Data})
		}
	}
	// In-order chunks do not overlap (except a chunk both stored and still
	// in memory), so sorting by mint gives sorted samples; out-of-order
	// chunks go by seq, the order they were written in.
	slices.SortStableFunc(srcs, func(a, b src) int {
		if a.kind != b.kind {
			return cmp.Compare(a.kind, b.kind)
		}
		if a.kind == kindInOrder {
			return cmp.Compare(a.mint, b.mint)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	// The XOR header counts samples: grow dst once instead of by doubling.
	total := len(ooo)
	for _, c := range srcs {
		if c.raw && len(c.data) >= 2 {
			total += int(c.data[0])<<8 | int(c.data[1])
		} else if len(c.data) >= 3 {
			total += int(c.data[1])<<8 | int(c.data[2])
		}
	}
	dst = slices.Grow(dst, total)
	start := len(dst)
	var err error
	oooStart := -1
	for _, c := range srcs {
		if c.kind == kindOOO && oooStart < 0 {
			oooStart = len(dst)
		}
		if c.raw {
			xc := chunkenc.NewXORChunk()
			xc.Reset(c.data)
			it := xc.Iterator(nil)
			for vt := it.Seek(mint); vt != chunkenc.ValNone; vt = it.Next() {
				t, v := it.At()
				if t > maxt {
					break
				}
				dst = append(dst, sample{t, v})
			}
			continue
		}
		if dst, err = decodeChunk(dst, c.data, mint, maxt); err != nil {
			return dst, fmt.Errorf("series %s: %w", s.lset, err)
		}
	}
	if oooStart < 0 && len(ooo) == 0 {
		return dedupeSorted(dst, start), nil
	}
	if oooStart < 0 {
		oooStart = len(dst)
	}
	dst = append(dst, ooo...)
	// Rare path: merge the out-of-order samples into the in-order ones.
	in := dedupeSorted(slices.Clone(dst[start:oooStart]), 0)
	late := dst[oooStart:]
	slices.SortStableFunc(late, func(a, b sample) int { return cmp.Compare(a.t, b.t) })
	late = dedupeSorted(late, 0)
	dst = dst[:start]
	i, j := 0, 0
	for i < len(in) || j < len(late) {
		switch {
		case j == len(late) || (i < len(in) && in[i].t < late[j].t):
			dst = append(dst, in[i])
			i++
		case i == len(in) || late[j].t < in[i].t:
			dst = append(dst, late[j])
			j++
		default: // same timestamp: the in-order sample was written first
			dst = append(dst, in[i])
			i++
			j++
		}
	}
	return dst, nil
}

// dedupeSorted keeps the first sample of each timestamp in dst[start:],
// sorting it first (stably) if needed.
func dedupeSorted(dst []sample, start int) []sample {
	ss := dst[start:]
	sorted := true
	for i := 1; i < len(ss); i++ {
		if ss[i].t <= ss[i-1].t {
			sorted = false
			break
		}
	}
	if sorted {
		return dst
	}
	slices.SortStableFunc(ss, func(a, b sample) int { return cmp.Compare(a.t, b.t) })
	out := ss[:0]
	for i, x := range ss {
		if i > 0 && x.t == out[len(out)-1].t {
			continue
		}
		out = append(out, x)
	}
	return dst[:start+len(out)]
}

// deviceSeries returns the series of one device, optionally only the given
// fields (original paths).
func (db *DB) deviceSeries(org, device string) []*memSeries {
	refs := intersect(db.idx.postingsFor(LabelOrg, org), db.idx.postingsFor(LabelDevice, device))
	out := make([]*memSeries, 0, len(refs))
	for _, r := range refs {
		if s := db.idx.get(r); s != nil {
			out = append(out, s)
		}
	}
	return out
}

var aggs = map[string]bool{"avg": true, "min": true, "max": true, "sum": true, "count": true, "last": true}

// Range reads one device's fields between from and to (inclusive). fields
// are original field paths; none means every numeric field of the device
// that has data in the range. step == 0 returns raw points; step > 0
// aggregates into buckets aligned to multiples of step since the epoch,
// each point stamped with its bucket start, with agg one of avg, min, max,
// sum, count, last.
func (db *DB) Range(ctx context.Context, org, device string, fields []string, from, to time.Time, step time.Duration, agg string) ([]FieldSeries, error) {
	if org == "" || device == "" {
		return nil, fmt.Errorf("range query needs an org and a device: %w", ErrInvalid)
	}
	if to.Before(from) {
		return nil, fmt.Errorf("time range ends (%s) before it starts (%s): %w", to.Format(time.RFC3339), from.Format(time.RFC3339), ErrInvalid)
	}
	if step < 0 {
		return nil, fmt.Errorf("step %s is negative: %w", step, ErrInvalid)
	}
	if step > 0 && step < time.Millisecond {
		return nil, fmt.Errorf("step %s is below the 1ms resolution: %w", step, ErrInvalid)
	}
	if step > 0 && !aggs[agg] {
		return nil, fmt.Errorf("unknown aggregation %q; use avg, min, max, sum, count or last: %w", agg, ErrInvalid)
	}
	mint, maxt := from.UnixMilli(), to.UnixMilli()
	if step > 0 && (maxt-mint)/step.Milliseconds() > 1_000_000 {
		return nil, fmt.Errorf("range %s with step %s gives more than 1,000,000 points; use a larger step: %w", to.Sub(from), step, ErrInvalid)
	}
	byField := map[string][]*memSeries{}
	for _, s := range db.deviceSeries(org, device) {
		byField[s.field] = append(byField[s.field], s)
	}
	names := fields
	if len(names) == 0 {
		for f := range byField {
			names = append(names, f)
		}
		slices.Sort(names)
	}
	out := make([]FieldSeries, 0, len(names))
	var buf []sample
	for _, f := range names {
		buf = buf[:0]
		var err error
		for _, s := range byField[f] {
			if buf, err = db.seriesSamples(ctx, s, mint, maxt, buf); err != nil {
				return nil, err
			}
		}
		if len(byField[f]) > 1 { // the device changed site or template
			slices.SortStableFunc(buf, func(a, b sample) int { return cmp.Compare(a.t, b.t) })
			buf = dedupeSorted(buf, 0)
		}
		if len(fields) == 0 && len(buf) == 0 {
			continue
		}
		fs := FieldSeries{Field: f}
		if step == 0 {
			fs.Points = make([]Point, len(buf))
			for i, x := range buf {
				fs.Points[i] = Point{x.t, x.v}
			}
		} else {
			fs.Points = aggregate(buf, step.Milliseconds(), agg)
		}
		out = append(out, fs)
	}
	return out, nil
}

func aggregate(ss []sample, step int64, agg string) []Point {
	out := []Point{}
	if len(ss) == 0 {
		return out
	}
	var (
		bucket          int64
		sum, mn, mx, lv float64
		n               int
	)
	emit := func() {
		var v float64
		switch agg {
		case "avg":
			v = sum / float64(n)
		case "min":
			v = mn
		case "max":
			v = mx
		case "sum":
			v = sum
		case "count":
			v = float64(n)
		case "last":
			v = lv
		}
		out = append(out, Point{bucket, v})
	}
	for i, x := range ss {
		b := x.t - ((x.t%step)+step)%step
		if i == 0 || b != bucket {
			if i > 0 {
				emit()
			}
			bucket, sum, mn, mx, n = b, 0, x.v, x.v, 0
		}
		sum += x.v
		mn = min(mn, x.v)
		mx = max(mx, x.v)
		lv = x.v
		n++
	}
	emit()
	return out
}

// Latest returns the newest value of every field of a device, numeric and
// string, sorted by field.
func (db *DB) Latest(ctx context.Context, org, device string) ([]LatestValue, error) {
	if org == "" || device == "" {
		return nil, fmt.Errorf("latest values need an org and a device: %w", ErrInvalid)
	}
	best := map[string]LatestValue{}
	for _, s := range db.deviceSeries(org, device) {
		s.mu.Lock()
		t, v, known := s.lastT, s.lastV, s.lastKnown
		s.mu.Unlock()
		if t == minInt64 {
			continue
		}
		if !known {
			// Loaded from the database without a checkpoint: read the value.
			ss, err := db.seriesSamples(ctx, s, t, t, nil)
			if err != nil {
				return nil, err
			}
			if len(ss) == 0 {
				continue // expired
			}
			v = ss[0].v
			s.mu.Lock()
			if s.lastT == t {
				s.lastV, s.lastKnown = v, true
			}
			s.mu.Unlock()
		}
		if cur, ok := best[s.field]; !ok || t > cur.T {
			best[s.field] = LatestValue{Field: s.field, T: t, Value: v}
		}
	}
	db.strMu.Lock()
	for field, l := range db.strLatest[deviceKey{org, device}] {
		if cur, ok := best[field]; !ok || l.t > cur.T {
			best[field] = LatestValue{Field: field, T: l.t, Value: l.value}
		}
	}
	db.strMu.Unlock()
	out := make([]LatestValue, 0, len(best))
	for _, lv := range best {
		out = append(out, lv)
	}
	slices.SortFunc(out, func(a, b LatestValue) int { return cmp.Compare(a.Field, b.Field) })
	return out, nil
}

// EachField calls fn once per (organization, device, field) the store holds,
// numeric and string alike; the hub seeds its cardinality limits with it.
// fn must not call back into the store.
func (db *DB) EachField(fn func(org, device, field string)) {
	db.idx.mu.RLock()
	for _, s := range db.idx.byRef {
		fn(s.org, s.device, s.field)
	}
	db.idx.mu.RUnlock()
	db.strMu.Lock()
	defer db.strMu.Unlock()
	for dk, fields := range db.strLatest {
		for f := range fields {
			fn(dk.org, dk.device, f)
		}
	}
}

// LastTime is the newest timestamp stored for a device, numeric or string
// field, in unix ms (0 when none): the gateway starts stamping the device's
// messages after it.
func (db *DB) LastTime(org, device string) int64 {
	var last int64
	for _, s := range db.deviceSeries(org, device) {
		s.mu.Lock()
		if s.lastT > last {
			last = s.lastT
		}
		s.mu.Unlock()
	}
	db.strMu.Lock()
	for _, l := range db.strLatest[deviceKey{org, device}] {
		last = max(last, l.t)
	}
	db.strMu.Unlock()
	return last
}
