// Package gateway owns the MQTT front door of the hub and the edge: an
// embedded mochi-mqtt broker (MQTT 3.1.1 and 5 over TCP, TLS and WebSocket)
// extended only through its hooks with
//
//   - device authentication: SAS tokens (primary or secondary key), X.509
//     client certificates (self-signed by thumbprint, or issued by a CA the
//     organization registered) and zero-touch registration through
//     enrollment groups and auto-registering CAs;
//   - per-device ACLs for the Azure IoT Hub topic layout;
//   - telemetry ingest: JSON payloads are flattened into bus.Telemetry and
//     handed to a Publisher; a QoS 1 PUBACK is sent only after the
//     Publisher returned, that is after the message is durable;
//   - overload ordering: at most Config.MaxInflight messages are stored at
//     once, and the rest wait by their device's priority (Config.Priority,
//     the traffic class's ARP), so high-priority devices keep their latency
//     when the hub is saturated.
//
// The gateway reads devices through the Devices interface (satisfied by
// *registry.Service) and caches what it read only briefly; the per-message
// path does no registry query.
//
// It may import bus (for the envelope), registry (for types), gateway/azure
// and pki. It must not import tsdb, rules, api, store or app: the gateway
// runs on edges without them.
package gateway
