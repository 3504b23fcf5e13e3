package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener is a mochi listener over a socket bound in New (so the
// address is known before Run). Unlike mochi's own, it bounds the time a
// connection may take to finish the TLS handshake and send CONNECT, and
// does not log every refused device at warning level.
type tcpListener struct {
	id             string
	ln             net.Listener
	tls            *tls.Config
	connectTimeout time.Duration
	writeTimeout   time.Duration
	log            *slog.Logger
	closed         atomic.Bool

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, not yet handed to mochi
}

func listenTCP(id, addr string, tc *tls.Config, connectTimeout, writeTimeout time.Duration, log *slog.Logger) (*tcpListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for MQTT on %s: %w (is another broker using the port?)", addr, err)
	}
	return &tcpListener{id: id, ln: ln, tls: tc, connectTimeout: connectTimeout, writeTimeout: writeTimeout, log: log, pending: map[net.Conn]struct{}{}}, nil
}

func (l *tcpListener) Init(*slog.Logger) error { return nil }
func (l *tcpListener) ID() string              { return l.id }
func (l *tcpListener) Address() string         { return l.ln.Addr().String() }
func (l *tcpListener) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, don't spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accepting MQTT connections failed", "listener", l.id, "error", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.handle(conn, establish)
	}
}

func (l *tcpListener) handle(conn net.Conn, establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		conn.Close()
		return
	}
	l.pending[conn] = struct{}{}
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		delete(l.pending, conn)
		l.mu.Unlock()
	}
	// mochi sets no deadline until CONNECT was read; a silent client would
	// hold the connection forever.
	_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
	if l.tls != nil {
		tc := tls.Server(conn, l.tls)
		ctx, cancel := context.WithTimeout(context.Background(), l.connectTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			done()
			l.log.Debug("TLS handshake failed", "remote", conn.RemoteAddr().String(), "error", err)
			conn.Close()
			return
		}
		conn = tc
	}
	done()
	if err := establish(l.id, &deadlineConn{Conn: conn, timeout: l.writeTimeout}); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("MQTT connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
	}
}

func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	if l.closed.Swap(true) {
		return
	}
	l.ln.Close()
	l.mu.Lock()
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	closeClients(l.id)
}

// wsListener serves MQTT over WebSocket through an http.Handler mounted on
// the hub's HTTP server; it has no socket of its own.
type wsListener struct {
	id             string
	upgrader       websocket.Upgrader
	readLimit      int64
	connectTimeout time.Duration
	writeTimeout   time.Duration
	log            *slog.Logger
	establish      atomic.Pointer[listeners.EstablishFn]
	serving        chan struct{} // closed once the broker serves this listener
	closed         atomic.Bool
}

func newWSListener(id string, maxPacket int, connectTimeout, writeTimeout time.Duration, log *slog.Logger) *wsListener {
	return &wsListener{
		writeTimeout: writeTimeout,
		id:           id,
		upgrader: websocket.Upgrader{
			Subprotocols:    []string{"mqtt"},
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			// Devices authenticate with MQTT credentials, not cookies, so
			// a foreign origin gains nothing.
			CheckOrigin: func(*http.Request) bool { return true },
		},
		readLimit:      int64(maxPacket) + 64,
		serving:        make(chan struct{}),
		connectTimeout: connectTimeout,
		log:            log,
	}
}

func (l *wsListener) Init(*slog.Logger) error { return nil }
func (l *wsListener) ID() string              { return l.id }
func (l *wsListener) Address() string         { return "http handler" }
func (l *wsListener) Protocol() string        { return "ws" }

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish.Store(&establish)
	close(l.serving)
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.closed.Swap(true) {
		return
	}
	closeClients(l.id)
}

func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The HTTP server may be up before the broker: wait for it briefly
	// rather than refusing a device that connects during start-up.
	select {
	case <-l.serving:
	case <-r.Context().Done():
		return
	case <-time.After(l.connectTimeout):
	}
	est := l.establish.Load()
	if est == nil || l.closed.Load() {
		http.Error(w, "the MQTT gateway is not running", http.StatusServiceUnavailable)
		return
	}
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade answered the client
	}
	c.SetReadLimit(l.readLimit)
	conn := &wsConn{Conn: c.UnderlyingConn(), ws: c, writeTimeout: l.writeTimeout}
	if r.TLS != nil {
		conn.certs = r.TLS.PeerCertificates
	}
	_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
	if err := (*est)(l.id, conn); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("MQTT over WebSocket connection ended", "remote", r.RemoteAddr, "error", err)
	}
	c.Close()
}

// deadlineConn bounds every write to a device. mochi sets a write deadline
// only when the device's keep-alive is above zero, so a device that stops
// reading (keep-alive 0, full receive window) held the client's write lock
// forever, and every later write to it (twin patches, method calls) waited
// behind it. A write that cannot finish in time closes the connection: the
// device is stuck, and its messages are better kept for when it reconnects.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Write(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.Conn.Close()
	}
	return n, err
}

// SetDeadline keeps the write bound: mochi calls it with the keep-alive
// for reading, and a zero write deadline would undo Write's.
func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// wsConn presents a WebSocket as the byte stream mochi reads MQTT from;
// MQTT packets may span or share binary messages.
type wsConn struct {
	net.Conn
	ws           *websocket.Conn
	r            io.Reader
	certs        []*x509.Certificate
	writeTimeout time.Duration
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("MQTT over WebSocket needs binary messages")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write sends one binary message; mochi serialises writes per client.
// Each write has a deadline; see deadlineConn.
func (c *wsConn) Write(p []byte) (int, error) {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.ws.Close()
		}
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }
