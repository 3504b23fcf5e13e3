package registry_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

// benchService returns a service over SQLite holding n devices.
func benchService(b *testing.B, n int) *registry.Service {
	b.Helper()
	st := storetest.OpenStore(b, storetest.SQLite())
	svc := registry.New(st, slog.New(slog.DiscardHandler))
	ctx := b.Context()
	if _, _, err := svc.Bootstrap(ctx, ""); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.CreateOrg(ctx, registry.OperatorOrg, registry.Org{ID: "acme"}); err != nil {
		b.Fatal(err)
	}
	// Straight into the store: generating keys for every device is not
	// what is measured.
	now := time.Now().UTC()
	for i := range n {
		d := registry.Device{ID: fmt.Sprintf("dev-%06d", i), Org: "acme", Auth: registry.AuthSAS,
			PrimaryKey: "cHJpbWFyeS1rZXktMTIzNDU2Nzg5MA==", SecondaryKey: "c2Vjb25kYXJ5LWtleS0xMjM0NTY3OA==",
			Tags: map[string]string{"line": fmt.Sprint(i % 8)}, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateDevice(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
	return svc
}

// BenchmarkLookupDevice measures the per-CONNECT device lookup on SQLite.
func BenchmarkLookupDevice(b *testing.B) {
	const n = 2000
	svc := benchService(b, n)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := svc.LookupDevice(ctx, fmt.Sprintf("dev-%06d", i%n)); err != nil {
			b.Fatal(err)
		}
		i += 7919 // a prime stride visits ids out of order
	}
}

// BenchmarkLookupDeviceParallel measures lookups from many connecting
// devices at once (WAL readers in parallel).
func BenchmarkLookupDeviceParallel(b *testing.B) {
	const n = 2000
	svc := benchService(b, n)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := svc.LookupDevice(ctx, fmt.Sprintf("dev-%06d", i%n)); err != nil {
				b.Error(err)
				return
			}
			i += 7919
		}
	})
}
