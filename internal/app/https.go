package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/api"
)

// listenHTTPS binds the optional HTTPS listener (config https): the same
// handler as the HTTP port, over TLS with the hub's server certificate.
// Azure IoT SDKs' MQTT-over-WebSocket transports need it: they only speak
// wss:// to /$iothub/websocket. Client certificates are requested (not
// required) so X.509 devices can authenticate over WebSocket too.
func (h *Hub) listenHTTPS(handler http.Handler) error {
	if h.cfg.HTTPS == "" {
		return nil
	}
	ln, err := net.Listen("tcp", h.cfg.HTTPS)
	if err != nil {
		return fmt.Errorf("listen for HTTPS on %s: %w: %v", h.cfg.HTTPS, ErrStart, err)
	}
	tc := h.tls.Clone()
	tc.ClientAuth = tls.RequestClientCert
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	h.httpsLn = tls.NewListener(ln, tc)
	h.httpsSrv = api.NewHTTPServer(handler, h.connLimits(), h.log)
	return nil
}

// runHTTPS serves HTTPS until ctx ends.
func (h *Hub) runHTTPS(ctx context.Context, g *errgroup.Group) {
	if h.httpsSrv != nil {
		serveUntil(ctx, g, h.httpsSrv, h.httpsLn)
	}
}

// serveUntil serves srv on ln in g until ctx ends, then shuts it down,
// giving requests in progress 5 s to finish.
func serveUntil(ctx context.Context, g *errgroup.Group, srv *http.Server, ln net.Listener) {
	g.Go(func() error {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}

// HTTPSAddr is the bound HTTPS address, or "" when disabled.
func (h *Hub) HTTPSAddr() string {
	if h.httpsLn == nil {
		return ""
	}
	return h.httpsLn.Addr().String()
}

func (h *Hub) closeHTTPS() {
	if h.httpsLn != nil {
		_ = h.httpsLn.Close()
	}
}
