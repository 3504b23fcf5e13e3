package tsdb

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// twoOrgs writes the same device and field for orgs a (values 0..599) and b
// (values 10000+), one sample a second for 10 minutes ending at end.
func twoOrgs(t *testing.T, db *DB, end time.Time) {
	t.Helper()
	for _, org := range []string{"a", "b"} {
		var batch []Sample
		for i := range 600 {
			s := lbls(org, "press-1", "motor/rpm")
			s.T = end.Add(-time.Duration(600-i) * time.Second).UnixMilli()
			s.V = float64(i)
			if org == "b" {
				s.V += 10000
			}
			batch = append(batch, s)
		}
		if err := db.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQueryableOrgIsolation(t *testing.T) {
	env := newSQLiteEnv(t)
	ctx := context.Background()
	end := env.clock.Now().Truncate(time.Second)
	db := env.open(t, env.opts())
	defer db.Close()
	twoOrgs(t, db, end)
	if err := db.Flush(ctx); err != nil { // part of the data from the store
		t.Fatal(err)
	}
	q, err := db.Queryable("a").Querier(end.Add(-time.Hour).UnixMilli(), end.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	count := func(ms ...*labels.Matcher) (n int, samples int) {
		ss := q.Select(ctx, true, nil, ms...)
		for ss.Next() {
			n++
			if ss.At().Labels().Has(LabelOrg) {
				t.Fatalf("org label leaked: %s", ss.At().Labels())
			}
			it := ss.At().Iterator(nil)
			for it.Next() != 0 {
				_, v := it.At()
				if v >= 10000 {
					t.Fatalf("org b's value %v visible to org a", v)
				}
				samples++
			}
		}
		if err := ss.Err(); err != nil {
			t.Fatal(err)
		}
		return n, samples
	}
	if n, s := count(labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")); n != 1 || s != 600 {
		t.Fatalf("org a sees %d series / %d samples, want 1 / 600", n, s)
	}
	if n, _ := count(labels.MustNewMatcher(labels.MatchEqual, LabelOrg, "b")); n != 0 {
		t.Fatalf("matcher org=b returned %d series to org a", n)
	}
	if n, _ := count(labels.MustNewMatcher(labels.MatchEqual, LabelDevice, "press-1")); n != 1 {
		t.Fatalf("device matcher: %d series", n)
	}
	vals, _, err := q.LabelValues(ctx, LabelOrg, nil)
	if err != nil || len(vals) != 0 {
		t.Fatalf("org label values visible: %v %v", vals, err)
	}
	names, _, err := q.LabelNames(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"__name__", "device", "field", "site", "template"}
	if len(names) != len(want) {
		t.Fatalf("label names %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("label names %v, want %v", names, want)
		}
	}
	// An org with no data sees nothing.
	q2, _ := db.Queryable("nobody").Querier(0, math.MaxInt64)
	if ss := q2.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".*")); ss.Next() {
		t.Fatalf("org without data sees %s", ss.At().Labels())
	}
}

func TestPromQLThroughEngine(t *testing.T) {
	env := newSQLiteEnv(t)
	ctx := context.Background()
	end := env.clock.Now().Truncate(time.Second)
	db := env.open(t, env.opts())
	defer db.Close()
	twoOrgs(t, db, end)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
	instant := func(org, expr string) promql.Vector {
		t.Helper()
		q, err := eng.NewInstantQuery(ctx, db.Queryable(org), nil, expr, end.Add(-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		res := q.Exec(ctx)
		if res.Err != nil {
			t.Fatalf("%s: %v", expr, res.Err)
		}
		v, err := res.Vector()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Newest sample of org a is 599 at end-1s.
	if v := instant("a", `motor_rpm{device="press-1"}`); len(v) != 1 || v[0].F != 599 || v[0].Metric.Has(LabelOrg) {
		t.Fatalf("instant selector: %v", v)
	}
	if v := instant("b", `sum(motor_rpm)`); len(v) != 1 || v[0].F != 10599 {
		t.Fatalf("org b sum: %v", v)
	}
	// 60 samples in (end-61s, end-1s]: values 540..599, average 569.5.
	if v := instant("a", `avg_over_time(motor_rpm[1m])`); len(v) != 1 || v[0].F != 569.5 {
		t.Fatalf("avg_over_time: %v", v)
	}
	// A counter rising by 1/s.
	if v := instant("a", `rate(motor_rpm[5m])`); len(v) != 1 || math.Abs(v[0].F-1) > 1e-9 {
		t.Fatalf("rate: %v", v)
	}
	if v := instant("a", `motor_rpm{org="b"}`); len(v) != 0 {
		t.Fatalf("org matcher crossed tenants: %v", v)
	}
	q, err := eng.NewRangeQuery(ctx, db.Queryable("a"), nil, `max_over_time(motor_rpm[1m])`, end.Add(-5*time.Minute), end.Add(-time.Second), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	m, err := res.Matrix()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].Floats) != 5 {
		t.Fatalf("range query: %v", m)
	}
	for i, p := range m[0].Floats {
		// Step i is at end-300s+60i s, where the newest sample is 300+60i.
		want := float64(300 + 60*i)
		if p.F != want {
			t.Fatalf("range point %d: %v, want %v", i, p.F, want)
		}
	}
	var _ storage.Queryable = db.Queryable("a")
}
