// Package tsdb owns Shopfloor's time-series store: float series identified by
// Prometheus label sets (always with an "org" label), kept as compressed
// chunks, plus string fields stored as change events.
//
// Write path: Append/AppendRefs write one WAL record per call (to the OS, not
// fsynced: a kill -9 loses nothing, a power cut may) and then add the samples
// to an in-memory head per series. A head is cut into a chunk after
// Options.ChunkSamples samples or Options.ChunkSpan. Chunks use Prometheus'
// chunkenc XOR encoding; decimal readings are scaled to integers first
// (losslessly), which takes typical sensor data from ~6.3 to ~1.4 bytes per
// sample. Flush (run by Run every FlushInterval and by Close) writes a WAL
// checkpoint, deletes the WAL before it and stores cut chunks through a
// ChunkStore in the registry database (SQLite or PostgreSQL, tables prefixed
// tsdb_). Chunk keys are deterministic, so replaying the WAL after a crash
// re-stores the same chunks idempotently: no loss, no duplicates.
//
// Duplicates: a (series, timestamp) keeps its first-written value; later
// writes are dropped on append when the first is still in memory and hidden
// by the query merge otherwise. Samples up to OutOfOrderWindow (default 7
// days) behind the newest sample of their series go to a separate
// out-of-order head with its own chunks; queries merge everything.
//
// Read path: Range/Latest/StringEvents for the REST API, and Queryable(org),
// a storage.Queryable scoped to one organization, for the PromQL engine.
// Retention is per organization (SetRetention, default 30 days) and applied
// by Run.
//
// It must not import prometheus/tsdb (only tsdb/chunkenc and tsdb/chunks),
// prometheus/web, or any Shopfloor package but the leaf internal/sqldb: the
// registry, bus and API
// depend on it, not the other way round.
package tsdb
