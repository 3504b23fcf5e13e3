package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/api/apitest"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// benchServer is the API handler over the in-memory registry, so the
// benchmarks measure the API's own cost: routing, authentication, tenancy,
// JSON, logging and metrics.
func benchServer(b *testing.B, devices int) (http.Handler, string) {
	b.Helper()
	ctx := context.Background()
	reg := apitest.NewRegistry()
	if _, _, err := reg.Bootstrap(ctx, ""); err != nil {
		b.Fatal(err)
	}
	if _, err := reg.CreateOrg(ctx, "operator", registry.Org{ID: "acme", Name: "ACME"}); err != nil {
		b.Fatal(err)
	}
	tok, err := reg.CreateToken(ctx, "acme", "bench", registry.RoleOperator)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < devices; i++ {
		if _, err := reg.CreateDevice(ctx, "acme", registry.Device{ID: fmt.Sprintf("dev-%05d", i), Tags: map[string]string{"line": "3"}}); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := api.New(api.Deps{Registry: reg, Presence: apitest.NewPresence()})
	if err != nil {
		b.Fatal(err)
	}
	return srv.Handler(), tok.Secret
}

func serve(b *testing.B, h http.Handler, method, path, token, body string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 300 {
		b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
}

func BenchmarkGetDevice(b *testing.B) {
	h, tok := benchServer(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, "GET", "/api/v1/devices/dev-00000", tok, "")
	}
}

func BenchmarkListDevices100(b *testing.B) {
	h, tok := benchServer(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, "GET", "/api/v1/devices?limit=100", tok, "")
	}
}

func BenchmarkPatchDevice(b *testing.B) {
	h, tok := benchServer(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, "PATCH", "/api/v1/devices/dev-00000", tok, `{"tags":{"line":"4"},"disabled":false}`)
	}
}
