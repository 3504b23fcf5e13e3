package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx" for creating test schemas

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/postgres"
	"github.com/shopfloor/shopfloor/internal/store/sqlite"
)

// PostgresEnv names the environment variable with the DSN of a PostgreSQL
// database the tests may create schemas in.
const PostgresEnv = "SHOPFLOOR_TEST_POSTGRES"

// Store is what both implementations offer beyond registry.Store.
type Store interface {
	registry.Store
	DB() *sql.DB
	Close() error
}

// Backend is one database the conformance suite runs against.
type Backend struct {
	Name string
	// Location returns a fresh, empty database location for t (a file
	// path or a DSN) and removes it when t ends. It skips t when the
	// database is not available.
	Location func(t testing.TB) string
	Open     func(ctx context.Context, location string, logger *slog.Logger) (Store, error)
	// Require skips t when the database is not available; nil when it
	// always is.
	Require func(t testing.TB)
}

// SQLite is a backend with a database file in t's temporary directory.
func SQLite() Backend {
	return Backend{
		Name: "sqlite",
		Location: func(t testing.TB) string {
			return filepath.Join(t.TempDir(), "registry.db")
		},
		Open: func(ctx context.Context, loc string, logger *slog.Logger) (Store, error) {
			s, err := sqlite.Open(ctx, loc, logger)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
	}
}

// Postgres is a backend with its own schema per location in the database
// named by $SHOPFLOOR_TEST_POSTGRES; other packages test in the same
// database at the same time.
func Postgres() Backend {
	return Backend{
		Name:     "postgres",
		Location: PostgresDSN,
		Require:  requirePostgres,
		Open: func(ctx context.Context, loc string, logger *slog.Logger) (Store, error) {
			s, err := postgres.Open(ctx, loc, logger)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
	}
}

// Backends returns SQLite and PostgreSQL.
func Backends() []Backend { return []Backend{SQLite(), Postgres()} }

// PostgresDSN creates a schema r_<random> in the test database, returns a
// DSN whose search_path is that schema, and drops the schema when t ends.
// It skips t when $SHOPFLOOR_TEST_POSTGRES is not set.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	requirePostgres(t)
	base := os.Getenv(PostgresEnv)
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "r_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", PostgresEnv, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create test schema %s in %s: %v", schema, PostgresEnv, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
		}
		admin.Close()
	})
	if strings.Contains(base, "://") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatalf("parse %s: %v", PostgresEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema
}

func requirePostgres(t testing.TB) {
	t.Helper()
	if os.Getenv(PostgresEnv) == "" {
		t.Skipf("PostgreSQL tests skipped: set %s to a DSN such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", PostgresEnv)
	}
}

// OpenStore opens b on a fresh location and closes it when t ends.
func OpenStore(t testing.TB, b Backend) Store {
	t.Helper()
	loc := b.Location(t)
	s, err := b.Open(context.Background(), loc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open %s store: %v", b.Name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s store: %v", b.Name, err)
		}
	})
	return s
}

// DBs opens an empty database per backend for modules that keep their own
// tables in the registry's database (templates, users, …): each function
// returns the database and its database/sql driver name, closes it when t
// ends, and (for PostgreSQL) skips t when no test server is configured.
func DBs() map[string]func(t testing.TB) (*sql.DB, string) {
	return map[string]func(t testing.TB) (*sql.DB, string){
		"sqlite": func(t testing.TB) (*sql.DB, string) {
			db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "t.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db, "sqlite"
		},
		"postgres": func(t testing.TB) (*sql.DB, string) {
			db, err := sql.Open("pgx", PostgresDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db, "pgx"
		},
	}
}
