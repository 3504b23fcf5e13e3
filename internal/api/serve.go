package api

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ConnLimits bound the HTTP connections one server holds, so that slow or
// idle clients cannot take every file descriptor of the process (the MQTT
// listeners need them too). Connections handed over to MQTT over WebSocket
// leave the count when they are upgraded: the gateway owns them then.
type ConnLimits struct {
	Total   int // open HTTP connections in all; 0: 1,000
	PerAddr int // open HTTP connections from one address; 0: 100
}

// The server's timeouts. A request has 10 s to send its headers and two
// minutes for its body (a CSV import of many devices); an answer has two
// minutes to be written (streams such as the console's live chart set
// their own deadline per write); an idle keep-alive connection is closed
// after two minutes.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 2 * time.Minute
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
)

// NewHTTPServer returns an http.Server for handler with the hub's timeouts
// and connection limits. A connection over a limit is closed at once,
// before anything is read from it.
func NewHTTPServer(handler http.Handler, l ConnLimits, logger *slog.Logger) *http.Server {
	if l.Total <= 0 {
		l.Total = 1000
	}
	if l.PerAddr <= 0 {
		l.PerAddr = 100
	}
	c := &connCounter{limits: l, log: logger, byAddr: map[string]int{}, tracked: map[net.Conn]string{}}
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ConnState:         c.state,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

type connCounter struct {
	limits ConnLimits
	log    *slog.Logger

	mu       sync.Mutex
	total    int
	byAddr   map[string]int
	tracked  map[net.Conn]string // counted connections and their address
	lastWarn time.Time
}

func (c *connCounter) state(conn net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		addr := hostOf(conn.RemoteAddr())
		c.mu.Lock()
		if c.total >= c.limits.Total || c.byAddr[addr] >= c.limits.PerAddr {
			warn := time.Since(c.lastWarn) > time.Minute
			if warn {
				c.lastWarn = time.Now()
			}
			total, fromAddr := c.total, c.byAddr[addr]
			c.mu.Unlock()
			if warn {
				c.log.Warn("HTTP connection refused: too many open (logged once a minute)", "remote", addr,
					"open", total, "open_from_address", fromAddr, "limit", c.limits.Total, "limit_per_address", c.limits.PerAddr)
			}
			conn.Close()
			return
		}
		c.total++
		c.byAddr[addr]++
		c.tracked[conn] = addr
		c.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		c.mu.Lock()
		if addr, ok := c.tracked[conn]; ok {
			delete(c.tracked, conn)
			c.total--
			if c.byAddr[addr]--; c.byAddr[addr] <= 0 {
				delete(c.byAddr, addr)
			}
		}
		c.mu.Unlock()
	}
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
