package e2e

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// get fetches url with an optional bearer token.
func get(t *testing.T, c *http.Client, url, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// /metrics names every organization: it needs an operator-organization
// token, or the operator serves it on --metrics-listen.
func TestMetricsNeedOperatorToken(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" }})
	a := hub.API()
	customer := a.CreateOrgToken(t, "acme", "admin")
	a.CreateDevice(t, "press-1", nil)

	if resp, _ := get(t, http.DefaultClient, hub.URL+"/metrics", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d, want 401", resp.StatusCode)
	}
	if resp, body := get(t, http.DefaultClient, hub.URL+"/metrics", customer.Token); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "operator organization") {
		t.Fatalf("/metrics with a customer admin token: %d %s, want 403", resp.StatusCode, body)
	}
	resp, body := get(t, http.DefaultClient, hub.URL+"/metrics", hub.Token)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "shopfloor_gateway_connections") {
		t.Fatalf("/metrics with the operator token: %d", resp.StatusCode)
	}
	// The separate address serves the same metrics without a token, and nothing else.
	if hub.MetricsAddr() == "" {
		t.Fatal("--metrics-listen was not bound")
	}
	resp, body = get(t, http.DefaultClient, "http://"+hub.MetricsAddr()+"/metrics", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "shopfloor_gateway_credential_revoked_total") {
		t.Fatalf("--metrics-listen /metrics: %d", resp.StatusCode)
	}
	if resp, _ := get(t, http.DefaultClient, "http://"+hub.MetricsAddr()+"/api/v1/devices", hub.Token); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("--metrics-listen serves the API: %d", resp.StatusCode)
	}
}

// HTTPS answers carry HSTS; API and static answers carry nosniff.
func TestSecurityHeadersOnRealHub(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	tc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, _ := get(t, tc, "https://"+hub.HTTPSAddr()+"/api/v1/devices", hub.Token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") != "max-age=31536000" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("HTTPS API answer %d with HSTS %q, nosniff %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"), resp.Header.Get("X-Content-Type-Options"))
	}
	for _, path := range []string{"/api/v1/devices", "/static/app.js", "/static/app.css", "/login"} {
		resp, _ := get(t, http.DefaultClient, hub.URL+path, hub.Token)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, X-Content-Type-Options %q", path, resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
		}
		if resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s over plain HTTP sent HSTS", path)
		}
	}
}

// A device, an enrollment group or an imported row naming a template the
// organization does not have is refused.
func TestDeviceTemplateMustExist(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	var e struct {
		Error struct{ Code, Message string }
	}
	if st := a.Do(t, "POST", "/api/v1/devices", map[string]any{"id": "press-1", "template": "pres"}, &e); st != http.StatusBadRequest || !strings.Contains(e.Error.Message, `template "pres" does not exist`) {
		t.Fatalf("device with a missing template: %d %+v", st, e)
	}
	if st := a.Do(t, "GET", "/api/v1/devices/press-1", nil, nil); st != http.StatusNotFound {
		t.Fatalf("the refused device exists: %d", st)
	}
	if st := a.Do(t, "POST", "/api/v1/enrollment-groups", map[string]any{"id": "presses", "template": "pres"}, &e); st != http.StatusBadRequest || !strings.Contains(e.Error.Message, "does not exist") {
		t.Fatalf("enrollment group with a missing template: %d %+v", st, e)
	}
	a.CreateTemplate(t, "press")
	a.CreateDevice(t, "press-1", map[string]any{"template": "press"})
	if st := a.Do(t, "PATCH", "/api/v1/devices/press-1", map[string]any{"template": "pres"}, &e); st != http.StatusBadRequest || !strings.Contains(e.Error.Message, "does not exist") {
		t.Fatalf("update to a missing template: %d %+v", st, e)
	}
	// Another organization's template does not count.
	other := a.CreateOrgToken(t, "globex", "admin")
	if st := other.Do(t, "POST", "/api/v1/devices", map[string]any{"id": "g-1", "template": "press"}, nil); st != http.StatusBadRequest {
		t.Fatalf("device naming another organization's template: %d", st)
	}

	csv := "id,template\npress-2,press\npress-3,pres\n"
	req, _ := http.NewRequest("POST", hub.URL+"/api/v1/devices/import", strings.NewReader(csv))
	req.Header.Set("Authorization", "Bearer "+hub.Token)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct {
		Created, Failed int
		Rows            []struct {
			Line  int
			Error string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.Created != 1 || rep.Failed != 1 || !strings.Contains(rep.Rows[1].Error, `template "pres" does not exist`) {
		t.Fatalf("import report %+v", rep)
	}
}

// A null body is not an empty object; a cursor no page returned is refused.
func TestNullBodyAndBadCursor(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	if st := a.Do(t, "POST", "/api/v1/enrollment-groups", "null", nil); st != http.StatusBadRequest {
		t.Fatalf("null enrollment group: %d, want 400", st)
	}
	var groups struct{ Items []any }
	a.MustDo(t, http.StatusOK, "GET", "/api/v1/enrollment-groups", nil, &groups)
	if len(groups.Items) != 0 {
		t.Fatalf("a null body created %d enrollment groups", len(groups.Items))
	}
	for _, path := range []string{"/api/v1/devices", "/api/v1/rules", "/api/v1/alerts", "/api/v1/connectivity/sims"} {
		if st := a.Do(t, "GET", path+"?after=%27%20OR%20%271%27%3D%271", nil, nil); st != http.StatusBadRequest {
			t.Errorf("%s with a malformed cursor: %d, want 400", path, st)
		}
	}
}
