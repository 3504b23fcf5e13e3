// Package bench owns the load generator behind `shopfloor bench`: many MQTT
// connections publishing telemetry as fast as possible (or at a set rate)
// to a Shopfloor hub or to a plain MQTT broker, measuring acknowledged
// throughput, acknowledgement latency and the latency until the data can be
// read back (from the hub's REST API, or from a subscriber on a broker).
// Its idle mode (RunIdle) instead provisions and connects many devices that
// only keep their connection alive, and reads the hub's memory from its
// /metrics before, during and after.
//
// Its MQTT client is a deliberately small MQTT 3.1.1 publisher/subscriber:
// the generator shares the machine with the system under test, so it must
// spend as little CPU per message as possible.
//
// It talks to the hub only over REST and MQTT and must not import the api,
// gateway (other than gateway/azure through simulate), registry, bus, tsdb
// or app packages.
package bench
