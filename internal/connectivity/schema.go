package connectivity

import (
	"context"
	"database/sql"

	"github.com/shopfloor/shopfloor/internal/sqldb"
)

// Dialect is what differs between the databases for this package.
type Dialect struct {
	Name string // "sqlite" or "postgres"
	// Anonymous says the bulk insert uses ? placeholders: SQLite looks up
	// numbered ones ($n) linearly, which makes a 16,000-parameter
	// statement quadratic.
	Anonymous bool
}

// The dialects of the two databases the hub supports.
var (
	SQLite   = Dialect{Name: "sqlite", Anonymous: true}
	Postgres = Dialect{Name: "postgres"}
)

const component = "connectivity"

// migrations are append-only: never edit one that has shipped.
var migrations = [][]string{
	1: {
		`CREATE TABLE conn_sims (
			iccid {id} PRIMARY KEY,
			org {id} NOT NULL,
			imsi {id} NOT NULL UNIQUE,
			msisdn TEXT NOT NULL,
			label TEXT NOT NULL,
			state TEXT NOT NULL,
			system_state TEXT NOT NULL,
			device {id} NOT NULL,
			imei_lock BOOLEAN NOT NULL,
			imei TEXT NOT NULL,
			static_ip TEXT NOT NULL,
			ki TEXT NOT NULL,
			opc TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE INDEX conn_sims_org ON conn_sims (org, iccid)`,
		`CREATE INDEX conn_sims_org_state ON conn_sims (org, state, iccid)`,
		// Device ids are unique hub-wide; a device holds at most one SIM.
		`CREATE UNIQUE INDEX conn_sims_device ON conn_sims (device) WHERE device <> ''`,
		`CREATE TABLE conn_objects (
			org {id} NOT NULL,
			kind {id} NOT NULL,
			name {id} NOT NULL,
			body TEXT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (org, kind, name)
		)`,
		`CREATE TABLE conn_refs (
			org {id} NOT NULL,
			from_kind {id} NOT NULL,
			from_name {id} NOT NULL,
			to_kind {id} NOT NULL,
			to_name {id} NOT NULL,
			PRIMARY KEY (org, from_kind, from_name, to_kind, to_name)
		)`,
		`CREATE INDEX conn_refs_to ON conn_refs (org, to_kind, to_name)`,
		`CREATE TABLE conn_audit (
			id {id} PRIMARY KEY,
			org {id} NOT NULL,
			iccid {id} NOT NULL,
			actor TEXT NOT NULL,
			at BIGINT NOT NULL,
			from_state TEXT NOT NULL,
			to_state TEXT NOT NULL,
			reason TEXT NOT NULL
		)`,
		`CREATE INDEX conn_audit_org ON conn_audit (org, id)`,
		`CREATE INDEX conn_audit_sim ON conn_audit (org, iccid, id)`,
		`CREATE TABLE conn_schedule (
			id {id} PRIMARY KEY,
			org {id} NOT NULL,
			iccid {id} NOT NULL,
			to_state TEXT NOT NULL,
			at BIGINT NOT NULL,
			actor TEXT NOT NULL
		)`,
		`CREATE INDEX conn_schedule_at ON conn_schedule (at, id)`,
		`CREATE TABLE conn_jobs (
			id {id} PRIMARY KEY,
			org {id} NOT NULL,
			kind TEXT NOT NULL,
			status TEXT NOT NULL,
			total BIGINT NOT NULL,
			done BIGINT NOT NULL,
			failed BIGINT NOT NULL,
			errors TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			ended_at BIGINT
		)`,
		`CREATE TABLE conn_usage (
			org {id} NOT NULL,
			iccid {id} NOT NULL,
			hour BIGINT NOT NULL,
			device {id} NOT NULL,
			slice {id} NOT NULL,
			up_bytes BIGINT NOT NULL,
			down_bytes BIGINT NOT NULL,
			up_msgs BIGINT NOT NULL,
			down_msgs BIGINT NOT NULL,
			PRIMARY KEY (org, iccid, hour, device, slice)
		)`,
		`CREATE INDEX conn_usage_device ON conn_usage (org, device, hour)`,
		`CREATE INDEX conn_usage_slice ON conn_usage (org, slice, hour)`,
		`CREATE TABLE conn_cdrs (
			org {id} NOT NULL,
			id {id} NOT NULL,
			iccid {id} NOT NULL,
			start_at BIGINT NOT NULL,
			end_at BIGINT NOT NULL,
			up_bytes BIGINT NOT NULL,
			down_bytes BIGINT NOT NULL,
			PRIMARY KEY (org, id)
		)`,
		`CREATE TABLE conn_quota (
			org {id} NOT NULL,
			iccid {id} NOT NULL,
			cycle BIGINT NOT NULL,
			level INTEGER NOT NULL,
			PRIMARY KEY (org, iccid)
		)`,
		`CREATE TABLE conn_outbox (
			org {id} NOT NULL,
			kind {id} NOT NULL,
			name {id} NOT NULL,
			seq BIGINT NOT NULL,
			PRIMARY KEY (org, kind, name)
		)`,
	},
	// 2: what the mobile core last said about each object, so the
	// connectivity page can show in sync, pending or failed with the core's
	// own words.
	2: {
		`CREATE TABLE conn_core_state (
			org {id} NOT NULL,
			kind {id} NOT NULL,
			name {id} NOT NULL,
			state TEXT NOT NULL,
			detail TEXT NOT NULL,
			at BIGINT NOT NULL,
			PRIMARY KEY (org, kind, name)
		)`,
	},
}

// migrate brings the connectivity tables to the latest version, recorded
// in the shared schema_migrations table under "connectivity".
func migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	return sqldb.Migrate(ctx, db, d.Name == Postgres.Name, sqldb.Schema{Component: component, Steps: migrations})
}
