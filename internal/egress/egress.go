package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrNotAllowed is the refusal of a target whose address the policy does
// not allow. Its text is what a tenant sees.
var ErrNotAllowed = errors.New("target address not allowed by the hub's egress policy")

// MaxRedirects bounds the redirects a Client follows.
const MaxRedirects = 5

var (
	errRedirects      = errors.New("stopped after 5 redirects")
	errRedirectScheme = errors.New("redirected to an address that is not http:// or https://")
)

// Policy decides which addresses the hub may connect to on a tenant's
// behalf. A nil *Policy is the default: every public address, no internal
// one.
type Policy struct {
	allow []netip.Prefix
	log   *slog.Logger
}

// New returns the policy that also allows the operator's ranges in allow
// (an IPv4-mapped range counts as its IPv4 range). Refused connections are
// logged to logger (nil discards) with the address, for the operator.
func New(allow []netip.Prefix, logger *slog.Logger) *Policy {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Policy{log: logger}
	for _, a := range allow {
		if a.Addr().Is4In6() && a.Bits() >= 96 {
			a = netip.PrefixFrom(a.Addr().Unmap(), a.Bits()-96)
		}
		p.allow = append(p.allow, a.Masked())
	}
	return p
}

// AllowList is the operator's ranges.
func (p *Policy) AllowList() []netip.Prefix {
	if p == nil {
		return nil
	}
	return append([]netip.Prefix(nil), p.allow...)
}

// Allowed reports whether the hub may connect to ip: an address in the
// allow-list, or any address that is not internal.
func (p *Policy) Allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("").Unmap()
	if p != nil {
		for _, a := range p.allow {
			if a.Contains(ip) {
				return true
			}
		}
	}
	if v4, ok := embeddedIPv4(ip); ok {
		return p.Allowed(v4)
	}
	return !internal(ip)
}

// Ranges no tenant target may be in unless allow-listed, beyond what
// netip.Addr's predicates cover (loopback, private, link-local, multicast,
// unspecified).
var refused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo: carries obfuscated IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT)
}

func internal(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, r := range refused {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	compatible = netip.MustParsePrefix("::/96") // deprecated IPv4-compatible
)

// embeddedIPv4 is the IPv4 address an IPv6 address carries by a well-known
// translation (NAT64, 6to4, IPv4-compatible): reaching it may reach that
// IPv4 address, so it is judged as that address.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case compatible.Contains(ip) && !ip.IsLoopback() && !ip.IsUnspecified():
		return netip.AddrFrom4([4]byte(b[12:16])), true
	}
	return netip.Addr{}, false
}

// CheckURL refuses an http(s) address whose host is an IP address the
// policy does not allow (with ErrNotAllowed). A host name passes: it is
// checked on every connection, after resolution, by Client.
func (p *Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http:// or https:// address", raw)
	}
	return p.checkHost(u.Hostname())
}

func (p *Policy) checkHost(host string) error {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil // a name: checked when dialed
	}
	if !p.Allowed(ip) {
		return ErrNotAllowed
	}
	return nil
}

// control runs after resolution, on the address about to be dialed.
func (p *Policy) control(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err == nil && p.Allowed(ap.Addr()) {
		return nil
	}
	p.logger().Warn("egress: refused a connection to an address the egress policy does not allow; allow its range with --egress-allow if the site needs it",
		"network", network, "address", address)
	return ErrNotAllowed
}

func (p *Policy) logger() *slog.Logger {
	if p == nil || p.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.log
}

// Transport is an HTTP transport whose every connection is checked by the
// policy on the dialed address. It does not use a proxy from the
// environment: a proxy would reach the addresses the policy refuses.
func (p *Policy) Transport() *http.Transport {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, ControlContext: p.control}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Client is an *http.Client on Transport. It follows a redirect only when
// it keeps the method and the body (307, 308), at most MaxRedirects times,
// each target checked like the first; any other redirect is returned to
// the caller as the response (following a 301, 302 or 303 would turn a
// POST into a GET without its body).
func (p *Policy) Client() *http.Client {
	return &http.Client{Transport: p.Transport(), CheckRedirect: p.checkRedirect}
}

func (p *Policy) checkRedirect(req *http.Request, via []*http.Request) error {
	if req.Response != nil && req.Response.StatusCode != http.StatusTemporaryRedirect && req.Response.StatusCode != http.StatusPermanentRedirect {
		return http.ErrUseLastResponse
	}
	if len(via) >= MaxRedirects {
		return errRedirects
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return errRedirectScheme
	}
	return p.checkHost(req.URL.Hostname())
}
