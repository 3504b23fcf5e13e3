package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

// PostgresDSN returns a DSN for a fresh schema on the server named by
// SHOPFLOOR_TEST_POSTGRES, dropped at cleanup; it skips the test without it.
func PostgresDSN(t testing.TB) string { return storetest.PostgresDSN(t) }

// RandomPrefix is a bus prefix unique to this test, for a shared NATS.
func RandomPrefix() string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "SFT" + hex.EncodeToString(rnd[:])
}
