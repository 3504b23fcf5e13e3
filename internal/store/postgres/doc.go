// Package postgres opens the registry Store on PostgreSQL through
// github.com/jackc/pgx/v5/stdlib (driver "pgx"), for hubs that run as a
// cluster. Identifier columns use COLLATE "C" so paging order is byte order,
// as on SQLite. Parameters in the DSN that PostgreSQL knows (search_path,
// application_name, …) are sent as run-time settings.
//
// It must not import any module other than internal/registry and
// internal/store.
package postgres
