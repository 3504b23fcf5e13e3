// Package template owns device templates in the spirit of DTDL and IoT Plug
// and Play: telemetry (name, schema, unit, min, max), properties (read-only
// or writable) and commands (request and response schemas), per
// organization, stored in the registry database (tables prefixed tmpl_,
// SQLite and PostgreSQL through one SQL implementation with a small
// dialect), imported and exported as JSON.
//
// It validates telemetry, reported properties and command payloads against
// a template and counts violations per device (tmpl_violations); it never
// drops the data it checks. Writable properties are acknowledged the Plug
// and Play way: {"value":…,"ac":200,"av":version} in reported (Ack).
//
// Its Enforcer applies templates where data flows: the hub feeds it
// telemetry from a durable bus consumer, and the twin and method paths ask
// it about desired and reported properties and command payloads.
//
// It may import only the standard library and internal/sqldb; it must not
// import bus, gateway, registry, twin, api or app.
package template
