package tsdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// testEnv is one chunk store backend plus a WAL directory.
type testEnv struct {
	name  string
	sqlDB *sql.DB
	store ChunkStore
	dir   string
	clock *fakeClock
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eachStore runs fn once against SQLite and, when SHOPFLOOR_TEST_POSTGRES is
// set, once against PostgreSQL in a schema of its own.
func eachStore(t *testing.T, fn func(t *testing.T, env *testEnv)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newSQLiteEnv(t)) })
	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("SHOPFLOOR_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("SHOPFLOOR_TEST_POSTGRES is not set; set it to a DSN such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the PostgreSQL chunk store tests")
		}
		fn(t, newPostgresEnv(t, dsn))
	})
}

func newSQLiteEnv(t testing.TB) *testEnv {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "registry.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := NewSQLiteChunkStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{name: "sqlite", sqlDB: db, store: st, dir: filepath.Join(dir, "tsdb"), clock: &fakeClock{t: time.Now()}}
}

func newPostgresEnv(t testing.TB, dsn string) *testEnv {
	ctx := context.Background()
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	schema := "t_" + hex.EncodeToString(rb[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema (is PostgreSQL at %s reachable?): %v", dsn, err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("pgx", dsn+sep+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	st, err := NewPostgresChunkStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{name: "postgres", sqlDB: db, store: st, dir: filepath.Join(t.TempDir(), "tsdb"), clock: &fakeClock{t: time.Now()}}
}

func (e *testEnv) opts() Options {
	return Options{Dir: e.dir, ChunkSamples: 50, Now: e.clock.Now}
}

func (e *testEnv) open(t testing.TB, o Options) *DB {
	t.Helper()
	db, err := Open(context.Background(), o, e.store, testLogger(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

// storedTimestamps decodes every stored chunk and returns, per series id,
// every stored timestamp (with repetitions, so duplicates show).
func (e *testEnv) storedTimestamps(t testing.TB) map[uint64][]int64 {
	t.Helper()
	rows, err := e.sqlDB.Query(`SELECT series_id, data FROM tsdb_chunks`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint64][]int64{}
	for rows.Next() {
		var id int64
		var data []byte
		if err := rows.Scan(&id, &data); err != nil {
			t.Fatal(err)
		}
		ss, err := decodeChunk(nil, data, minInt64, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			out[uint64(id)] = append(out[uint64(id)], s.t)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func lbls(org, device, field string) Sample {
	return Sample{Labels: TelemetryLabels(org, "site1", device, "tmpl", field)}
}

// rawPoints reads every raw point of one field.
func rawPoints(t testing.TB, db *DB, org, device, field string, from, to int64) []Point {
	t.Helper()
	fs, err := db.Range(context.Background(), org, device, []string{field}, time.UnixMilli(from), time.UnixMilli(to), 0, "")
	if err != nil {
		t.Fatalf("range: %v", err)
	}
	if len(fs) != 1 {
		t.Fatalf("range returned %d fields, want 1", len(fs))
	}
	return fs[0].Points
}
