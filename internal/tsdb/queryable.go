package tsdb

import (
	"context"
	"slices"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Queryable returns a storage.Queryable that sees only org's series: every
// Select is restricted to org, and the org label is removed from the
// results (a matcher on "org" sees it as absent).
func (db *DB) Queryable(org string) storage.Queryable {
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		return &orgQuerier{db: db, org: org, mint: mint, maxt: maxt}, nil
	})
}

type orgQuerier struct {
	db         *DB
	org        string
	mint, maxt int64
}

// matching returns the org's series whose visible labels match all matchers.
func (q *orgQuerier) matching(matchers []*labels.Matcher) []*memSeries {
	refs := q.db.idx.postingsFor(LabelOrg, q.org)
	for _, m := range matchers {
		if m.Type == labels.MatchEqual && m.Name != LabelOrg && m.Value != "" {
			refs = intersect(refs, q.db.idx.postingsFor(m.Name, m.Value))
		}
	}
	out := make([]*memSeries, 0, len(refs))
	for _, r := range refs {
		s := q.db.idx.get(r)
		if s == nil {
			continue
		}
		ok := true
		for _, m := range matchers {
			if !m.Matches(s.visible.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

func (q *orgQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
		if hints.Start == 0 && hints.End == 0 {
			mint, maxt = q.mint, q.maxt
		}
	}
	var out []*listSeries
	for _, s := range q.matching(matchers) {
		if err := ctx.Err(); err != nil {
			return storage.ErrSeriesSet(err)
		}
		ss, err := q.db.seriesSamples(ctx, s, mint, maxt, nil)
		if err != nil {
			return storage.ErrSeriesSet(err)
		}
		if len(ss) == 0 {
			continue
		}
		out = append(out, &listSeries{lset: s.visible, samples: ss})
	}
	if sortSeries {
		slices.SortFunc(out, func(a, b *listSeries) int { return labels.Compare(a.lset, b.lset) })
	}
	return &listSeriesSet{series: out, i: -1}
}

func (q *orgQuerier) LabelValues(_ context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if name == LabelOrg {
		return []string{}, nil, nil
	}
	seen := map[string]struct{}{}
	for _, s := range q.matching(matchers) {
		if v := s.visible.Get(name); v != "" {
			seen[v] = struct{}{}
		}
	}
	return limitSorted(seen, hints), nil, nil
}

func (q *orgQuerier) LabelNames(_ context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	for _, s := range q.matching(matchers) {
		s.visible.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
	}
	return limitSorted(seen, hints), nil, nil
}

func limitSorted(set map[string]struct{}, hints *storage.LabelHints) []string {
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	slices.Sort(out)
	if hints != nil && hints.Limit > 0 && len(out) > hints.Limit {
		out = out[:hints.Limit]
	}
	return out
}

func (q *orgQuerier) Close() error { return nil }

type listSeries struct {
	lset    labels.Labels
	samples []sample
}

func (s *listSeries) Labels() labels.Labels { return s.lset }

func (s *listSeries) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return storage.NewListSeriesIterator(sampleList(s.samples))
}

type listSeriesSet struct {
	series []*listSeries
	i      int
}

func (s *listSeriesSet) Next() bool {
	s.i++
	return s.i < len(s.series)
}
func (s *listSeriesSet) At() storage.Series                { return s.series[s.i] }
func (s *listSeriesSet) Err() error                        { return nil }
func (s *listSeriesSet) Warnings() annotations.Annotations { return nil }

// sampleList adapts []sample to storage.Samples; Get returns a pointer into
// the slice, so iterating allocates nothing.
type sampleList []sample

func (l sampleList) Get(i int) chunks.Sample { return &l[i] }
func (l sampleList) Len() int                { return len(l) }

func (s *sample) T() int64                      { return s.t }
func (s *sample) ST() int64                     { return 0 }
func (s *sample) F() float64                    { return s.v }
func (s *sample) H() *histogram.Histogram       { return nil }
func (s *sample) FH() *histogram.FloatHistogram { return nil }
func (s *sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *sample) Copy() chunks.Sample           { c := *s; return &c }
