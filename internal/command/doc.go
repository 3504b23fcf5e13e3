// Package command carries what the cloud sends to a device — direct
// method calls, desired-property notifications and "new cloud-to-device
// message" nudges — over the bus on per-device NATS subjects
// (<prefix>.dev.<org>.<device>.<kind>, device ids escaped), so that they
// reach the device on whichever hub process holds its connection:
//
//   - the process holding a device's MQTT connection Attaches it, which
//     subscribes its subject and hands what arrives to the local gateway
//     (the Devices interface);
//   - any process Invokes a method with NATS request/reply (no responders
//     means the device is offline) and publishes notifications.
//
// "A device's credentials changed" (a key regenerated, the device disabled
// or deleted) goes to every process on <prefix>.devices.changed: each drops
// its cached record, and the one holding the connection re-checks it.
//
// It imports only nats.go; it must not import gateway, twin, api or app.
package command
