package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

// PostgresDSN returns a DSN for a fresh schema on the server named by
// SHOPFLOOR_TEST_POSTGRES, dropped at cleanup; it skips the test without it.
func PostgresDSN(t testing.TB) string { return storetest.PostgresDSN(t) }

// SharedPrefix is a bus prefix unique to this test on the shared NATS at
// natsURL; its stream is deleted when the test ends, after the hubs stopped.
func SharedPrefix(t testing.TB, natsURL string) string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	prefix := "SFT" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() {
		// Not t.Context(): it is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := bus.New(ctx, bus.Config{URL: natsURL, Prefix: prefix, MaxBytes: 16 << 20}, Logger(t))
		if err != nil {
			t.Logf("could not remove test stream %s: %v", prefix, err)
			return
		}
		defer b.Close()
		if err := b.DeleteStream(ctx); err != nil {
			t.Logf("could not remove test stream %s: %v", prefix, err)
		}
	})
	return prefix
}
