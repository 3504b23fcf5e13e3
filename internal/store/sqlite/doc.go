// Package sqlite opens the registry Store on a SQLite database file with
// modernc.org/sqlite (pure Go, so ARM edge builds need no C toolchain).
//
// Every connection runs in WAL mode with synchronous=NORMAL (FULL with
// Options.Fsync), foreign keys on and a busy timeout, and transactions begin IMMEDIATE: writers queue on the
// busy timeout instead of failing when a read transaction tries to upgrade.
// Readers never wait for writers. Modules that share the database through
// DB() get the same settings.
//
// It must not import any module other than internal/registry and
// internal/store.
package sqlite
