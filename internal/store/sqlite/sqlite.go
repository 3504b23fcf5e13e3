package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/shopfloor/shopfloor/internal/store"
)

// BusyTimeoutMillis is how long a statement waits for another writer
// before it fails with "database is locked".
const BusyTimeoutMillis = 10_000

// Store is the registry Store on SQLite. It implements registry.Store.
type Store struct {
	*store.SQL
}

// Dialect is SQLite's store.Dialect.
var Dialect = store.Dialect{
	Name:     "sqlite",
	IDType:   "TEXT",
	Classify: classify,
}

func classify(err error) store.Violation {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return store.NoViolation
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return store.Unique
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return store.ForeignKey
	}
	return store.NoViolation
}

// Options tune how the database is opened.
type Options struct {
	// Fsync flushes every commit to disk (synchronous=FULL), so committed
	// changes also survive a power cut. Without it (synchronous=NORMAL, the
	// usual choice in WAL mode) they survive a crash of the process, and the
	// last ones may be lost with the power; the database stays consistent
	// either way.
	Fsync bool
}

// Open opens (creating when missing, with its directory) the SQLite
// database file at path and migrates the registry schema.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	return OpenWith(ctx, path, Options{}, logger)
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, opts Options, logger *slog.Logger) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open the SQLite registry: give a file path such as /var/lib/shopfloor/shopfloor.db, not %q", path)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open the SQLite registry %q: the path must not contain ? or #: choose another file name", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open the SQLite registry %q: create its directory: %w", path, err)
	}
	sync := "NORMAL"
	if opts.Fsync {
		sync = "FULL"
	}
	dsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(%s)&_pragma=foreign_keys(1)&_txlock=immediate",
		path, BusyTimeoutMillis, sync)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open the SQLite registry %q: %w", path, err)
	}
	// WAL lets readers run beside the one writer; more connections than
	// that only add memory and lock waits.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open the SQLite registry %q (check the path and its permissions): %w", path, err)
	}
	s, err := store.New(ctx, db, Dialect, logger)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open the SQLite registry %q: %w", path, err)
	}
	return &Store{SQL: s}, nil
}
