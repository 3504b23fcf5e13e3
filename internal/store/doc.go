// Package store implements registry.Store once, over database/sql, for the
// SQL both SQLite and PostgreSQL understand. The driver packages
// internal/store/sqlite and internal/store/postgres open the database and
// supply a Dialect: the identifier column type, how to serialise schema
// migrations between processes, and how to recognise constraint violations.
//
// Tables: schema_migrations (shared; rows keyed by component, ours is
// "registry"), orgs, tokens, sites, devices, device_tags, enrollment_groups,
// ca_certs. The tsdb_ prefix belongs to internal/tsdb and is never used here.
// Times are stored as BIGINT Unix microseconds, tags as JSON text (plus
// device_tags for filtering), so the SQL is the same on both databases.
//
// It must not import a database driver, nor any module other than
// internal/registry.
package store
