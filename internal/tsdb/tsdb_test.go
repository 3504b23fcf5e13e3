package tsdb

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var testFields = []string{"temp", "motor/rpm", "line.pressure"}

// appendSeconds appends one sample per field for each second offset in secs
// relative to base, value = offset + 0.25 (+ field index * 1000).
func appendSeconds(t *testing.T, db *DB, org, device string, base time.Time, secs []int) {
	t.Helper()
	var batch []Sample
	for _, sec := range secs {
		for fi, f := range testFields {
			s := lbls(org, device, f)
			s.T = base.Add(time.Duration(sec) * time.Second).UnixMilli()
			s.V = float64(sec) + 0.25 + float64(fi*1000)
			batch = append(batch, s)
		}
	}
	if err := db.Append(context.Background(), batch); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func checkSeconds(t *testing.T, db *DB, org, device string, base time.Time, secs []int) {
	t.Helper()
	want := slices.Clone(secs)
	slices.Sort(want)
	want = slices.Compact(want)
	for fi, f := range testFields {
		got := rawPoints(t, db, org, device, f, base.Add(-time.Hour).UnixMilli(), base.Add(48*time.Hour).UnixMilli())
		if len(got) != len(want) {
			t.Fatalf("field %s: got %d points, want %d", f, len(got), len(want))
		}
		for i, sec := range want {
			wt := base.Add(time.Duration(sec) * time.Second).UnixMilli()
			wv := float64(sec) + 0.25 + float64(fi*1000)
			if got[i].T != wt || got[i].V != wv {
				t.Fatalf("field %s point %d: got (%d, %v), want (%d, %v)", f, i, got[i].T, got[i].V, wt, wv)
			}
		}
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func checkNoStoredDuplicates(t *testing.T, env *testEnv) int {
	t.Helper()
	total := 0
	for id, ts := range env.storedTimestamps(t) {
		s := slices.Clone(ts)
		slices.Sort(s)
		if c := slices.Compact(slices.Clone(s)); len(c) != len(s) {
			t.Fatalf("series %d: %d stored samples but only %d distinct timestamps: data was stored twice", id, len(s), len(c))
		}
		total += len(ts)
	}
	return total
}

func TestWALReplayAfterCrash(t *testing.T) {
	eachStore(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		base := env.clock.Now().Add(-time.Hour).Truncate(time.Second)
		db := env.open(t, env.opts())
		for i := 0; i < 600; i += 10 {
			appendSeconds(t, db, "acme", "dev1", base, seq(i, i+10))
			if i == 300 {
				if err := db.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Crash: no Close. Also leave a torn record at the WAL tail, as an
		// interrupted write would.
		segs, err := numberedFiles(filepath.Join(env.dir, "wal"), "")
		if err != nil || len(segs) == 0 {
			t.Fatalf("no WAL segments: %v", err)
		}
		f, err := os.OpenFile(segmentPath(filepath.Join(env.dir, "wal"), segs[len(segs)-1]), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Write([]byte{recSamples, 0x40, 0, 0, 0, 1, 2, 3})
		f.Close()

		db2 := env.open(t, env.opts())
		checkSeconds(t, db2, "acme", "dev1", base, seq(0, 600))
		// More data after recovery, a second crash, then a clean close.
		appendSeconds(t, db2, "acme", "dev1", base, seq(600, 700))
		db3 := env.open(t, env.opts())
		checkSeconds(t, db3, "acme", "dev1", base, seq(0, 700))
		if err := db3.Close(); err != nil {
			t.Fatal(err)
		}
		db4 := env.open(t, env.opts())
		defer db4.Close()
		checkSeconds(t, db4, "acme", "dev1", base, seq(0, 700))
		if n := checkNoStoredDuplicates(t, env); n == 0 {
			t.Fatal("no chunk reached the database")
		}
	})
}

func TestCrashBetweenStoreAndCheckpoint(t *testing.T) {
	eachStore(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		base := env.clock.Now().Add(-time.Hour).Truncate(time.Second)
		db := env.open(t, env.opts())
		appendSeconds(t, db, "acme", "dev1", base, seq(0, 520))
		// Store the cut chunks but crash before the checkpoint that would
		// truncate the WAL: replay cuts the same chunks again.
		db.flushMu.Lock()
		if err := db.persistPending(ctx); err != nil {
			t.Fatal(err)
		}
		db.flushMu.Unlock()
		db2 := env.open(t, env.opts())
		checkSeconds(t, db2, "acme", "dev1", base, seq(0, 520))
		if err := db2.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		// 520 samples per field, 50 per chunk: 10 full chunks stored each.
		if n := checkNoStoredDuplicates(t, env); n != 3*500 {
			t.Fatalf("stored %d samples, want %d", n, 3*500)
		}
		// Checkpoint written but chunks not stored yet, then a crash.
		appendSeconds(t, db2, "acme", "dev1", base, seq(520, 700))
		db2.flushMu.Lock()
		if err := db2.checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		db2.flushMu.Unlock()
		db3 := env.open(t, env.opts())
		defer db3.Close()
		if err := db3.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		checkSeconds(t, db3, "acme", "dev1", base, seq(0, 700))
		if n := checkNoStoredDuplicates(t, env); n != 3*650 {
			t.Fatalf("stored %d samples, want %d", n, 3*650)
		}
	})
}

func TestChunksPersistedInStore(t *testing.T) {
	eachStore(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		base := env.clock.Now().Add(-time.Hour).Truncate(time.Second)
		db := env.open(t, env.opts())
		appendSeconds(t, db, "acme", "dev1", base, seq(0, 333))
		// Three hours later every head is idle and gets cut and stored.
		env.clock.Set(env.clock.Now().Add(3 * time.Hour))
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if n := checkNoStoredDuplicates(t, env); n != 3*333 {
			t.Fatalf("stored %d samples, want %d", n, 3*333)
		}
		// A fresh WAL directory: everything must come from the database.
		o := env.opts()
		o.Dir = filepath.Join(t.TempDir(), "fresh")
		db2 := env.open(t, o)
		defer db2.Close()
		checkSeconds(t, db2, "acme", "dev1", base, seq(0, 333))
		lv, err := db2.Latest(ctx, "acme", "dev1")
		if err != nil {
			t.Fatal(err)
		}
		if len(lv) != 3 || lv[0].Field != "line.pressure" || lv[0].Value != 332.25+2000 || lv[0].T != base.Add(332*time.Second).UnixMilli() {
			t.Fatalf("latest after reload from database: %+v", lv)
		}
		// Appending an already stored timestamp must not create a duplicate.
		appendSeconds(t, db2, "acme", "dev1", base, []int{5})
		checkSeconds(t, db2, "acme", "dev1", base, seq(0, 333))
	})
}

func TestDuplicatesFirstWriteWins(t *testing.T) {
	eachStore(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		now := env.clock.Now().Truncate(time.Second)
		db := env.open(t, env.opts())
		mk := func(sec int, v float64) Sample {
			s := lbls("acme", "dev1", "temp")
			s.T, s.V = now.Add(time.Duration(sec-1000)*time.Second).UnixMilli(), v
			return s
		}
		var batch []Sample
		for i := range 200 {
			batch = append(batch, mk(i, float64(i)))
		}
		batch = append(batch, mk(199, -1)) // same timestamp as the newest
		if err := db.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		// In the head, in a cut chunk, and the newest sample again.
		if err := db.Append(ctx, []Sample{mk(190, -2), mk(10, -3), mk(199, -4)}); err != nil {
			t.Fatal(err)
		}
		check := func(db *DB) {
			t.Helper()
			pts := rawPoints(t, db, "acme", "dev1", "temp", now.Add(-time.Hour).UnixMilli(), now.UnixMilli())
			if len(pts) != 200 {
				t.Fatalf("got %d points, want 200", len(pts))
			}
			for i, p := range pts {
				if p.V != float64(i) {
					t.Fatalf("point %d has value %v, want the first-written %v", i, p.V, float64(i))
				}
			}
		}
		check(db)
		// Stored now: duplicates of stored samples still lose.
		env.clock.Set(now.Add(3 * time.Hour))
		if err := db.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.Append(ctx, []Sample{mk(20, -5), mk(199, -6)}); err != nil {
			t.Fatal(err)
		}
		check(db)
		db2 := env.open(t, env.opts()) // crash and replay
		check(db2)
		if err := db2.Close(); err != nil {
			t.Fatal(err)
		}
		db3 := env.open(t, env.opts())
		defer db3.Close()
		check(db3)
	})
}

func TestOutOfOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		base := env.clock.Now().Add(-time.Hour).Truncate(time.Second)
		db := env.open(t, env.opts())
		var even, odd []int
		for i := 0; i < 1000; i++ {
			if i%2 == 0 {
				even = append(even, i)
			} else {
				odd = append(odd, i)
			}
		}
		appendSeconds(t, db, "acme", "dev1", base, even)
		rand.New(rand.NewSource(7)).Shuffle(len(odd), func(i, j int) { odd[i], odd[j] = odd[j], odd[i] })
		for i := 0; i < len(odd); i += 100 {
			appendSeconds(t, db, "acme", "dev1", base, odd[i:i+100])
			if i == 200 {
				if err := db.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		checkSeconds(t, db, "acme", "dev1", base, seq(0, 1000))

		// Beyond the window: the whole batch is rejected.
		good := lbls("acme", "dev1", "temp")
		good.T, good.V = base.Add(-time.Minute).UnixMilli(), 1
		bad := lbls("acme", "dev1", "temp")
		bad.T, bad.V = base.Add(-8*24*time.Hour).UnixMilli(), 1
		if err := db.Append(ctx, []Sample{good, bad}); !errors.Is(err, ErrOutOfBounds) {
			t.Fatalf("8 days late: got %v, want ErrOutOfBounds", err)
		}
		future := lbls("acme", "dev1", "temp")
		future.T = env.clock.Now().Add(2 * time.Hour).UnixMilli()
		if err := db.Append(ctx, []Sample{future}); !errors.Is(err, ErrOutOfBounds) {
			t.Fatalf("2h in the future: got %v, want ErrOutOfBounds", err)
		}
		// Six days late is accepted.
		late := lbls("acme", "dev1", "temp")
		late.T, late.V = base.Add(-6*24*time.Hour).UnixMilli(), 42
		if err := db.Append(ctx, []Sample{late}); err != nil {
			t.Fatalf("6 days late: %v", err)
		}
		pts := rawPoints(t, db, "acme", "dev1", "temp", base.Add(-7*24*time.Hour).UnixMilli(), base.Add(time.Hour).UnixMilli())
		if len(pts) != 1001 || pts[0].T != late.T || pts[0].V != 42 {
			t.Fatalf("got %d points starting with %+v; want 1001 starting with the late sample", len(pts), pts[0])
		}
		db2 := env.open(t, env.opts()) // crash and replay
		defer db2.Close()
		checkSeconds(t, db2, "acme", "dev1", base, seq(0, 1000))
	})
}

func TestRetention(t *testing.T) {
	eachStore(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		now := env.clock.Now().Truncate(time.Minute)
		db := env.open(t, env.opts())
		defer db.Close()
		db.SetRetention("a", 24*time.Hour)
		const n = 3 * 24 * 60 // one sample a minute for three days
		for _, org := range []string{"a", "b"} {
			var batch []Sample
			for i := range n {
				s := lbls(org, "dev1", "temp")
				s.T, s.V = now.Add(-time.Duration(n-i)*time.Minute).UnixMilli(), float64(i)
				batch = append(batch, s)
			}
			if err := db.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.ApplyRetention(ctx); err != nil {
			t.Fatal(err)
		}
		from, to := now.Add(-5*24*time.Hour).UnixMilli(), now.UnixMilli()
		cutoff := now.Add(-24 * time.Hour).UnixMilli()
		pa := rawPoints(t, db, "a", "dev1", "temp", from, to)
		pb := rawPoints(t, db, "b", "dev1", "temp", from, to)
		if len(pb) != n {
			t.Fatalf("org b (default 30d retention) has %d points, want %d", len(pb), n)
		}
		// Whole chunks (50 samples = 50 minutes here) are deleted.
		if len(pa) < 24*60 || len(pa) > 24*60+50 || pa[0].T < cutoff-50*time.Minute.Milliseconds() {
			t.Fatalf("org a (1d retention) has %d points from %s; want about 1440 from %s", len(pa), fmtMillis(pa[0].T), fmtMillis(cutoff))
		}
		// Two days later org a's data, including its head, is gone.
		env.clock.Set(now.Add(48 * time.Hour))
		if err := db.ApplyRetention(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if pa := rawPoints(t, db, "a", "dev1", "temp", from, to); len(pa) != 0 {
			t.Fatalf("org a still has %d points after its retention passed", len(pa))
		}
		if pb := rawPoints(t, db, "b", "dev1", "temp", from, to); len(pb) != n {
			t.Fatalf("org b lost data: %d points, want %d", len(pb), n)
		}
	})
}

func TestRangeAggregationMatchesNaive(t *testing.T) {
	env := newSQLiteEnv(t)
	ctx := context.Background()
	now := env.clock.Now().Truncate(time.Minute)
	db := env.open(t, env.opts())
	defer db.Close()
	r := rand.New(rand.NewSource(3))
	type tv struct {
		t int64
		v float64
	}
	var all []tv
	var batch []Sample
	start := now.Add(-3 * time.Hour).UnixMilli()
	for ts := start; ts < now.UnixMilli(); ts += int64(500 + r.Intn(9000)) {
		v := math.Round(r.NormFloat64()*1000) / 100
		all = append(all, tv{ts, v})
		s := lbls("acme", "dev1", "temp")
		s.T, s.V = ts, v
		batch = append(batch, s)
	}
	// Append in a shuffled order so out-of-order merging is exercised too.
	r.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	for i := 0; i < len(batch); i += 97 {
		if err := db.Append(ctx, batch[i:min(i+97, len(batch))]); err != nil {
			t.Fatal(err)
		}
		if i%970 == 0 {
			if err := db.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	from, to := time.UnixMilli(start+7*60_000+123), now.Add(-13*time.Minute)
	for _, step := range []time.Duration{time.Minute, 7 * time.Minute, time.Hour} {
		for _, agg := range []string{"avg", "min", "max", "sum", "count", "last"} {
			fs, err := db.Range(ctx, "acme", "dev1", nil, from, to, step, agg)
			if err != nil {
				t.Fatal(err)
			}
			// Naive: bucket every sample in range by floor(t/step)*step.
			type acc struct {
				vals []float64
			}
			buckets := map[int64]*acc{}
			var keys []int64
			for _, x := range all {
				if x.t < from.UnixMilli() || x.t > to.UnixMilli() {
					continue
				}
				b := x.t / step.Milliseconds() * step.Milliseconds()
				if buckets[b] == nil {
					buckets[b] = &acc{}
					keys = append(keys, b)
				}
				buckets[b].vals = append(buckets[b].vals, x.v)
			}
			slices.Sort(keys)
			if len(fs) != 1 || fs[0].Field != "temp" || len(fs[0].Points) != len(keys) {
				t.Fatalf("step %s %s: got %+v fields, want 1 with %d points", step, agg, len(fs), len(keys))
			}
			for i, k := range keys {
				vals := buckets[k].vals
				var want float64
				switch agg {
				case "avg", "sum":
					for _, v := range vals {
						want += v
					}
					if agg == "avg" {
						want /= float64(len(vals))
					}
				case "min":
					want = slices.Min(vals)
				case "max":
					want = slices.Max(vals)
				case "count":
					want = float64(len(vals))
				case "last":
					want = vals[len(vals)-1]
				}
				got := fs[0].Points[i]
				if got.T != k || math.Abs(got.V-want) > 1e-9 {
					t.Fatalf("step %s %s bucket %d: got (%d, %v), want (%d, %v)", step, agg, i, got.T, got.V, k, want)
				}
			}
		}
	}
	if _, err := db.Range(ctx, "acme", "dev1", nil, from, to, time.Minute, "median"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown aggregation: got %v, want ErrInvalid", err)
	}
	if _, err := db.Range(ctx, "acme", "dev1", nil, to, from, 0, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reversed range: got %v, want ErrInvalid", err)
	}
	// A requested field without data comes back empty, not missing.
	fs, err := db.Range(ctx, "acme", "dev1", []string{"nope"}, from, to, 0, "")
	if err != nil || len(fs) != 1 || fs[0].Field != "nope" || fs[0].Points == nil || len(fs[0].Points) != 0 {
		t.Fatalf("missing field: got %+v, %v", fs, err)
	}
}

func TestStrings(t *testing.T) {
	eachStore(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		now := env.clock.Now().Truncate(time.Second)
		db := env.open(t, env.opts())
		ss := func(sec int, v string) StringSample {
			return StringSample{Org: "acme", Device: "dev1", Field: "state", T: now.Add(time.Duration(sec-100) * time.Second).UnixMilli(), Value: v}
		}
		in := []StringSample{ss(0, "idle"), ss(1, "idle"), ss(2, "run"), ss(3, "run"), ss(4, "run"), ss(5, "idle")}
		if err := db.AppendStrings(ctx, in[:3]); err != nil {
			t.Fatal(err)
		}
		if err := db.AppendStrings(ctx, in[3:]); err != nil {
			t.Fatal(err)
		}
		// Redelivery of everything changes nothing; a duplicate timestamp
		// with another value keeps the first.
		if err := db.AppendStrings(ctx, append(slices.Clone(in), ss(5, "fault"))); err != nil {
			t.Fatal(err)
		}
		num := lbls("acme", "dev1", "temp")
		num.T, num.V = now.Add(-50*time.Second).UnixMilli(), 21.5
		if err := db.Append(ctx, []Sample{num}); err != nil {
			t.Fatal(err)
		}
		check := func(db *DB, wantLatestT int64) {
			t.Helper()
			ev, err := db.StringEvents(ctx, "acme", "dev1", "state", now.Add(-time.Hour), now)
			if err != nil {
				t.Fatal(err)
			}
			want := []StringEvent{{in[0].T, "idle"}, {in[2].T, "run"}, {in[5].T, "idle"}}
			if !slices.Equal(ev, want) {
				t.Fatalf("events: got %+v, want %+v", ev, want)
			}
			lv, err := db.Latest(ctx, "acme", "dev1")
			if err != nil {
				t.Fatal(err)
			}
			wantLV := []LatestValue{{"state", wantLatestT, "idle"}, {"temp", num.T, 21.5}}
			if !slices.Equal(lv, wantLV) {
				t.Fatalf("latest: got %+v, want %+v", lv, wantLV)
			}
		}
		check(db, in[5].T)
		// A late sample that differs from the event before it is an event.
		if err := db.AppendStrings(ctx, []StringSample{ss(1, "idle"), ss(3, "run")}); err != nil {
			t.Fatal(err)
		}
		check(db, in[5].T)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db2 := env.open(t, env.opts())
		defer db2.Close()
		check(db2, in[5].T)
		if err := db2.AppendStrings(ctx, []StringSample{{Org: "acme", Field: "x", Value: "y"}}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("string sample without device: got %v, want ErrInvalid", err)
		}
	})
}

func TestInvalidInput(t *testing.T) {
	env := newSQLiteEnv(t)
	db := env.open(t, env.opts())
	defer db.Close()
	ctx := context.Background()
	s := Sample{Labels: TelemetryLabels("", "s", "d", "t", "f"), T: env.clock.Now().UnixMilli()}
	if err := db.Append(ctx, []Sample{s}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no org: got %v, want ErrInvalid", err)
	}
	if err := db.AppendRefs(ctx, []RefSample{{Ref: 9999, T: 1}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown ref: got %v, want ErrInvalid", err)
	}
	if got := SanitizeMetricName("motor/rpm.value-1"); got != "motor_rpm_value_1" {
		t.Fatalf("sanitize: %q", got)
	}
	if got := SanitizeMetricName("1st"); got != "_1st" {
		t.Fatalf("sanitize leading digit: %q", got)
	}
}

func TestChunkEncodingIsLossless(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	gens := map[string]func(i int) float64{
		"decimal2": func(i int) float64 { return math.Round((20+r.NormFloat64())*100) / 100 },
		"full":     func(i int) float64 { return r.NormFloat64() * 1e3 },
		"ints":     func(i int) float64 { return float64(r.Intn(1000) - 500) },
		"special":  func(i int) float64 { return []float64{math.NaN(), math.Inf(1), math.Copysign(0, -1), 0.1, 1e300}[i%5] },
		"mixed":    func(i int) float64 { return []float64{0.1, 0.123456789, 1234.5, -0.07}[i%4] },
		"tiny":     func(i int) float64 { return 1e-12 * float64(i) },
	}
	for name, gen := range gens {
		var ss []sample
		for i := range 240 {
			ss = append(ss, sample{int64(1_700_000_000_000 + i*1000), gen(i)})
		}
		got, err := decodeChunk(nil, encodeChunk(ss), minInt64, math.MaxInt64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(ss) {
			t.Fatalf("%s: %d samples back, want %d", name, len(got), len(ss))
		}
		for i := range ss {
			if got[i].t != ss[i].t || math.Float64bits(got[i].v) != math.Float64bits(ss[i].v) {
				t.Fatalf("%s sample %d: got (%d, %v), want (%d, %v)", name, i, got[i].t, got[i].v, ss[i].t, ss[i].v)
			}
		}
	}
}

// TestConcurrentAppendQueryFlush exercises the locking (run with -race).
func TestConcurrentAppendQueryFlush(t *testing.T) {
	env := newSQLiteEnv(t)
	ctx := context.Background()
	base := env.clock.Now().Add(-time.Hour).Truncate(time.Second)
	db := env.open(t, env.opts())
	defer db.Close()
	done := make(chan struct{})
	errc := make(chan error, 2)
	go func() {
		defer close(done)
		for i := 0; i < 1000; i += 10 {
			var batch []Sample
			for sec := i; sec < i+10; sec++ {
				s := lbls("acme", "dev1", "temp")
				s.T, s.V = base.Add(time.Duration(sec)*time.Second).UnixMilli(), float64(sec)
				batch = append(batch, s)
			}
			if err := db.Append(ctx, batch); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case <-done:
				errc <- nil
				return
			default:
			}
			if err := db.Flush(ctx); err != nil {
				errc <- err
				return
			}
			if _, err := db.Range(ctx, "acme", "dev1", nil, base, base.Add(time.Hour), time.Minute, "avg"); err != nil {
				errc <- err
				return
			}
			if _, err := db.Latest(ctx, "acme", "dev1"); err != nil {
				errc <- err
				return
			}
		}
	}()
	<-done
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	pts := rawPoints(t, db, "acme", "dev1", "temp", base.UnixMilli(), base.Add(time.Hour).UnixMilli())
	if len(pts) != 1000 {
		t.Fatalf("got %d points, want 1000", len(pts))
	}
}
