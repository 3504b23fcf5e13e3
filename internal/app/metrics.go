package app

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/api"
)

// listenMetrics binds the optional --metrics-listen address: /metrics
// without a token, for a Prometheus that cannot send one. The operator
// chooses where it listens (loopback, a management network); /metrics on
// the API port always needs an operator-organization token.
func (h *Hub) listenMetrics() error {
	if h.cfg.MetricsListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", h.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w: %v", h.cfg.MetricsListen, ErrStart, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.metrics, promhttp.HandlerOpts{}))
	h.metricsLn = ln
	h.metricsSrv = api.NewHTTPServer(mux, h.connLimits(), h.log) // the API's timeouts and connection caps
	return nil
}

// runMetrics serves --metrics-listen until ctx ends.
func (h *Hub) runMetrics(ctx context.Context, g *errgroup.Group) {
	if h.metricsSrv != nil {
		serveUntil(ctx, g, h.metricsSrv, h.metricsLn)
	}
}

// MetricsAddr is the bound --metrics-listen address, or "" when disabled.
func (h *Hub) MetricsAddr() string {
	if h.metricsLn == nil {
		return ""
	}
	return h.metricsLn.Addr().String()
}
