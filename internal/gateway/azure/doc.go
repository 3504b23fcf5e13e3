// Package azure implements the device side of the Azure IoT Hub MQTT
// dialect that Shopfloor speaks, so that devices built with the Azure IoT
// device SDKs (or any MQTT client following the same conventions) connect
// unchanged:
//
//   - topic names: devices/{id}/messages/events/{property bag} for
//     telemetry, devices/{id}/messages/devicebound/... for cloud-to-device
//     messages and the $iothub/twin/... and $iothub/methods/... namespaces
//     with their $rid and $version parameters;
//   - URL-encoded property bags;
//   - the MQTT user name {host}/{deviceId}/?api-version=...;
//   - shared access signature (SAS) tokens and the enrollment-group key
//     derivation used by Azure DPS;
//   - device connection strings.
//
// It is pure protocol code: no I/O, no broker, no registry. It must not
// import any other Shopfloor package, so that the simulator and the CLI can
// use it without linking the hub.
package azure
