// Package api owns the hub's HTTP surface: the REST API under /api/v1, its
// OpenAPI 3.1 document at /api/openapi.json (built from the same route table
// that serves the requests, so a route cannot exist without its entry), token
// authentication, roles and tenancy, the mapping of registry errors to HTTP
// status codes, request logging and request metrics. It also mounts handlers
// other packages build: the Prometheus-compatible query API at /prometheus/,
// MQTT over WebSocket at /mqtt and the process metrics at /metrics.
//
// It talks to the registry, the time-series store and the MQTT gateway only
// through the small interfaces declared in api.go. Those interfaces take and return the
// domain packages' own types, and errors.go maps their sentinel errors to
// HTTP status in one place. It may import internal/registry,
// internal/connectivity, internal/quota, internal/template and internal/jobs
// for their types; it must not import the store, tsdb,
// gateway, bus or app packages.
package api
