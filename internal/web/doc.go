// Package web owns the hub's web console: server-rendered html/template
// pages, htmx fragments, Server-Sent Events for live telemetry, the browser
// session (cookie, CSRF token, role checks) and the embedded static assets
// (our CSS and JavaScript plus pinned htmx and uPlot, see
// static/vendor/README.md). The console works without JavaScript for
// reading; htmx and uPlot only add live updates and charts.
//
// It reads the hub's modules through the small interfaces in web.go, which
// internal/app adapts; it never calls the REST API over HTTP. It may import
// internal/registry for its types; it must not import the api, store, tsdb,
// gateway, bus or app packages.
package web
