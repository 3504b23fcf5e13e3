// Package promapi owns a small Prometheus-HTTP-API-compatible handler:
// /api/v1/query, query_range, series, labels, label/<name>/values and
// status/buildinfo, with GET and POST form requests and Prometheus' JSON
// response and error shapes, so Grafana and promtool can read Shopfloor's
// time series. Queries run on the promql engine (bounded samples, timeout,
// 5m lookback) against a storage.Queryable chosen per request by the
// caller's organization, so a request never sees another tenant's series.
//
// It must not import prometheus/web/api/v1 (it links cloud SDKs),
// prometheus/tsdb, or Shopfloor packages: the store comes in as a function
// returning storage.Queryable and authentication as orgOf.
package promapi
