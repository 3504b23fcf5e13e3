// Package hubtest holds the end-to-end tests of the simulator and the load
// generator against a real in-process hub (internal/testutil). It has no
// code of its own; it is separate so that the simulate and bench unit tests
// do not depend on the whole hub building.
package hubtest
