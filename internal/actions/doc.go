// Package actions owns what alerts do: webhooks (signed HTTP POSTs of the
// alert event), device actions (direct method, desired-property patch,
// cloud-to-device message) and bus publications for integrators. Every
// delivery is stored in a persistent outbox (table actions_outbox) before
// it is attempted, so it survives restarts; it runs at least once, keeps one
// idempotency key (alert id, event, action) across attempts, is retried with
// exponential backoff, ends as a listable dead letter after the last
// attempt, and its outcome is recorded on the alert.
//
// Actions stay inside their tenant's walls: a bus action publishes only in
// its organization's subject space (SubjectPolicy, checked when the rule is
// saved and again at every delivery) and a webhook connects only to
// addresses the hub's egress policy allows; what the tenant sees of a
// failure names no internal address.
//
// It may import alerts (types) and egress (the outbound policy); it must not
// import rules, api, gateway, bus, registry or tsdb: devices, the NATS
// connection, the subject space and the rule definitions reach it through
// the Devices, BusPublisher, SubjectPolicy and Source interfaces.
package actions
