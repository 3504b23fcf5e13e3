package egress

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestDefaultPolicyRefusesInternalAddresses(t *testing.T) {
	var p *Policy // the default: no allow-list
	for _, a := range []string{
		"127.0.0.1", "127.3.2.1", "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.10",
		"169.254.169.254", "169.254.0.1", "0.0.0.0", "0.1.2.3", "100.64.0.1", "198.18.0.1",
		"224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
		"::1", "::", "fd00::1", "fd00:ec2::254", "fc00::1", "fe80::1", "fe80::1%eth0", "ff02::1", "fec0::1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a9fe:a9fe::", "64:ff9b:1::1", "2001:0:4136:e378::1",
	} {
		if p.Allowed(netip.MustParseAddr(a)) {
			t.Errorf("%s is allowed by default", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"} {
		if !p.Allowed(netip.MustParseAddr(a)) {
			t.Errorf("the public address %s is refused", a)
		}
	}
	if p.Allowed(netip.Addr{}) {
		t.Error("the zero address is allowed")
	}
}

func TestAllowListOpensOnlyItsRanges(t *testing.T) {
	p := New(prefixes(t, "10.20.0.0/16", "::1/128", "::ffff:192.168.7.0/120"), nil)
	for a, want := range map[string]bool{
		"10.20.3.4": true, "::ffff:10.20.3.4": true, "64:ff9b::a14:304": true, "10.21.0.1": false,
		"::1": true, "127.0.0.1": false, "192.168.7.9": true, "192.168.8.1": false, "169.254.169.254": false,
		"8.8.8.8": true,
	} {
		if got := p.Allowed(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s: allowed %v, want %v", a, got, want)
		}
	}
	if got := p.AllowList(); len(got) != 3 || got[2].String() != "192.168.7.0/24" {
		t.Errorf("allow-list: %v", got)
	}
}

func TestCheckURLRefusesInternalLiterals(t *testing.T) {
	var p *Policy
	for _, u := range []string{
		"http://127.0.0.1:8080/hook", "https://[::1]/x", "http://[::ffff:127.0.0.1]:9/x", "http://[::ffff:7f00:1]/",
		"http://0.0.0.0/", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1%25eth0]/", "http://10.0.0.5/",
		"http://[fd00:ec2::254]/", "http://user:pw@192.168.0.1/",
	} {
		if err := p.CheckURL(u); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s: want ErrNotAllowed, got %v", u, err)
		}
	}
	for _, u := range []string{"https://example.com/hook", "http://localhost:8080/", "http://8.8.8.8/"} {
		if err := p.CheckURL(u); err != nil {
			t.Errorf("%s: %v (names are checked when dialed)", u, err)
		}
	}
	for _, u := range []string{"ftp://example.com/", "example.com/hook", ""} {
		if err := p.CheckURL(u); err == nil || errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s: want a malformed-address error, got %v", u, err)
		}
	}
}

// counting is a receiver that counts the requests reaching it.
func counting(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// leaks fails if a tenant-visible text names the receiver's address or port.
func leaks(t *testing.T, text string, srv *httptest.Server) {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	for _, s := range []string{u.Hostname(), u.Port(), "dial", "tcp"} {
		if strings.Contains(text, s) {
			t.Errorf("tenant-visible error %q contains %q", text, s)
		}
	}
}

func TestClientRefusesLoopbackByDefault(t *testing.T) {
	srv, hits := counting(t, nil)
	var p *Policy
	resp, err := p.Client().Post(srv.URL+"/hook", "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatal("a loopback target was reached with the default policy")
	}
	if !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("want ErrNotAllowed, got %v", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("the receiver got %d requests", hits.Load())
	}
	d := Describe(err)
	if d.Error() != ErrNotAllowed.Error() || !errors.Is(d, ErrNotAllowed) {
		t.Errorf("described: %q", d)
	}
	leaks(t, d.Error(), srv)
}

// The check runs on the dialed address after resolution: a name that
// resolves to loopback is refused although the URL holds no address.
func TestClientRefusesNameResolvingToLoopback(t *testing.T) {
	srv, hits := counting(t, nil)
	u, _ := url.Parse(srv.URL)
	target := "http://localhost:" + u.Port() + "/hook"
	var p *Policy
	if err := p.CheckURL(target); err != nil {
		t.Fatalf("a name passes the save-time check: %v", err)
	}
	resp, err := p.Client().Get(target)
	if err == nil {
		resp.Body.Close()
		t.Fatal("localhost was reached with the default policy")
	}
	if !errors.Is(err, ErrNotAllowed) || hits.Load() != 0 {
		t.Fatalf("want ErrNotAllowed and no request, got %v and %d requests", err, hits.Load())
	}
	leaks(t, Describe(err).Error(), srv)

	// The allow-list opens loopback, as the test hubs do.
	open := New(prefixes(t, "127.0.0.0/8", "::1/128"), nil)
	resp, err = open.Client().Get(target)
	if err != nil {
		t.Fatalf("allow-listed loopback: %v", err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("requests: %d", hits.Load())
	}
}

func TestRedirectToMetadataAddressRefused(t *testing.T) {
	srv, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", http.StatusTemporaryRedirect)
	})
	p := New(prefixes(t, "127.0.0.0/8", "::1/128"), nil) // the first hop is allowed
	resp, err := p.Client().Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the redirect to the metadata address was followed: %s", resp.Status)
	}
	if !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("want ErrNotAllowed, got %v", err)
	}
	leaks(t, Describe(err).Error(), srv)
}

func TestRedirectsFollowedOnlyWhenTheyKeepTheBody(t *testing.T) {
	final, finalHits := counting(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("the redirected request is a %s", r.Method)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	moved, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, final.URL, http.StatusPermanentRedirect)
	})
	found, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, final.URL, http.StatusFound)
	})
	loop, _ := counting(t, nil)
	loop.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL, http.StatusTemporaryRedirect)
	})
	c := New(prefixes(t, "127.0.0.0/8", "::1/128"), nil).Client()
	resp, err := c.Post(moved.URL, "application/json", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusNoContent || finalHits.Load() != 1 {
		t.Fatalf("308: %v %v, %d requests at the final address", err, resp, finalHits.Load())
	}
	resp.Body.Close()
	resp, err = c.Post(found.URL, "application/json", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusFound || finalHits.Load() != 1 {
		t.Fatalf("302 must come back to the caller: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = c.Post(loop.URL, "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatal("a redirect loop ended without error")
	}
	if got := Describe(err).Error(); got != "stopped after 5 redirects" {
		t.Errorf("redirect loop: %q", got)
	}
}

func TestDescribeHidesNetworkDetail(t *testing.T) {
	// Nothing listens on this allow-listed port: the raw error names the
	// address, the tenant's text does not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := New(prefixes(t, "127.0.0.0/8"), nil)
	_, err = p.Client().Get("http://" + addr + "/")
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("raw error: %v", err)
	}
	got := Describe(err).Error()
	if strings.Contains(got, "127.0.0.1") || strings.Contains(got, addr[strings.LastIndexByte(addr, ':')+1:]) {
		t.Errorf("tenant-visible text %q names the address", got)
	}
	if !strings.Contains(got, "connection refused") {
		t.Errorf("tenant-visible text %q does not say what happened", got)
	}
	dns := &net.DNSError{Err: "no such host", Name: "historian.example", Server: "10.0.0.53:53", IsNotFound: true}
	if got := Describe(&url.Error{Op: "Post", URL: "http://historian.example/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: dns}}).Error(); strings.Contains(got, "10.0.0.53") || !strings.Contains(got, `"historian.example" not found`) {
		t.Errorf("DNS failure: %q", got)
	}
	// https:// to a plain HTTP receiver.
	plain, _ := counting(t, nil)
	_, err = p.Client().Get(strings.Replace(plain.URL, "http://", "https://", 1))
	if got := Describe(err).Error(); got != "the server did not answer with TLS; use http:// or check the port" {
		t.Errorf("https to plain HTTP: %q (raw %v)", got, err)
	}
	if Describe(nil) != nil {
		t.Error("Describe(nil) is not nil")
	}
}
