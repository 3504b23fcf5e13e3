// Package testutil starts real hubs in-process on free ports and gives tests
// the clients they need: an authenticated REST client and MQTT devices.
//
// Only tests import it.
package testutil
