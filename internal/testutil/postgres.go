package testutil

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
)

// PostgresDSN returns a DSN for a fresh schema on the server named by
// SHOPFLOOR_TEST_POSTGRES, dropped at cleanup; it skips the test without it.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("SHOPFLOOR_TEST_POSTGRES")
	if base == "" {
		t.Skip("SHOPFLOOR_TEST_POSTGRES not set: skipping the PostgreSQL test (CI sets it)")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "e2e_" + hex.EncodeToString(rnd[:])
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema on %s: %v", base, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// RandomPrefix is a bus prefix unique to this test, for a shared NATS.
func RandomPrefix() string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "SFT" + hex.EncodeToString(rnd[:])
}
