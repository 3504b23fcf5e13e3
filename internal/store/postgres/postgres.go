package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/shopfloor/shopfloor/internal/store"
)

// Store is the registry Store on PostgreSQL. It implements registry.Store.
type Store struct {
	*store.SQL
}

// Dialect is PostgreSQL's store.Dialect.
var Dialect = store.Dialect{
	Name:   "postgres",
	IDType: `TEXT COLLATE "C"`,
	// Per schema, so parallel test schemas and separate hubs sharing one
	// database do not wait for each other.
	MigrationLock: `SELECT pg_advisory_xact_lock(hashtext('shopfloor.registry.' || current_schema()))`,
	Classify:      classify,
}

func classify(err error) store.Violation {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return store.NoViolation
	}
	switch pe.Code {
	case "23505": // unique_violation
		return store.Unique
	case "23503": // foreign_key_violation
		return store.ForeignKey
	}
	return store.NoViolation
}

// Open connects to PostgreSQL with dsn (a URL such as
// postgres://user@host:5432/db?sslmode=disable or key=value pairs) and
// migrates the registry schema.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message can echo the DSN, password included: keep it out.
		return nil, errors.New("open the PostgreSQL registry: the connection string cannot be parsed: use postgres://user:password@host:5432/database?sslmode=disable")
	}
	where := fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to the PostgreSQL registry %s (is the server running and reachable, and the user allowed in?): %w", where, err)
	}
	s, err := store.New(ctx, db, Dialect, logger)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open the PostgreSQL registry %s: %w", where, err)
	}
	return &Store{SQL: s}, nil
}

// sqlDB documents that DB() returns a database/sql handle on driver "pgx".
var _ interface{ DB() *sql.DB } = (*Store)(nil)
