// Package api owns the hub's HTTP surface: the REST API under /api/v1, its
// OpenAPI 3.1 document at /api/openapi.json (built from the same route table
// that serves the requests, so a route cannot exist without its entry), token
// authentication, roles and tenancy, the mapping of the domains' sentinel
// errors to HTTP status codes (errors.go, in one place), request logging,
// request metrics and the HTTP server's timeouts and connection limits. It
// also mounts handlers other packages build: the Prometheus-compatible query
// API at /prometheus/, MQTT over WebSocket at /mqtt and the process metrics
// at /metrics.
//
// It talks to the domain services only through the small interfaces
// declared next to their routes, which take and return the domain packages'
// own types (registry, connectivity, quota, template, jobs, rules, actions,
// alerts, export, anomaly, twin, command, audit),
// as Prometheus' web/api/v1 does with its storage types. It must not import
// the bus, store, tsdb, gateway, ingest or app packages, and must
// not link the store, tsdb, gateway or app at all (deps_test.go). It records
// every change a route makes in the audit log (audit.go).
package api
