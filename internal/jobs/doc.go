// Package jobs owns bulk operations over a device query: a desired-property
// patch or a direct-method invocation sent to every device a query (site,
// template, tags) selects, at a limited rate (devices per second), with live
// progress (counts by state), a result per device and cancellation. Jobs and
// per-device results are persisted in the registry database (tables
// prefixed jobs_, SQLite and PostgreSQL through one SQL implementation), so
// a hub restart resumes running jobs from the devices not yet done.
//
// It does not know how patches and methods reach devices: the hub gives it
// an Executor. It may import only the standard library and internal/sqldb; it must not import
// twin, command, bus, gateway, api or app.
package jobs
