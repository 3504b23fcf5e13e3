package cli_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/cli"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/users"
)

// usersAdapter serves the API's Users on the real user store, as the hub does.
type usersAdapter struct{ s *users.Service }

func (a usersAdapter) CreateUser(ctx context.Context, org, name, pw string, role registry.Role) (api.User, error) {
	u, err := a.s.Create(ctx, org, name, pw, role)
	return api.User(u), err
}

func (a usersAdapter) ListUsers(ctx context.Context, org string) ([]api.User, error) {
	us, err := a.s.List(ctx, org)
	out := make([]api.User, len(us))
	for i, u := range us {
		out[i] = api.User(u)
	}
	return out, err
}

func (a usersAdapter) DeleteUser(ctx context.Context, org, id string) error {
	return a.s.Delete(ctx, org, id)
}

func (a usersAdapter) SetUserPassword(ctx context.Context, org, id, pw string) error {
	return a.s.SetPassword(ctx, org, id, pw)
}

func TestUserAddListDelete(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	st, reg, admin := testRegistry(t)
	us, err := users.New(ctx, users.Config{DB: st.DB(), Driver: "sqlite", Cost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Deps{Registry: reg, Users: usersAdapter{us}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	t.Setenv("SHOPFLOOR_URL", ts.URL)
	t.Setenv("SHOPFLOOR_TOKEN", admin)

	runIn := func(stdin string, args ...string) (string, error) {
		root := cli.NewRoot()
		var out, errb bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errb)
		root.SetIn(strings.NewReader(stdin))
		root.SetArgs(args)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err := root.ExecuteContext(cctx)
		return out.String() + errb.String(), err
	}
	out, err := runIn("correct horse battery\n", "user", "add", "anna.k", "--role", "operator", "--password-stdin")
	if err != nil || !strings.Contains(out, "anna.k") || !strings.Contains(out, "operator") || strings.Contains(out, "horse") {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	u, err := us.Authenticate(ctx, "anna.k", "correct horse battery")
	if err != nil || u.Role != registry.RoleOperator {
		t.Fatalf("the added user cannot sign in: %+v %v", u, err)
	}
	if out, err := runIn("short\n", "user", "add", "bob", "--password-stdin"); err == nil || !strings.Contains(out+err.Error(), "10 to 72") {
		t.Fatalf("a short password: %v\n%s", err, out)
	}
	if _, err := runIn("", "user", "add", "bob", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "no password on stdin") {
		t.Fatalf("no password: %v", err)
	}
	out, err = runIn("", "user", "list")
	if err != nil || !strings.Contains(out, "anna.k") || strings.Contains(out, "bob") {
		t.Fatalf("user list: %v\n%s", err, out)
	}
	if out, err := runIn("new horse battery\n", "user", "passwd", "anna.k", "--password-stdin"); err != nil || !strings.Contains(out, "password of user") || strings.Contains(out, "horse") {
		t.Fatalf("user passwd: %v\n%s", err, out)
	}
	if _, err := us.Authenticate(ctx, "anna.k", "new horse battery"); err != nil {
		t.Fatalf("the new password after passwd: %v", err)
	}
	if out, err := runIn("short\n", "user", "passwd", u.ID, "--password-stdin"); err == nil || !strings.Contains(out+err.Error(), "10 to 72") {
		t.Fatalf("passwd with a short password: %v\n%s", err, out)
	}
	if _, err := runIn("x\n", "user", "passwd", "nobody", "--password-stdin"); err == nil || !strings.Contains(err.Error(), `no console user named "nobody"`) {
		t.Fatalf("passwd of an unknown name: %v", err)
	}
	if out, err := runIn("", "user", "delete", u.ID); err != nil || !strings.Contains(out, "deleted user") {
		t.Fatalf("user delete: %v\n%s", err, out)
	}
	if _, err := us.Authenticate(ctx, "anna.k", "correct horse battery"); err == nil {
		t.Fatal("a deleted user still signs in")
	}
}
