package tsdb

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// simValue is simulator-like data: a slow sine plus noise, reported with two
// decimals as a sensor with 0.01 resolution would.
func simValue(r *rand.Rand, i int, phase float64) float64 {
	v := 20 + 5*math.Sin(2*math.Pi*float64(i)/3600+phase) + r.NormFloat64()*0.05
	return math.Round(v*100) / 100
}

func benchDB(b *testing.B, o func(*Options)) (*testEnv, *DB) {
	env := newSQLiteEnv(b)
	opts := Options{Dir: env.dir, Now: env.clock.Now}
	if o != nil {
		o(&opts)
	}
	db := env.open(b, opts)
	b.Cleanup(func() { db.Close() })
	return env, db
}

// BenchmarkAppend measures the fast path: 1000 series resolved once by key,
// batches of 1000 samples (one per series per second). One op = one sample.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	_, db := benchDB(b, nil)
	const nSeries = 1000
	refs := make([]SeriesRef, nSeries)
	for i := range refs {
		field := fmt.Sprintf("sensor%d/value", i%20)
		device := fmt.Sprintf("dev%d", i/20)
		ref, err := db.SeriesRefFor(ctx, "acme/"+device+"/"+field, func() labels.Labels {
			return TelemetryLabels("acme", "site1", device, "tmpl", field)
		})
		if err != nil {
			b.Fatal(err)
		}
		refs[i] = ref
	}
	r := rand.New(rand.NewSource(1))
	batch := make([]RefSample, nSeries)
	t0 := time.Now().Add(-24 * time.Hour).UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	for n, sec := 0, 0; n < b.N; sec++ {
		k := min(nSeries, b.N-n)
		for i := range k {
			batch[i] = RefSample{Ref: refs[i], T: t0 + int64(sec)*1000, V: simValue(r, sec, float64(i))}
		}
		if err := db.AppendRefs(ctx, batch[:k]); err != nil {
			b.Fatal(err)
		}
		n += k
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkAppendLabels is the slow path: samples carry full label sets.
func BenchmarkAppendLabels(b *testing.B) {
	ctx := context.Background()
	_, db := benchDB(b, nil)
	const nSeries = 1000
	lsets := make([]labels.Labels, nSeries)
	for i := range lsets {
		lsets[i] = TelemetryLabels("acme", "site1", fmt.Sprintf("dev%d", i/20), "tmpl", fmt.Sprintf("sensor%d/value", i%20))
	}
	batch := make([]Sample, nSeries)
	t0 := time.Now().Add(-24 * time.Hour).UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	for n, sec := 0, 0; n < b.N; sec++ {
		k := min(nSeries, b.N-n)
		for i := range k {
			batch[i] = Sample{Labels: lsets[i], T: t0 + int64(sec)*1000, V: float64(sec)}
		}
		if err := db.Append(ctx, batch[:k]); err != nil {
			b.Fatal(err)
		}
		n += k
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// fillDay writes one day of 1 Hz simulator data for nSeries series of one
// device and stores every chunk in the database.
func fillDay(b *testing.B, env *testEnv, db *DB, nSeries int) (start, end time.Time) {
	ctx := context.Background()
	end = env.clock.Now().Truncate(time.Minute)
	start = end.Add(-24 * time.Hour)
	r := rand.New(rand.NewSource(2))
	refs := make([]SeriesRef, nSeries)
	for i := range refs {
		ref, err := db.SeriesRef(ctx, TelemetryLabels("acme", "site1", "dev1", "tmpl", fmt.Sprintf("sensor%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		refs[i] = ref
	}
	batch := make([]RefSample, 0, 3600*nSeries)
	for sec := 0; sec < 86400; sec++ {
		for i, ref := range refs {
			batch = append(batch, RefSample{Ref: ref, T: start.Add(time.Duration(sec) * time.Second).UnixMilli(), V: simValue(r, sec, float64(i))})
		}
		if len(batch) == cap(batch) {
			if err := db.AppendRefs(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := db.AppendRefs(ctx, batch); err != nil {
		b.Fatal(err)
	}
	// Heads idle for longer than a chunk span are cut and stored too.
	env.clock.Set(end.Add(3 * time.Hour))
	if err := db.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	return start, end
}

// BenchmarkRangeOneDay reads one day of a 1 Hz series (86,400 samples, all
// from the SQLite chunk store) and averages it over 1m steps.
func BenchmarkRangeOneDay(b *testing.B) {
	ctx := context.Background()
	env, db := benchDB(b, nil)
	start, end := fillDay(b, env, db, 1)
	fs, err := db.Range(ctx, "acme", "dev1", nil, start, end, 0, "")
	if err != nil || len(fs) != 1 || len(fs[0].Points) != 86400 {
		b.Fatalf("setup: %d fields, err %v", len(fs), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		fs, err := db.Range(ctx, "acme", "dev1", []string{"sensor0"}, start, end, time.Minute, "avg")
		if err != nil || len(fs[0].Points) != 1440 {
			b.Fatalf("got %v points, err %v", len(fs[0].Points), err)
		}
	}
}

// BenchmarkBytesPerSample stores one day of 1 Hz simulator data for 20
// series in SQLite and reports the growth of the database file per sample
// (chunk rows, primary key and index included) and the chunk payload alone.
func BenchmarkBytesPerSample(b *testing.B) {
	for b.Loop() {
		env := newSQLiteEnv(b)
		db := env.open(b, Options{Dir: env.dir, Now: env.clock.Now})
		dbSize := func() int64 {
			if _, err := env.sqlDB.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				b.Fatal(err)
			}
			var pages, size, free int64
			_ = env.sqlDB.QueryRow(`PRAGMA page_count`).Scan(&pages)
			_ = env.sqlDB.QueryRow(`PRAGMA page_size`).Scan(&size)
			_ = env.sqlDB.QueryRow(`PRAGMA freelist_count`).Scan(&free)
			return (pages - free) * size
		}
		before := dbSize()
		const nSeries = 20
		fillDay(b, env, db, nSeries)
		after := dbSize()
		var payload int64
		if err := env.sqlDB.QueryRow(`SELECT SUM(LENGTH(data)) FROM tsdb_chunks`).Scan(&payload); err != nil {
			b.Fatal(err)
		}
		n := float64(nSeries * 86400)
		b.ReportMetric(float64(after-before)/n, "bytes/sample")
		b.ReportMetric(float64(payload)/n, "payload-bytes/sample")
		db.Close()
	}
}

// BenchmarkChunkEncode encodes 240-sample chunks; one op = one chunk.
func BenchmarkChunkEncode(b *testing.B) {
	r := rand.New(rand.NewSource(4))
	for _, kind := range []string{"decimal2", "fullprecision"} {
		b.Run(kind, func(b *testing.B) {
			ss := make([]sample, 240)
			for i := range ss {
				v := simValue(r, i, 0)
				if kind == "fullprecision" {
					v += r.Float64() * 1e-3
				}
				ss[i] = sample{int64(1_700_000_000_000 + i*1000), v}
			}
			var size int
			b.ReportAllocs()
			for b.Loop() {
				size = len(encodeChunk(ss))
			}
			b.ReportMetric(float64(size)/float64(len(ss)), "bytes/sample")
		})
	}
}

// BenchmarkChunkDecode decodes a 240-sample chunk; one op = one chunk.
func BenchmarkChunkDecode(b *testing.B) {
	r := rand.New(rand.NewSource(4))
	ss := make([]sample, 240)
	for i := range ss {
		ss[i] = sample{int64(1_700_000_000_000 + i*1000), simValue(r, i, 0)}
	}
	data := encodeChunk(ss)
	buf := make([]sample, 0, 240)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = decodeChunk(buf[:0], data, minInt64, math.MaxInt64); err != nil || len(buf) != 240 {
			b.Fatal(err)
		}
	}
}
