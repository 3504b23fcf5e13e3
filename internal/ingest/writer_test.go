package ingest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/store/sqlite"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

type rejects struct{ msgs []string }

func (r *rejects) RecordDeviceError(_ context.Context, id, msg string, _ time.Time) error {
	r.msgs = append(r.msgs, id+": "+msg)
	return nil
}

func openTSDB(t testing.TB) *tsdb.DB {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs, err := tsdb.NewSQLiteChunkStore(context.Background(), st.DB())
	if err != nil {
		t.Fatal(err)
	}
	db, err := tsdb.Open(context.Background(), tsdb.Options{Dir: t.TempDir()}, cs, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestHandleWritesAndRejectsOutOfBounds(t *testing.T) {
	db := openTSDB(t)
	rj := &rejects{}
	w := New(nil, db, rj, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	batch := []*bus.Telemetry{
		{Org: "acme", Device: "d1", Site: "north", TS: now.Add(-time.Minute).UnixMilli(), Received: now.UnixMilli(),
			Num: map[string]float64{"temp": 21.5, "spindle.rpm": 1200}, Str: map[string]string{"state": "RUNNING"}},
		{Org: "acme", Device: "d1", TS: now.Add(-8 * 24 * time.Hour).UnixMilli(), Num: map[string]float64{"temp": 1}},
		{Org: "acme", Device: "d2", TS: now.Add(2 * time.Hour).UnixMilli(), Num: map[string]float64{"temp": 2}},
	}
	// Twice: a redelivered batch must not duplicate anything.
	for i := 0; i < 2; i++ {
		if err := w.Handle(context.Background(), batch); err != nil {
			t.Fatalf("a batch with out-of-range timestamps blocked the writer: %v", err)
		}
	}
	if len(rj.msgs) != 4 {
		t.Fatalf("rejections recorded: %v", rj.msgs)
	}
	rs, err := db.Range(context.Background(), "acme", "d1", []string{"temp"}, now.Add(-9*24*time.Hour), now, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || len(rs[0].Points) != 1 || rs[0].Points[0].V != 21.5 {
		t.Fatalf("stored temp points: %+v", rs)
	}
	lv, err := db.Latest(context.Background(), "acme", "d1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, v := range lv {
		got[v.Field] = v.Value
	}
	if got["state"] != "RUNNING" || got["spindle.rpm"] != 1200.0 {
		t.Fatalf("latest: %v", got)
	}
}

func TestSeriesLabels(t *testing.T) {
	ls := SeriesLabels("acme", "cnc-1", "", "cnc", "spindle.load-%")
	want := labels.FromStrings("__name__", "spindle_load__", "device", "cnc-1", "field", "spindle.load-%", "org", "acme", "template", "cnc")
	if !labels.Equal(ls, want) {
		t.Fatalf("labels %s, want %s", ls, want)
	}
	if got := SeriesLabels("a", "d", "s", "t", "1st.stage").Get("__name__"); got != "_1st_stage" {
		t.Fatalf("leading digit: %q", got)
	}
}

func BenchmarkHandle(b *testing.B) {
	db := openTSDB(b)
	w := New(nil, db, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	base := time.Now().Add(-time.Hour).UnixMilli()
	batch := make([]*bus.Telemetry, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = &bus.Telemetry{Org: "acme", Device: "d" + string(rune('a'+j%26)), Site: "s", TS: base + int64(i*1000+j),
				Num: map[string]float64{"a": 1, "b": 2, "c": 3, "d": 4, "e": float64(j)}}
		}
		if err := w.Handle(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "msgs/s")
}
