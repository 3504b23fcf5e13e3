// Package sdcore is the southbound adapter from connectivity.Core to the
// SD-Core (Aether / omec-project) web console's configuration REST API, as
// webconsole v2.1 and the 3.0 line (Helm charts rel-3.0.x) serve it:
//
//	POST /login                                  bearer token (JWT, an hour)
//	GET  /api/subscriber, GET /api/subscriber/imsi-{imsi}
//	POST (create) / PUT (update) / DELETE /api/subscriber/imsi-{imsi}
//	GET  /config/v1/device-group[/{name}], POST / DELETE …/{name}
//	GET  /config/v1/network-slice[/{name}], POST / DELETE …/{name}
//
// The wire types (models.go) and the checks the console applies
// (validate.go) follow omec-project/webconsole's configmodels and
// configapi: every application filtering rule carries a traffic class;
// a device group's IP domain goes as "ip-domains" (v2.1.1 on) and as
// "ip-domain-expanded" (earlier cores, which ignore the other field); the
// slice's bitrate goes on each permitting rule as app-mbr-uplink/downlink
// in bit/s, since the core no longer reads a slice-wide qos; names must
// match NamePattern and TACs be 1 to 16,777,215.
//
// A subscriber is created with POST and updated with PUT (whose body
// carries the keys both flat, for the 3.0 handlers, and as
// AuthenticationSubscription, for older ones): the client
// learns which IMSIs the core holds from Snapshot (and from its own
// writes), and answers a 409 or 404 with the other verb once. With a user
// and password it logs in at POST /login, sends the token, and logs in
// again when the core answers 401. A 4xx about an object wraps
// connectivity.ErrCoreRefused (no retry until the object changes); a
// refused login wraps connectivity.ErrCoreLogin; anything else is retried
// by connectivity's pusher. Snapshot reads the whole core back for
// connectivity's reconcile.
//
// Package sdcoretest holds a fake web console that applies the same
// checks. This package imports only internal/connectivity.
package sdcore
