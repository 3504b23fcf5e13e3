// Package web owns the hub's web console: server-rendered html/template
// pages, htmx fragments, Server-Sent Events for live telemetry, the browser
// session (cookie, CSRF token, role checks) and the embedded static assets
// (our CSS and JavaScript plus pinned htmx and uPlot, see
// static/vendor/README.md). The console works without JavaScript for
// reading; htmx and uPlot only add live updates and charts.
//
// It reads the hub's modules through the small interfaces in web.go, which
// internal/app adapts; it never calls the REST API over HTTP. Every change
// made in the console is written to the audit log with the signed-in user
// or token and the object before and after (audit.go wraps the modules the
// console changes things through). It may import internal/registry,
// internal/users and internal/audit for their types (users.Service keeps
// console users and persists sessions); it must not import the api, store,
// tsdb, gateway, bus or app packages.
//
// Pages: sign-in (API token, or user name and password), fleet overview,
// devices, device detail (live chart, twin, methods, C2D, keys), dashboards
// (device-bound and PromQL tiles), templates (view, edit, import, export
// JSON), rules and alerts (editor with live validation and dry run, inbox
// with acknowledge, resolve and notes), connectivity (SIMs, device
// groups, slices, and the mobile core: its link, and per object in sync,
// pending or failed with the core's error) and the audit log (any role may
// read it). Every form that changes something needs the operator or admin
// role, checked on the server.
package web
