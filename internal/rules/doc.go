// Package rules owns alert rules: their definitions and store (tables
// prefixed rules_), the condition language (expr-lang/expr, compiled once,
// with message fields, device tags and properties, time of day, per-device
// windowed aggregates, absence and anomaly scores), and the Engine that
// evaluates telemetry batches from the bus against the rules in scope and
// raises and clears alerts through the alerts service. Window state is
// bounded per (rule, device, window), snapshotted to the database and
// rebuilt from history after a restart. DryRun replays stored history
// through a rule.
//
// Saving a rule checks its actions against the organization's walls: a bus
// action's subject must lie in the organization's subject space and a
// webhook must not name an internal address (actions.Spec.CheckTargets).
//
// It may import bus (the telemetry envelope and subject space), alerts,
// actions (types) and egress (the outbound policy);
// it must not import the gateway, registry, tsdb, api or app packages: the
// registry, twin and tsdb reach it only through the DeviceDirectory,
// AnomalyScorer and History interfaces.
package rules
