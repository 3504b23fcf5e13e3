// Package storetest is the conformance suite every registry.Store passes,
// and the test databases: SQLite files in a temporary directory, and
// PostgreSQL schemas created per test in the database named by
// $SHOPFLOOR_TEST_POSTGRES (skipped with a message when unset).
//
// It is imported only by tests. It must not import modules other than
// internal/registry and internal/store/....
package storetest
