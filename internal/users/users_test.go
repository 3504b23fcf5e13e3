package users_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/crypto/bcrypt"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
	"github.com/shopfloor/shopfloor/internal/users"
)

func TestUsersAndSessions(t *testing.T) {
	for name, open := range storetest.DBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, driver := open(t)
			clock := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			s, err := users.New(ctx, users.Config{DB: db, Driver: driver, Cost: bcrypt.MinCost, Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			// Creating the tables again (a restart) keeps them.
			if _, err := users.New(ctx, users.Config{DB: db, Driver: driver, Cost: bcrypt.MinCost}); err != nil {
				t.Fatal(err)
			}

			u, err := s.Create(ctx, "acme", "anna.k", "correct horse battery", registry.RoleOperator)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(u.ID, "usr_") || u.Org != "acme" || u.Role != registry.RoleOperator {
				t.Fatalf("created %+v", u)
			}
			if _, err := s.Create(ctx, "other", "anna.k", "another password!", registry.RoleViewer); !errors.Is(err, registry.ErrConflict) {
				t.Fatalf("a taken name in another org: %v, want conflict", err)
			}
			for _, bad := range []struct {
				name, pw string
				role     registry.Role
			}{
				{"", "long enough password", registry.RoleViewer},
				{"has space", "long enough password", registry.RoleViewer},
				{"bob", "short", registry.RoleViewer},
				{"bob", strings.Repeat("x", 73), registry.RoleViewer},
				{"bob", "long enough password", "root"},
			} {
				if _, err := s.Create(ctx, "acme", bad.name, bad.pw, bad.role); !errors.Is(err, registry.ErrInvalid) {
					t.Errorf("Create(%q, %d-byte password, %q) = %v, want invalid", bad.name, len(bad.pw), bad.role, err)
				}
			}

			got, err := s.Authenticate(ctx, "anna.k", "correct horse battery")
			if err != nil || got.ID != u.ID || got.Org != "acme" || got.Role != registry.RoleOperator {
				t.Fatalf("authenticate: %+v %v", got, err)
			}
			if _, err := s.Authenticate(ctx, "anna.k", "correct horse batterY"); !errors.Is(err, registry.ErrUnauthorized) {
				t.Fatalf("wrong password: %v", err)
			}
			if _, err := s.Authenticate(ctx, "nobody", "correct horse battery"); !errors.Is(err, registry.ErrUnauthorized) {
				t.Fatalf("unknown user: %v", err)
			}
			var hash string
			if err := db.QueryRowContext(ctx, "SELECT password_hash FROM console_users WHERE id = '"+u.ID+"'").Scan(&hash); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(hash, "$2a$") || strings.Contains(hash, "horse") {
				t.Fatalf("stored password %q is not a bcrypt hash", hash)
			}
			list, err := s.List(ctx, "acme")
			if err != nil || len(list) != 1 || list[0].Name != "anna.k" {
				t.Fatalf("list: %+v %v", list, err)
			}
			if l, _ := s.List(ctx, "other"); len(l) != 0 {
				t.Fatalf("another org lists %+v", l)
			}

			// Sessions survive a new Service (a restart) and keep the token secret
			// out of the table.
			tokSess := users.Session{ID: "cookie-value-1", Secret: "sft_secret-token", CSRF: "c1", Org: "acme", Expires: clock.Add(time.Hour)}
			userSess := users.Session{ID: "cookie-value-2", User: u.ID, CSRF: "c2", Org: "acme", Expires: clock.Add(time.Hour)}
			for _, ss := range []users.Session{tokSess, userSess} {
				if err := s.SaveSession(ctx, ss); err != nil {
					t.Fatal(err)
				}
			}
			var dump strings.Builder
			rows, err := db.QueryContext(ctx, "SELECT id_hash, sealed_secret FROM console_sessions")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var a, b string
				_ = rows.Scan(&a, &b)
				dump.WriteString(a + " " + b + "\n")
			}
			rows.Close()
			if strings.Contains(dump.String(), "sft_secret") || strings.Contains(dump.String(), "cookie-value") {
				t.Fatalf("the sessions table holds a secret or cookie value:\n%s", dump.String())
			}
			s2, _ := users.New(ctx, users.Config{DB: db, Driver: driver, Cost: bcrypt.MinCost, Now: func() time.Time { return clock }})
			got1, ok, err := s2.LoadSession(ctx, "cookie-value-1")
			if err != nil || !ok || got1.Secret != "sft_secret-token" || got1.CSRF != "c1" || got1.Org != "acme" || got1.User != "" {
				t.Fatalf("load token session: %+v %v %v", got1, ok, err)
			}
			if _, ok, _ := s2.LoadSession(ctx, "cookie-value-3"); ok {
				t.Fatal("an unknown cookie loads a session")
			}
			userSess.Org = "acme-child"
			if err := s2.SaveSession(ctx, userSess); err != nil {
				t.Fatal(err)
			}
			if got2, ok, _ := s2.LoadSession(ctx, "cookie-value-2"); !ok || got2.User != u.ID || got2.Org != "acme-child" {
				t.Fatalf("updated session: %+v %v", got2, ok)
			}

			// Deleting the user signs its browsers out; expiry drops the rest.
			if err := s.Delete(ctx, "other", u.ID); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("delete from another org: %v", err)
			}
			if err := s.Delete(ctx, "acme", u.ID); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := s.LoadSession(ctx, "cookie-value-2"); ok {
				t.Fatal("a deleted user's session still loads")
			}
			if _, err := s.Authenticate(ctx, "anna.k", "correct horse battery"); !errors.Is(err, registry.ErrUnauthorized) {
				t.Fatalf("a deleted user signs in: %v", err)
			}
			clock = clock.Add(2 * time.Hour)
			if _, ok, _ := s.LoadSession(ctx, "cookie-value-1"); ok {
				t.Fatal("an expired session loads")
			}
			if err := s.SaveSession(ctx, tokSess); err != nil {
				t.Fatal(err)
			}
			if n, err := s.DeleteExpiredSessions(ctx); err != nil || n != 1 {
				t.Fatalf("delete expired: %d %v", n, err)
			}
		})
	}
}

// signedInUser is a viewer of acme with password "first password 1",
// signed in on the given browsers (session cookie values).
func signedInUser(t *testing.T, open func(testing.TB) (*sql.DB, string), name string, browsers ...string) (*users.Service, users.User) {
	t.Helper()
	ctx := context.Background()
	db, driver := open(t)
	s, err := users.New(ctx, users.Config{DB: db, Driver: driver, Cost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Create(ctx, "acme", name, "first password 1", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range browsers {
		if err := s.SaveSession(ctx, users.Session{ID: id, User: u.ID, CSRF: "c", Org: "acme", Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	return s, u
}

// Changing one's password checks the current one, refuses a bad new one
// without changing anything, and signs out the user's other browsers.
func TestChangePassword(t *testing.T) {
	for name, open := range storetest.DBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, u := signedInUser(t, open, "piet", "this-browser", "other-browser")
			for _, c := range []struct {
				current, next string
				want          error
			}{
				{"wrong password!", "second password 2", registry.ErrUnauthorized},
				{"first password 1", "short", registry.ErrInvalid},
				{"first password 1", "first password 1", registry.ErrInvalid},
			} {
				if err := s.ChangePassword(ctx, u.ID, c.current, c.next, "this-browser"); !errors.Is(err, c.want) {
					t.Errorf("ChangePassword(%q → %q) = %v, want %v", c.current, c.next, err, c.want)
				}
			}
			if _, ok, _ := s.LoadSession(ctx, "other-browser"); !ok {
				t.Fatal("a refused change signed a browser out")
			}
			if _, err := s.Authenticate(ctx, "piet", "first password 1"); err != nil {
				t.Fatalf("a refused change altered the password: %v", err)
			}
			if err := s.ChangePassword(ctx, "usr_nobody", "first password 1", "second password 2", ""); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("unknown user: %v", err)
			}
			if err := s.ChangePassword(ctx, u.ID, "first password 1", "second password 2", "this-browser"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Authenticate(ctx, "piet", "first password 1"); !errors.Is(err, registry.ErrUnauthorized) {
				t.Fatalf("the old password still signs in: %v", err)
			}
			if _, err := s.Authenticate(ctx, "piet", "second password 2"); err != nil {
				t.Fatalf("the new password: %v", err)
			}
			if _, ok, _ := s.LoadSession(ctx, "this-browser"); !ok {
				t.Fatal("the browser that changed the password was signed out")
			}
			if _, ok, _ := s.LoadSession(ctx, "other-browser"); ok {
				t.Fatal("another browser is still signed in after the change")
			}
		})
	}
}

// An admin's reset needs no current password, stays inside the admin's
// organization and signs every browser of the user out.
func TestSetPassword(t *testing.T) {
	for name, open := range storetest.DBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, u := signedInUser(t, open, "joke", "browser")
			if err := s.SetPassword(ctx, "other", u.ID, "second password 2"); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("another org's admin: %v", err)
			}
			if err := s.SetPassword(ctx, "acme", u.ID, "short"); !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("short password: %v", err)
			}
			if _, ok, _ := s.LoadSession(ctx, "browser"); !ok {
				t.Fatal("a refused reset signed the user out")
			}
			if err := s.SetPassword(ctx, "acme", u.ID, "second password 2"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Authenticate(ctx, "joke", "second password 2"); err != nil {
				t.Fatalf("the new password: %v", err)
			}
			if _, ok, _ := s.LoadSession(ctx, "browser"); ok {
				t.Fatal("the user is still signed in after the reset")
			}
		})
	}
}
