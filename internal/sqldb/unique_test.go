package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/sqldb"
)

// A real duplicate insert is recognised on both databases; other errors,
// and an error whose text merely mentions UNIQUE, are not.
func TestIsUnique(t *testing.T) {
	dbs := map[string]func(t *testing.T) (*sql.DB, string){
		"sqlite": func(t *testing.T) (*sql.DB, string) {
			db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "u.db"))
			if err != nil {
				t.Fatal(err)
			}
			return db, "u_sqlite"
		},
		"postgres": func(t *testing.T) (*sql.DB, string) {
			dsn := os.Getenv("SHOPFLOOR_TEST_POSTGRES")
			if dsn == "" {
				t.Skip("PostgreSQL tests skipped: set SHOPFLOOR_TEST_POSTGRES")
			}
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			return db, "sqldb_unique_test"
		},
	}
	for name, open := range dbs {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, table := open(t)
			defer db.Close()
			_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table)
			defer db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table)
			if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id TEXT PRIMARY KEY, name TEXT UNIQUE)"); err != nil {
				t.Fatal(err)
			}
			ins := sqldb.Rebind(name == "postgres", "INSERT INTO "+table+" (id, name) VALUES (?, ?)")
			if _, err := db.ExecContext(ctx, ins, "a", "press"); err != nil {
				t.Fatal(err)
			}
			_, err := db.ExecContext(ctx, ins, "b", "press")
			if !sqldb.IsUnique(err) {
				t.Fatalf("duplicate name: %v not recognised", err)
			}
			_, err = db.ExecContext(ctx, ins, "a", "other")
			if !sqldb.IsUnique(err) {
				t.Fatalf("duplicate key: %v not recognised", err)
			}
			_, err = db.ExecContext(ctx, "INSERT INTO no_such_table VALUES (1)")
			if err == nil || sqldb.IsUnique(err) {
				t.Fatalf("another error taken for a duplicate: %v", err)
			}
		})
	}
	if sqldb.IsUnique(errors.New("UNIQUE constraint failed: but only in the text")) {
		t.Fatal("error text taken for a duplicate")
	}
}
