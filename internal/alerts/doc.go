// Package alerts owns alerts: their lifecycle (open → acknowledged →
// resolved), deduplication per (organization, rule, device), occurrence
// counts, notes, assignee, the history of every change, and the store that
// keeps them in the registry database (SQLite or PostgreSQL, tables prefixed
// alerts_). Every change is handed to a Publisher so other parts (the live
// console, actions, integrators on the bus) can follow alerts as they happen.
//
// Deduplication holds across processes: a unique partial index on
// (org, rule, device) over alerts that are not resolved makes the database
// the arbiter, so concurrent or repeated firings update one alert.
//
// It must not import the rules, actions, api, gateway, bus or tsdb packages:
// rules and actions depend on it, never the other way round.
package alerts
