package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// component names this package's rows in schema_migrations, which other
// modules may share with their own component names.
const component = "registry"

type migration struct {
	version int
	name    string
	stmts   []string // {id} is replaced by Dialect.IDType
}

// migrations are append-only: never edit one that has shipped.
var migrations = []migration{
	{1, "orgs, tokens, sites, devices, enrollment groups, CA certificates", []string{
		`CREATE TABLE orgs (
			id {id} PRIMARY KEY,
			name TEXT NOT NULL,
			parent {id} REFERENCES orgs (id),
			retention_days INTEGER NOT NULL,
			created_at BIGINT NOT NULL
		)`,
		`CREATE INDEX orgs_parent ON orgs (parent, id)`,
		`CREATE TABLE tokens (
			id {id} PRIMARY KEY,
			org {id} NOT NULL REFERENCES orgs (id),
			name TEXT NOT NULL,
			role TEXT NOT NULL,
			secret_hash TEXT NOT NULL UNIQUE,
			created_at BIGINT NOT NULL
		)`,
		`CREATE INDEX tokens_org ON tokens (org, created_at, id)`,
		`CREATE TABLE sites (
			org {id} NOT NULL REFERENCES orgs (id),
			id {id} NOT NULL,
			name TEXT NOT NULL,
			tags TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (org, id)
		)`,
		// (org, site) references a site of the same org, so the database
		// itself keeps a device from pointing at another tenant's site.
		`CREATE TABLE devices (
			id {id} PRIMARY KEY,
			org {id} NOT NULL REFERENCES orgs (id),
			site {id},
			template {id} NOT NULL,
			tags TEXT NOT NULL,
			disabled BOOLEAN NOT NULL,
			auth TEXT NOT NULL,
			primary_key TEXT NOT NULL,
			secondary_key TEXT NOT NULL,
			thumbprint TEXT NOT NULL,
			enrollment_group {id} NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			last_error TEXT NOT NULL,
			last_error_at BIGINT,
			error_count BIGINT NOT NULL,
			FOREIGN KEY (org, site) REFERENCES sites (org, id)
		)`,
		`CREATE INDEX devices_org ON devices (org, id)`,
		`CREATE INDEX devices_org_site ON devices (org, site, id)`,
		`CREATE INDEX devices_org_template ON devices (org, template, id)`,
		`CREATE TABLE device_tags (
			device {id} NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
			org {id} NOT NULL,
			tag_key TEXT NOT NULL,
			tag_value TEXT NOT NULL,
			PRIMARY KEY (device, tag_key)
		)`,
		`CREATE INDEX device_tags_org ON device_tags (org, tag_key, tag_value, device)`,
		`CREATE TABLE enrollment_groups (
			id {id} PRIMARY KEY,
			org {id} NOT NULL REFERENCES orgs (id),
			site {id},
			template {id} NOT NULL,
			tags TEXT NOT NULL,
			primary_key TEXT NOT NULL,
			secondary_key TEXT NOT NULL,
			disabled BOOLEAN NOT NULL,
			created_at BIGINT NOT NULL,
			FOREIGN KEY (org, site) REFERENCES sites (org, id)
		)`,
		`CREATE INDEX enrollment_groups_org ON enrollment_groups (org, id)`,
		`CREATE TABLE ca_certs (
			id {id} PRIMARY KEY,
			org {id} NOT NULL REFERENCES orgs (id),
			name TEXT NOT NULL,
			pem TEXT NOT NULL,
			thumbprint TEXT NOT NULL UNIQUE,
			auto_register BOOLEAN NOT NULL,
			site {id},
			created_at BIGINT NOT NULL,
			FOREIGN KEY (org, site) REFERENCES sites (org, id)
		)`,
		`CREATE INDEX ca_certs_org ON ca_certs (org, id)`,
	}},
}

// migrate applies the missing migrations in one transaction. Running it
// again, or from several processes at once, changes nothing.
func (s *SQL) migrate(ctx context.Context) error {
	applied := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if s.d.MigrationLock != "" {
			if _, err := tx.ExecContext(ctx, s.d.MigrationLock); err != nil {
				return fmt.Errorf("lock the schema for migration: %w", err)
			}
		}
		// Created inside the locked transaction: concurrent CREATE TABLE IF
		// NOT EXISTS can fail on PostgreSQL.
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			component TEXT NOT NULL,
			version INTEGER NOT NULL,
			name TEXT NOT NULL,
			applied_at BIGINT NOT NULL,
			PRIMARY KEY (component, version)
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		have := map[int]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations WHERE component = $1`, component)
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("read schema_migrations: %w", err)
			}
			have[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		latest := migrations[len(migrations)-1].version
		for v := range have {
			if v > latest {
				return fmt.Errorf("the registry database has schema version %d but this program knows only up to %d: run a newer shopfloor", v, latest)
			}
		}
		for _, m := range migrations {
			if have[m.version] {
				continue
			}
			for _, stmt := range m.stmts {
				if _, err := tx.ExecContext(ctx, strings.ReplaceAll(stmt, "{id}", s.d.IDType)); err != nil {
					return fmt.Errorf("registry schema migration %d (%s): %w", m.version, m.name, err)
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ($1, $2, $3, $4)`,
				component, m.version, m.name, micros(time.Now())); err != nil {
				return fmt.Errorf("record registry schema migration %d: %w", m.version, err)
			}
			applied++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if applied > 0 {
		s.log.Info("registry schema migrated", "database", s.d.Name, "applied", applied, "version", migrations[len(migrations)-1].version)
	}
	return nil
}
