package web

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Password guessing is slowed per user name and client address: after
// maxLoginFailures wrong passwords within loginWindow, that pair is refused
// until the window has passed. Keying on the address too means nobody can
// lock a colleague out from another machine.
const (
	maxLoginFailures = 5
	loginWindow      = 15 * time.Minute
)

type loginThrottle struct {
	mu  sync.Mutex
	m   map[string]*loginFailures
	now func() time.Time
}

type loginFailures struct {
	n     int
	first time.Time
}

func newLoginThrottle(now func() time.Time) *loginThrottle {
	return &loginThrottle{m: map[string]*loginFailures{}, now: now}
}

func throttleKey(r *http.Request, name string) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return strings.ToLower(name) + "\x00" + host
}

// wait is how long key must wait before another try; 0 when it may try.
func (l *loginThrottle) wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.m[key]
	if !ok {
		return 0
	}
	left := f.first.Add(loginWindow).Sub(l.now())
	if left <= 0 {
		delete(l.m, key)
		return 0
	}
	if f.n >= maxLoginFailures {
		return left
	}
	return 0
}

func (l *loginThrottle) failed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.m) > 100_000 { // bound memory under a flood of names
		for k, f := range l.m {
			if now.Sub(f.first) > loginWindow {
				delete(l.m, k)
			}
		}
	}
	f, ok := l.m[key]
	if !ok || now.Sub(f.first) > loginWindow {
		f = &loginFailures{first: now}
		l.m[key] = f
	}
	f.n++
}

func (l *loginThrottle) succeeded(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}
