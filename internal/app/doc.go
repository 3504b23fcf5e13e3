// Package app wires the modules into the binary's roles: the hub (serve) and
// the demo. It owns start-up order, shutdown and the first-start bootstrap.
//
// Only cmd/shopfloor and internal/testutil import it.
package app
