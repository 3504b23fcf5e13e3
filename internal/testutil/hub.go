package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/app"
	"github.com/shopfloor/shopfloor/internal/config"
)

// Hub is a running in-process hub.
type Hub struct {
	*app.Hub
	URL   string // http://127.0.0.1:port
	Token string // admin token of the operator organization
	Data  string
	stop  context.CancelFunc
	done  chan error
	t     testing.TB
}

// Options change how StartHub configures the hub.
type Options struct {
	Data     string // reuse a data directory (restart tests)
	Postgres string // DSN; empty uses SQLite
	NATS     string // URL; empty embeds NATS
	Prefix   string // bus prefix on a shared NATS
	Token    string // bootstrap admin token; default a fixed test token
	Mutate   func(*config.Config)
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Logger writes to the test log when -v is given, else discards.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// StartHub starts a hub on free loopback ports and stops it at cleanup.
func StartHub(t testing.TB, o Options) *Hub {
	t.Helper()
	cfg := config.Default()
	cfg.Data = o.Data
	if cfg.Data == "" {
		cfg.Data = t.TempDir()
	}
	cfg.HTTP = "127.0.0.1:0"
	cfg.MQTT = "127.0.0.1:0"
	cfg.MQTTS = "127.0.0.1:0"
	cfg.HTTPS = "127.0.0.1:0"
	cfg.Postgres, cfg.NATS = o.Postgres, o.NATS
	if o.Prefix != "" {
		cfg.BusPrefix = o.Prefix
	}
	if o.NATS != "" {
		// A shared server reserves each stream's maximum: keep tests small.
		cfg.StreamMB = 64
	}
	// Tests' webhook and export receivers are httptest servers on loopback,
	// which the egress policy refuses unless the operator allows it; a test
	// of that wall clears this in Mutate.
	cfg.EgressAllow = "127.0.0.0/8,::1/128"
	cfg.AdminToken = o.Token
	if cfg.AdminToken == "" {
		cfg.AdminToken = "sft_test-admin-token-0123456789abcdef"
	}
	if o.Mutate != nil {
		o.Mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := app.NewHub(ctx, cfg, Logger(t))
	if err != nil {
		cancel()
		t.Fatalf("start hub: %v", err)
	}
	th := &Hub{Hub: h, URL: "http://" + h.HTTPAddr(), Token: cfg.AdminToken, Data: cfg.Data, stop: cancel, done: make(chan error, 1), t: t}
	go func() { th.done <- h.Run(ctx) }()
	t.Cleanup(th.Stop)
	Eventually(t, 30*time.Second, "hub ready", func() bool {
		resp, err := http.Get(th.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return th
}

// Stop shuts the hub down and waits for it; safe to call twice.
func (h *Hub) Stop() {
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		h.t.Errorf("hub did not stop within 30s")
	}
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// API is a REST client with one token.
type API struct {
	Base  string
	Token string
	Org   string // X-Shopfloor-Org, for operator tokens acting on a customer
}

// API returns a client with the hub's admin token.
func (h *Hub) API() *API { return &API{Base: h.URL, Token: h.Token} }

// Do sends a JSON request and decodes a JSON answer into out (if non-nil).
// It returns the status code.
func (a *API) Do(t testing.TB, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, a.Base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Content-Type", "application/json")
	if a.Org != "" {
		req.Header.Set("X-Shopfloor-Org", a.Org)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: status %d, undecodable body %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// MustDo is Do that fails the test unless the status is want.
func (a *API) MustDo(t testing.TB, want int, method, path string, body any, out any) {
	t.Helper()
	var raw json.RawMessage
	got := a.Do(t, method, path, body, &raw)
	if got != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, got, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
	}
}

// Device is the part of a created device tests use.
type Device struct {
	ID           string `json:"id"`
	Org          string `json:"org"`
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// CreateDevice creates a device with the given JSON fields.
func (a *API) CreateDevice(t testing.TB, id string, extra map[string]any) Device {
	t.Helper()
	body := map[string]any{"id": id}
	for k, v := range extra {
		body[k] = v
	}
	var d Device
	a.MustDo(t, http.StatusCreated, "POST", "/api/v1/devices", body, &d)
	if d.PrimaryKey == "" {
		t.Fatalf("created device %s has no primaryKey", id)
	}
	return d
}

// CreateTemplate creates an empty device template, which declares no
// telemetry, properties or commands: the hub refuses devices that name a
// template it does not have.
func (a *API) CreateTemplate(t testing.TB, id string) {
	t.Helper()
	a.MustDo(t, http.StatusCreated, "POST", "/api/v1/templates", map[string]any{"id": id, "telemetry": []any{}, "properties": []any{}, "commands": []any{}}, nil)
}

// CreateOrgToken creates a customer organization and an admin token in it.
func (a *API) CreateOrgToken(t testing.TB, org string, role string) *API {
	t.Helper()
	a.Do(t, "POST", "/api/v1/orgs", map[string]any{"id": org, "name": org}, nil)
	op := *a
	op.Org = org
	var tok struct {
		Token string `json:"token"`
	}
	op.MustDo(t, http.StatusCreated, "POST", "/api/v1/tokens", map[string]any{"name": "test-" + role, "role": role}, &tok)
	if tok.Token == "" {
		t.Fatalf("token for %s has no secret", org)
	}
	return &API{Base: a.Base, Token: tok.Token}
}
