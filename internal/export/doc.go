// Package export owns continuous data export: destinations an organization
// defines (a batching, signed webhook; a NATS subject or JetStream stream;
// Prometheus remote write; NDJSON files with rotation), their filters
// (site, template, tags, device, fields) and enrichment (site, template,
// device tags), and the Manager that runs each destination as its own
// durable bus consumer. Delivery is at least once: a batch is acknowledged
// on the bus only after the destination accepted it, so a restart resumes
// where it stopped, and a slow or failing destination only lags its own
// consumer — ingestion never waits for it; the stream's retention bounds
// the lag. Destinations are stored in the registry database (table
// export_destinations).
//
// A destination stays inside its organization's walls: a NATS destination
// publishes only in the organization's subject space (bus.Subjects), and
// webhook and remote-write destinations connect only to addresses the
// hub's egress policy allows, checked when the destination is created and
// on every connection; the last error a tenant sees names no internal
// address.
//
// It may import bus (the telemetry envelope and subject names) and egress
// (the outbound policy); it must not import the
// gateway, registry, tsdb, rules, alerts, api or app packages: the bus
// consumers and the device directory reach it through the Consumer and
// Directory interfaces.
package export
