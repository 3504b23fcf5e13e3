// Package pki owns the hub's X.509 material: on first start it creates a
// private certificate authority and a server certificate for the MQTT/TLS
// and HTTPS listeners (so a hub works with TLS without any configuration),
// reuses them on later starts, and loads operator-supplied certificates
// instead when given. It also issues device client certificates (CA-signed
// or self-signed) for tests, the simulator and the CLI, and computes the
// SHA-256 thumbprints that identify self-signed devices.
//
// It uses only the standard library and must not import any other
// Shopfloor package.
package pki
