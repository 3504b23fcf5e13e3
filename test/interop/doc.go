// Package interop tests the hub with real third-party device clients:
// paho (Go) for the twin, method and cloud-to-device protocol, and
// Microsoft's Azure IoT device SDK for Node.js (azure-iot-device,
// azure-iot-device-mqtt; package.json here, installed with `npm ci`), run
// as node scripts by interop_test.go. It holds tests only and must not be
// imported.
package interop
