// Package ingest owns the tsdb writer: a durable bus consumer that turns
// telemetry into time-series samples and acknowledges a batch only after the
// tsdb has it in its WAL. A restart resumes at the first unacknowledged
// batch; the tsdb drops the redelivered duplicates by timestamp.
//
// It must not import the gateway, api or registry packages.
package ingest
