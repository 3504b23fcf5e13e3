package postgres_test

import (
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/store/postgres"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Postgres())
}

func TestOpenErrorsHidePassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://shop:s3cret-pw@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", // nothing listens on port 1
		"postgres://shop:s3cret-pw@[::1:bad/none",
	} {
		s, err := postgres.Open(t.Context(), dsn, nil)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Fatalf("error reveals the password: %v", err)
		}
		if !strings.Contains(err.Error(), "PostgreSQL registry") {
			t.Fatalf("error %q does not say what failed", err)
		}
	}
}
