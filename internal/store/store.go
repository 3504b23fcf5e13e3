package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Violation is the kind of constraint a failed statement violated.
type Violation int

const (
	NoViolation Violation = iota
	Unique                // a primary key or unique constraint
	ForeignKey            // a reference to a missing row, or a delete of a referenced one
)

// Dialect is what differs between the databases.
type Dialect struct {
	Name string // "sqlite" or "postgres", for messages
	// IDType is the column type of identifiers. It must compare bytes, so
	// paging by id gives the same order on every database.
	IDType string
	// MigrationLock runs first in the migration transaction so concurrent
	// processes migrate one at a time; "" when beginning the transaction
	// already serialises writers (SQLite with BEGIN IMMEDIATE).
	MigrationLock string
	// Classify tells which constraint, if any, err violated.
	Classify func(err error) Violation
}

// SQL is a registry.Store over one database.
type SQL struct {
	db     *sql.DB
	d      Dialect
	log    *slog.Logger
	lookup *sql.Stmt // LookupDevice, prepared once: it runs on every MQTT CONNECT
}

var _ registry.Store = (*SQL)(nil)

// New migrates the schema of db and returns the store. The store owns db:
// Close closes it.
func New(ctx context.Context, db *sql.DB, d Dialect, logger *slog.Logger) (*SQL, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &SQL{db: db, d: d, log: logger}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	var err error
	s.lookup, err = db.PrepareContext(ctx, "SELECT "+deviceCols+" FROM devices WHERE id = $1")
	if err != nil {
		return nil, fmt.Errorf("prepare the device lookup: %w", err)
	}
	return s, nil
}

// DB returns the database, for modules that keep their own tables in it.
func (s *SQL) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *SQL) Close() error {
	var err error
	if s.lookup != nil {
		err = s.lookup.Close()
	}
	return errors.Join(err, s.db.Close())
}

func (s *SQL) violation(err error) Violation {
	if err == nil {
		return NoViolation
	}
	return s.d.Classify(err)
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *SQL) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin a %s transaction: %w", s.d.Name, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit a %s transaction: %w", s.d.Name, err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func encodeTags(t map[string]string) (string, error) {
	if len(t) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode tags: %w", err)
	}
	return string(b), nil
}

func decodeTags(s string) (map[string]string, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var t map[string]string
	if err := json.Unmarshal([]byte(s), &t); err != nil {
		return nil, fmt.Errorf("decode stored tags %q: %w", s, err)
	}
	return t, nil
}

// affected returns ErrNotFound-wrapped notFound when res changed no row.
func affected(res sql.Result, notFound error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("count changed rows: %w", err)
	}
	if n == 0 {
		return notFound
	}
	return nil
}
