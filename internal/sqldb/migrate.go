package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Schema is one component's versioned tables. Steps[v] holds the
// statements that bring the schema to version v (Steps[0] is unused); in
// them {id} stands for the identifier column type, which compares bytes on
// both databases (TEXT on SQLite, TEXT COLLATE "C" on PostgreSQL), so ids
// sort the same everywhere.
type Schema struct {
	Component string
	Steps     [][]string
	// After, when set, runs after version v's statements, in the same
	// transaction: a data step such as copying rows from an older table.
	After func(ctx context.Context, tx *sql.Tx, version int) error
}

// IDType is the identifier column type Migrate puts for {id}.
func IDType(postgres bool) string {
	if postgres {
		return `TEXT COLLATE "C"`
	}
	return "TEXT"
}

// Migrate applies the versions of s the database lacks, in one transaction,
// and records them in the shared schema_migrations table under
// s.Component. On PostgreSQL an advisory lock per component and schema lets
// several hubs start at once. A database newer than this program is
// refused rather than written to.
func Migrate(ctx context.Context, db *sql.DB, postgres bool, s Schema) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin the migration: %w", s.Component, err)
	}
	defer tx.Rollback()
	if postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('shopfloor.' || $1 || '.' || current_schema()))`, s.Component); err != nil {
			return fmt.Errorf("%s: lock the schema for migration: %w", s.Component, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL,
		version INTEGER NOT NULL,
		name TEXT NOT NULL,
		applied_at BIGINT NOT NULL,
		PRIMARY KEY (component, version)
	)`); err != nil {
		return fmt.Errorf("%s: create schema_migrations: %w", s.Component, err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, Rebind(postgres, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?`), s.Component).Scan(&have); err != nil {
		return fmt.Errorf("%s: read schema_migrations: %w", s.Component, err)
	}
	latest := len(s.Steps) - 1
	if have > latest {
		return fmt.Errorf("the %s tables have schema version %d but this program knows only up to %d: run a newer shopfloor", s.Component, have, latest)
	}
	idType := IDType(postgres)
	for v := have + 1; v <= latest; v++ {
		for _, stmt := range s.Steps[v] {
			if _, err := tx.ExecContext(ctx, strings.ReplaceAll(stmt, "{id}", idType)); err != nil {
				return fmt.Errorf("%s schema migration %d: %w", s.Component, v, err)
			}
		}
		if s.After != nil {
			if err := s.After(ctx, tx, v); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, Rebind(postgres, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)`),
			s.Component, v, fmt.Sprintf("%s %d", s.Component, v), time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("record %s migration %d: %w", s.Component, v, err)
		}
	}
	return tx.Commit()
}
