// Package quota owns the cardinality limits that protect every tenant of a
// hub from one device or organization that invents field names without end:
// fields per device, series per organization and the length of a field
// name. It keeps, in memory, which field names each device has used (as
// 32-bit hashes, about 4 bytes per field) and how many series each
// organization holds, seeded at start from the time-series store, and
// answers the gateway's question "may this message be stored?" before the
// message is acknowledged, so nothing of a refused message is stored.
//
// It must not import the gateway, the bus, the tsdb, the api or the app
// packages: the wiring seeds it and hands it to the gateway.
package quota
