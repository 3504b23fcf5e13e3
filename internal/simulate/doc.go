// Package simulate owns the device fleet simulator: physical models of the
// machines on a factory floor (CNC machines, compressors, robots, AGVs) with
// shift patterns and injected faults, a small REST client that provisions the
// simulated sites and devices on a hub, and the fleet that connects every
// device over MQTT (Azure IoT Hub device dialect) and publishes telemetry.
//
// The models are deterministic for a seed and a sequence of timestamps, so
// tests, demos and benchmarks can reproduce what they saw.
//
// It talks to the hub only over its public interfaces (REST and MQTT) and
// must not import the api, gateway (other than gateway/azure for SAS tokens),
// registry, bus, tsdb or app packages.
package simulate
