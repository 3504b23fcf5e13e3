// Package sdcoretest is a fake SD-Core web console for tests: an
// http.Handler that holds subscribers, device groups and slices in memory
// and answers as omec-project/webconsole's configapi does (v2.1 and 3.0
// lines): the same routes, the same wire types (package sdcore's), the
// same validation (sdcore.Validate*: name pattern, TACs, a traffic class on
// every rule, the subscriber's keys), create versus update for
// subscribers (POST on an existing one is 409, PUT on a missing one 404),
// 404 for a missing group or slice, and, when a user is set, POST /login
// handing out bearer tokens that expire. It counts requests and keeps
// every refusal, so a test can assert that nothing was refused and that
// the client stops sending once the core is in sync.
//
// It imports only package sdcore.
package sdcoretest
