// Package twin owns device twins and the cloud-to-device message queue in
// the registry database (tables prefixed twin_, SQLite and PostgreSQL through
// one SQL implementation with a small dialect):
//
//   - a twin is tags, desired and reported properties, each a JSON object,
//     with the versions IoT Hub devices expect: desired and reported carry
//     their own $version, and the twin's version (its ETag) rises on every
//     change. Patches follow JSON merge-patch (RFC 7386): null removes a key.
//     Sizes are limited as IoT Hub documents them (32 KB desired, 32 KB
//     reported, 8 KB tags).
//   - a cloud-to-device queue per device, at most MaxQueue pending messages,
//     each with a time to live. A message ends delivered (the device
//     acknowledged it), expired (its TTL passed first) or rejected (it was
//     sent MaxDeliveries times without an acknowledgement). A message that
//     would overflow the queue is refused with ErrQueueFull and not stored.
//
// The package does not know how messages reach devices: the gateway and the
// command router call it. It may import only the standard library; it must
// not import bus, gateway, api or app.
package twin
