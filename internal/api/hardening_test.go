package api_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/api/apitest"
)

// A JSON null body describes nothing: it is refused, never taken as an
// empty object (it created an enrollment group with generated keys).
func TestNullBodyRefused(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		for _, c := range []struct{ method, path string }{
			{"POST", "/api/v1/enrollment-groups"},
			{"POST", "/api/v1/devices"},
			{"POST", "/api/v1/sites"},
			{"PATCH", "/api/v1/devices/press-1"},
		} {
			msg := wantError(t, e.do(c.method, c.path, e.acme[admin], " null "), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, "null") {
				t.Errorf("%s %s: message %q does not say the body is null", c.method, c.path, msg)
			}
		}
		var groups struct{ Items []any }
		e.do("GET", "/api/v1/enrollment-groups", e.acme[admin], nil).decode(t, &groups)
		if len(groups.Items) != 0 {
			t.Fatalf("a null body created %d enrollment groups", len(groups.Items))
		}
	})
}

// A paging cursor no page could have returned is refused, not answered
// with some page.
func TestInvalidCursorRefused(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		for _, id := range []string{"press-1", "press-2", "press-3"} {
			wantStatus(t, e.do("POST", "/api/v1/devices", e.acme[operator], map[string]string{"id": id}), http.StatusCreated)
		}
		for _, bad := range []string{"%27%20OR%201%3D1", "%00", "not%20a%20cursor", strings.Repeat("a", 129)} {
			msg := wantError(t, e.do("GET", "/api/v1/devices?limit=1&after="+bad, e.acme[viewer], nil), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, `"after"`) {
				t.Errorf("message %q does not name the parameter", msg)
			}
		}
		// A real cursor still pages.
		var page struct {
			Items []struct{ ID string }
			Next  string
		}
		e.do("GET", "/api/v1/devices?limit=1", e.acme[viewer], nil).decode(t, &page)
		e.do("GET", "/api/v1/devices?limit=1&after="+page.Next, e.acme[viewer], nil).decode(t, &page)
		if len(page.Items) != 1 || page.Items[0].ID != "press-2" {
			t.Fatalf("second page %+v", page)
		}
	})
}

// Every response says nosniff; HTTPS responses also carry HSTS.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, func(*testing.T) hubRegistry { return apitest.NewRegistry() })
	for _, path := range []string{"/healthz", "/api/v1/devices", "/api/openapi.json", "/api/v1/nosuch"} {
		r := e.do("GET", path, e.acme[viewer], nil)
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, got)
		}
		if got := r.header.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("%s over plain HTTP sent HSTS %q", path, got)
		}
	}
	srv := httptest.NewTLSServer(e.api.Handler())
	defer srv.Close()
	c := srv.Client()
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	resp, err := c.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Fatalf("HTTPS response has Strict-Transport-Security %q, want max-age=31536000", got)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Fatalf("HTTPS response has X-Content-Type-Options %q", got)
	}
}
