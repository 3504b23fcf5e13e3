// Package actions owns what alerts do: webhooks (signed HTTP POSTs of the
// alert event), device actions (direct method, desired-property patch,
// cloud-to-device message) and bus publications for integrators. Every
// delivery is stored in a persistent outbox (table actions_outbox) before
// it is attempted, so it survives restarts; it runs at least once, keeps one
// idempotency key (alert id, event, action) across attempts, is retried with
// exponential backoff, ends as a listable dead letter after the last
// attempt, and its outcome is recorded on the alert.
//
// It may import alerts (types); it must not import rules, api, gateway, bus,
// registry or tsdb: devices, the NATS connection and the rule definitions
// reach it through the Devices, BusPublisher and Source interfaces.
package actions
