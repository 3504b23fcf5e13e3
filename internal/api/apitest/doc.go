// Package apitest holds in-memory implementations of the API's collaborators
// (the registry contract, the telemetry reader and device presence) for
// tests of the API, the command line and anything else that drives the REST
// API without a database.
//
// It must not be imported by non-test code of the binary; it imports only
// internal/registry and internal/api.
package apitest
