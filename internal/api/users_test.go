package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// fakeUsers keeps users in memory the way internal/users does: names are
// unique on the hub, rows are scoped by org.
type fakeUsers struct {
	mu  sync.Mutex
	m   map[string]api.User
	set []string // ids whose password was reset
}

func (f *fakeUsers) CreateUser(_ context.Context, org, name, password string, role registry.Role) (api.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(password) < 10 {
		return api.User{}, fmt.Errorf("a password needs 10 to 72 characters: %w", registry.ErrInvalid)
	}
	for _, u := range f.m {
		if u.Name == name {
			return api.User{}, fmt.Errorf("user name %q is taken: %w", name, registry.ErrConflict)
		}
	}
	u := api.User{ID: fmt.Sprintf("usr_%d", len(f.m)+1), Org: org, Name: name, Role: role, CreatedAt: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	f.m[u.ID] = u
	return u, nil
}

func (f *fakeUsers) ListUsers(_ context.Context, org string) ([]api.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.User
	for _, u := range f.m {
		if u.Org == org {
			out = append(out, u)
		}
	}
	return out, nil
}

func (f *fakeUsers) DeleteUser(_ context.Context, org, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.m[id]; !ok || u.Org != org {
		return fmt.Errorf("user %q does not exist: %w", id, registry.ErrNotFound)
	}
	delete(f.m, id)
	return nil
}

func (f *fakeUsers) SetUserPassword(_ context.Context, org, id, password string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(password) < 10 {
		return fmt.Errorf("a password needs 10 to 72 characters: %w", registry.ErrInvalid)
	}
	if u, ok := f.m[id]; !ok || u.Org != org {
		return fmt.Errorf("user %q does not exist: %w", id, registry.ErrNotFound)
	}
	f.set = append(f.set, id)
	return nil
}

func TestUsersAPI(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		users := &fakeUsers{m: map[string]api.User{}}
		e := newEnv(t, mk, func(d *api.Deps) { d.Users = users })
		body := map[string]string{"name": "anna.k", "password": "correct horse battery", "role": "operator"}

		// Only admins manage users.
		wantError(t, e.do("POST", "/api/v1/users", e.acme[registry.RoleOperator], body), http.StatusForbidden, "forbidden")
		wantError(t, e.do("GET", "/api/v1/users", e.acme[registry.RoleViewer], nil), http.StatusForbidden, "forbidden")

		var u api.User
		r := e.do("POST", "/api/v1/users", e.acme[registry.RoleAdmin], body)
		wantStatus(t, r, http.StatusCreated)
		r.decode(t, &u)
		if u.Org != "acme" || u.Name != "anna.k" || u.Role != registry.RoleOperator || u.ID == "" {
			t.Fatalf("created %+v", u)
		}
		if bytes.Contains(r.body, []byte("correct horse")) {
			t.Fatalf("the response carries the password: %s", r.body)
		}
		wantError(t, e.do("POST", "/api/v1/users", e.globex[registry.RoleAdmin], body), http.StatusConflict, "conflict")
		wantError(t, e.do("POST", "/api/v1/users", e.acme[registry.RoleAdmin], map[string]string{"name": "bob", "password": "correct horse battery", "role": "root"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", "/api/v1/users", e.acme[registry.RoleAdmin], map[string]string{"name": "bob", "password": "short", "role": "viewer"}), http.StatusBadRequest, "invalid")

		var l struct{ Items []api.User }
		e.do("GET", "/api/v1/users", e.acme[registry.RoleAdmin], nil).decode(t, &l)
		if len(l.Items) != 1 || l.Items[0].ID != u.ID {
			t.Fatalf("acme lists %+v", l.Items)
		}
		e.do("GET", "/api/v1/users", e.globex[registry.RoleAdmin], nil).decode(t, &l)
		if len(l.Items) != 0 {
			t.Fatalf("globex lists acme's users: %+v", l.Items)
		}
		// The operator organization's admin acts on a customer by naming it.
		e.do("GET", "/api/v1/users?org=acme", e.opAdmin, nil).decode(t, &l)
		if len(l.Items) != 1 {
			t.Fatalf("operator admin lists %+v for acme", l.Items)
		}

		// An admin resets a password; nobody else, and not across organizations.
		pw := map[string]string{"password": "another horse battery"}
		wantError(t, e.do("PUT", "/api/v1/users/"+u.ID+"/password", e.acme[registry.RoleOperator], pw), http.StatusForbidden, "forbidden")
		wantError(t, e.do("PUT", "/api/v1/users/"+u.ID+"/password", e.globex[registry.RoleAdmin], pw), http.StatusNotFound, "not_found")
		wantError(t, e.do("PUT", "/api/v1/users/"+u.ID+"/password", e.acme[registry.RoleAdmin], map[string]string{"password": "short"}), http.StatusBadRequest, "invalid")
		wantError(t, e.do("PUT", "/api/v1/users/"+u.ID+"/password", e.acme[registry.RoleAdmin], map[string]int{"password": 5}), http.StatusBadRequest, "invalid")
		if len(users.set) != 0 {
			t.Fatalf("refused resets changed a password: %v", users.set)
		}
		wantStatus(t, e.do("PUT", "/api/v1/users/"+u.ID+"/password", e.acme[registry.RoleAdmin], pw), http.StatusNoContent)
		if len(users.set) != 1 || users.set[0] != u.ID {
			t.Fatalf("reset %v, want %s", users.set, u.ID)
		}

		wantError(t, e.do("DELETE", "/api/v1/users/"+u.ID, e.globex[registry.RoleAdmin], nil), http.StatusNotFound, "not_found")
		wantStatus(t, e.do("DELETE", "/api/v1/users/"+u.ID, e.acme[registry.RoleAdmin], nil), http.StatusNoContent)
		wantError(t, e.do("DELETE", "/api/v1/users/"+u.ID, e.acme[registry.RoleAdmin], nil), http.StatusNotFound, "not_found")
	})
}

func TestUsersAPIWithoutUserStore(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk)
		wantError(t, e.do("POST", "/api/v1/users", e.acme[registry.RoleAdmin], map[string]string{"name": "anna", "password": "correct horse battery", "role": "viewer"}),
			http.StatusServiceUnavailable, "unavailable")
	})
}
