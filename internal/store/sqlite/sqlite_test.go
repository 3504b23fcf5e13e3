package sqlite_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/sqlite"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.SQLite())
}

func TestOpenSettings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  sqlite.Options
		synch int
	}{{"default", sqlite.Options{}, 1}, {"fsync", sqlite.Options{Fsync: true}, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "new", "dir", "registry.db")
			s, err := sqlite.OpenWith(t.Context(), path, tc.opts, nil)
			if err != nil {
				t.Fatalf("open in a missing directory: %v", err)
			}
			defer s.Close()
			// Every pooled connection must carry the settings, so check several.
			conns := make([]interface{ Close() error }, 0, 3)
			for range 3 {
				c, err := s.DB().Conn(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				var mode string
				var fk, busy, sync int
				if err := c.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
					t.Fatal(err)
				}
				if err := c.QueryRowContext(t.Context(), "PRAGMA foreign_keys").Scan(&fk); err != nil {
					t.Fatal(err)
				}
				if err := c.QueryRowContext(t.Context(), "PRAGMA busy_timeout").Scan(&busy); err != nil {
					t.Fatal(err)
				}
				if err := c.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&sync); err != nil {
					t.Fatal(err)
				}
				if mode != "wal" || fk != 1 || busy != sqlite.BusyTimeoutMillis || sync != tc.synch {
					t.Fatalf("connection settings: journal_mode=%s foreign_keys=%d busy_timeout=%d synchronous=%d (want %d)", mode, fk, busy, sync, tc.synch)
				}
			}
			for _, c := range conns {
				c.Close()
			}
		})
	}
}

func TestOpenRejectsNonFiles(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", filepath.Join(t.TempDir(), "a?b.db")} {
		s, err := sqlite.Open(t.Context(), p, nil)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%q) succeeded", p)
		}
		if !strings.Contains(err.Error(), "SQLite registry") {
			t.Fatalf("Open(%q) error %q does not say what failed", p, err)
		}
	}
}

// TestCreateDeviceIsAtomic makes the tag insert fail after the device row
// was written: nothing of the device may remain.
func TestCreateDeviceIsAtomic(t *testing.T) {
	ctx := t.Context()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateOrg(ctx, registry.Org{ID: "acme", Name: "acme", RetentionDays: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `CREATE TRIGGER boom BEFORE INSERT ON device_tags
		WHEN NEW.tag_value = 'boom' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	d := registry.Device{ID: "d1", Org: "acme", Auth: registry.AuthSAS, Tags: map[string]string{"a": "ok", "b": "boom"}}
	if err := s.CreateDevice(ctx, d); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("CreateDevice = %v, want the injected failure", err)
	}
	if _, err := s.LookupDevice(ctx, "d1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("half-created device: %v", err)
	}
	var tags int
	if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM device_tags").Scan(&tags); err != nil {
		t.Fatal(err)
	}
	if tags != 0 {
		t.Fatalf("%d tag rows left behind", tags)
	}
}
