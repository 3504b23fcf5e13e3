// Package registry owns the identity of everything that connects to a hub:
// organizations (tenants), API tokens, sites, devices and their credentials,
// enrollment groups and CA certificates for zero-touch provisioning.
//
// Service is the only entry point for other modules. It validates input,
// generates ids, keys and token secrets (only SHA-256 hashes of secrets are
// stored), derives enrollment-group keys as Azure DPS does, and keeps tenants
// apart: every org-scoped method reports another organization's ids as
// ErrNotFound. Role checks belong to internal/api, not here.
//
// Persistence sits behind the Store interface (internal/store/sqlite,
// internal/store/postgres). The gateway calls LookupDevice on every MQTT
// CONNECT, so it is a single indexed query.
//
// It must not import internal/store/..., database drivers, the gateway, bus,
// api or any other module: they depend on it, not the other way round.
package registry
