// Package command carries what the cloud sends to a device — direct
// method calls, desired-property notifications, "new cloud-to-device
// message" nudges and "credentials changed, re-check the connection" — over the bus on per-device NATS subjects
// (<prefix>.dev.<org>.<device>.<kind>, device ids escaped), so that they
// reach the device on whichever hub process holds its connection:
//
//   - the process holding a device's MQTT connection Attaches it, which
//     subscribes its subject and hands what arrives to the local gateway
//     (the Devices interface);
//   - any process Invokes a method with NATS request/reply (no responders
//     means the device is offline) and publishes notifications.
//
// It imports only nats.go; it must not import gateway, twin, api or app.
package command
