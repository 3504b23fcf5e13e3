// Package connectivity owns the plant's private 4G/5G network as Shopfloor
// manages it: per organization, the site network settings (PLMN, IMSI range,
// small cells, edge node), SIM cards and their lifecycle (INVENTORY →
// TEST_READY → ACTIVATED ⇄ SUSPENDED → TERMINATED, scheduled and bulk
// changes, an audit of every transition), device groups, traffic classes,
// slices and applications, usage metering with quotas, radio-side usage
// records (CDRs), and the enforcement the MQTT gateway calls on CONNECT and
// on every message (CheckConnect; Account for usage and bitrates; Priority,
// the traffic class's ARP, by which a saturated gateway orders work). A
// SIM serves a device only where its IMSI fits the PLMN and IMSI range of
// the site of the device's group. SIM batches import from JSON or CSV
// (ParseSIMCSV).
//
// Its tables carry the prefix conn_ and live in the registry database;
// the same SQL runs on SQLite and PostgreSQL, the Dialect holds what
// differs. Changes that matter to the mobile core are pushed through the
// Core interface (see internal/connectivity/sdcore for the SD-Core
// adapter) from a persistent outbox, with retries for passing failures and
// none for what the core refused. A Core that is also a CoreReader is read
// back at start and every ReconcileEvery, and only what differs (drift)
// is queued; CoreStatus tells the link's state and each object's: in
// sync, pending, or failed with the core's words. Names are checked on
// input against the core's rule (CoreNameRule).
//
// It learns about sites and devices only through the Directory interface
// and raises alerts only through the Alerter interface. It must not import
// any other Shopfloor package (not the registry, store, api, gateway, bus or
// app), so the gateway and the API can both depend on it.
package connectivity
