// Package e2e tests the hub as users meet it: a real hub on free ports, real
// MQTT clients, the REST API, the Prometheus API, restarts and kill -9.
package e2e
