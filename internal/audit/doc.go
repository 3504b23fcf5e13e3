// Package audit owns the hub's audit log: one entry for every change made
// through the REST API, the command line (which uses the API) or the web
// console, for every kind of object. An entry says who made the change
// (an API token or a console user, and from which organization), through
// what (api, cli or console), what changed (object kind, id and action),
// when, and the object's values before and after, with every secret left
// out (see Redact).
//
// It owns the audit_log table in the registry database (SQLite or
// PostgreSQL), created by a versioned migration recorded in the shared
// schema_migrations table under "audit"; the migration also copies the SIM
// state changes the connectivity package recorded before this log existed.
//
// Callers put the actor in the request context with WithActor; the API
// and the console record entries with Service.Record. It must not import
// any other Shopfloor package except internal/sqldb.
package audit
