package web

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Password guessing is slowed twice over, within loginWindow:
//
//   - per user name and client address: after maxLoginFailures wrong
//     passwords that pair is refused until the window has passed. Keying on
//     the address too means nobody can lock a colleague out from another
//     machine;
//   - per client address across all names: after maxAddressFailures failed
//     sign-ins (wrong passwords for any name, unknown names, wrong API
//     tokens) the address is refused, so one password cannot be tried
//     against every user name.
//
// A try is counted as failed when it starts (reserve) and refunded if it
// succeeds, so concurrent guesses cannot slip past the limit while their
// passwords are being checked.
const (
	maxLoginFailures   = 5
	maxAddressFailures = 20
	loginWindow        = 15 * time.Minute
	maxThrottleEntries = 100_000 // bounds memory under a flood of names
)

type loginThrottle struct {
	mu   sync.Mutex
	pair map[string]*loginFailures // lower-case name \x00 address
	addr map[string]*loginFailures // address
	now  func() time.Time
}

type loginFailures struct {
	n     int
	first time.Time
}

func newLoginThrottle(now func() time.Time) *loginThrottle {
	return &loginThrottle{pair: map[string]*loginFailures{}, addr: map[string]*loginFailures{}, now: now}
}

// clientAddress is the host part of the request's remote address.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return host
}

// loginAttempt is a reserved sign-in try: it already counts as a failure.
type loginAttempt struct {
	l          *loginThrottle
	pairKey    string
	addrKey    string
	pair, addr *loginFailures
}

// Why a try was refused.
const (
	throttledNone = iota
	throttledUser
	throttledAddress
)

// reserve counts a sign-in try by name (empty for an API token) from addr
// before its secret is checked. When a limit is reached it reserves nothing
// and returns which limit and how long to wait.
func (l *loginThrottle) reserve(name, addr string) (*loginAttempt, int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	a := &loginAttempt{l: l, addrKey: addr}
	af := current(l.addr, addr, now)
	if af != nil && af.n >= maxAddressFailures {
		return nil, throttledAddress, af.first.Add(loginWindow).Sub(now)
	}
	var pf *loginFailures
	if name != "" {
		a.pairKey = strings.ToLower(name) + "\x00" + addr
		pf = current(l.pair, a.pairKey, now)
		if pf != nil && pf.n >= maxLoginFailures {
			return nil, throttledUser, pf.first.Add(loginWindow).Sub(now)
		}
	}
	a.addr = count(l.addr, addr, af, now)
	if name != "" {
		a.pair = count(l.pair, a.pairKey, pf, now)
	}
	return a, throttledNone, 0
}

// current is key's entry in m if its window has not passed.
func current(m map[string]*loginFailures, key string, now time.Time) *loginFailures {
	f, ok := m[key]
	if !ok {
		return nil
	}
	if now.Sub(f.first) >= loginWindow {
		delete(m, key)
		return nil
	}
	return f
}

// count adds one failure to f (a new entry when nil) and returns it.
func count(m map[string]*loginFailures, key string, f *loginFailures, now time.Time) *loginFailures {
	if f == nil {
		if len(m) >= maxThrottleEntries {
			for k, old := range m {
				if now.Sub(old.first) >= loginWindow {
					delete(m, k)
				}
			}
		}
		f = &loginFailures{first: now}
		m[key] = f
	}
	f.n++
	return f
}

// succeeded clears the user's failures from this address and refunds the
// try: it was no failure.
func (a *loginAttempt) succeeded() {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if a.pairKey != "" && a.l.pair[a.pairKey] == a.pair {
		delete(a.l.pair, a.pairKey)
	}
	a.refund(a.l.addr, a.addrKey, a.addr)
}

// aborted refunds a try whose secret could not be checked (the database
// failed): it says nothing about the guesser.
func (a *loginAttempt) aborted() {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.refund(a.l.pair, a.pairKey, a.pair)
	a.refund(a.l.addr, a.addrKey, a.addr)
}

func (a *loginAttempt) refund(m map[string]*loginFailures, key string, f *loginFailures) {
	if f == nil || m[key] != f {
		return // its window passed meanwhile: nothing left to refund
	}
	if f.n--; f.n <= 0 {
		delete(m, key)
	}
}
