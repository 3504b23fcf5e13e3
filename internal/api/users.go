package api

import (
	"context"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// User routes: console accounts that sign in to the web console with a
// user name and password. The hub adapts internal/users to Users.

// Users manages console users. Errors wrap the registry sentinels.
type Users interface {
	CreateUser(ctx context.Context, org, name, password string, role registry.Role) (User, error)
	ListUsers(ctx context.Context, org string) ([]User, error)
	DeleteUser(ctx context.Context, org, id string) error
	// SetUserPassword resets a user's password and signs them out.
	SetUserPassword(ctx context.Context, org, id, password string) error
}

// User is a console account; its password is never returned.
type User struct {
	ID        string        `json:"id"`
	Org       string        `json:"org"`
	Name      string        `json:"name"`
	Role      registry.Role `json:"role"`
	CreatedAt time.Time     `json:"createdAt"`
}

type setPasswordRequest struct {
	Password string `json:"password"`
}

type createUserRequest struct {
	Name     string        `json:"name"`
	Password string        `json:"password"`
	Role     registry.Role `json:"role"`
}

func (s *Server) userRoutes() {
	roles := []string{"viewer", "operator", "admin"}
	userSchema := object("a console user", []string{"id", "org", "name", "role", "createdAt"}, schema{
		"id":        str("user id"),
		"org":       str("organization the user belongs to"),
		"name":      str("user name for signing in; unique on the hub"),
		"role":      strEnum("", roles...),
		"createdAt": dateTime(""),
	})
	example := User{ID: "usr_4f1c9a0b2e7d5c3a8b6e", Org: "acme", Name: "anna.k", Role: registry.RoleOperator, CreatedAt: exampleTime}
	s.add(&route{Method: "POST", Pattern: "/api/v1/users", ID: "createUser", Tag: "users", Role: registry.RoleAdmin,
		Summary: "Create a console user who signs in with a user name and password",
		Request: &content{Schema: input("a new console user", []string{"name", "password", "role"}, schema{
			"name":     schema{"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]*$", "description": "user name, unique on the hub"},
			"password": schema{"type": "string", "minLength": 10, "maxLength": 72, "description": "stored only as a bcrypt hash"},
			"role":     strEnum("viewer reads; operator also changes devices, twins, rules and alerts; admin also manages users and tokens", roles...),
		}), Example: createUserRequest{Name: "anna.k", Password: "correct horse battery", Role: registry.RoleOperator}},
		Responses: []response{{Status: 201, Description: "created", Body: &content{Schema: userSchema, Example: example}}},
		Errors:    []int{409, 503}, handle: s.createUser})
	s.add(&route{Method: "GET", Pattern: "/api/v1/users", ID: "listUsers", Tag: "users", Role: registry.RoleAdmin,
		Summary: "List the organization's console users",
		Responses: []response{{Status: 200, Description: "users", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(userSchema)}), Example: map[string]any{"items": []User{example}}}}},
		Errors: []int{503}, handle: s.listUsers})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/users/{id}", ID: "deleteUser", Tag: "users", Role: registry.RoleAdmin,
		Summary: "Delete a console user; their browsers are signed out at once", PathParams: map[string]string{"id": "user id"},
		Responses: []response{{Status: 204, Description: "deleted"}}, Errors: []int{503}, handle: s.deleteUser})
	s.add(&route{Method: "PUT", Pattern: "/api/v1/users/{id}/password", ID: "setUserPassword", Tag: "users", Role: registry.RoleAdmin,
		Summary:    "Reset a console user's password (users change their own on the console's account page); their browsers are signed out",
		PathParams: map[string]string{"id": "user id"},
		Request: &content{Schema: input("the new password", []string{"password"}, schema{
			"password": schema{"type": "string", "minLength": 10, "maxLength": 72, "description": "stored only as a bcrypt hash"},
		}), Example: setPasswordRequest{Password: "another horse battery"}},
		Responses: []response{{Status: 204, Description: "password set"}}, Errors: []int{503}, handle: s.setUserPassword})
}

func (s *Server) setUserPassword(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usersDep()
	if err != nil {
		return err
	}
	var req setPasswordRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := svc.SetUserPassword(r.Context(), orgOf(r), r.PathValue("id"), req.Password); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) usersDep() (Users, error) {
	if s.deps.Users == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "console users are not available on this hub"}
	}
	return s.deps.Users, nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usersDep()
	if err != nil {
		return err
	}
	var req createUserRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if roleRank(req.Role) == 0 {
		return invalid("field \"role\" must be viewer, operator or admin, not %q", req.Role)
	}
	u, err := svc.CreateUser(r.Context(), orgOf(r), req.Name, req.Password, req.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usersDep()
	if err != nil {
		return err
	}
	us, err := svc.ListUsers(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	if us == nil {
		us = []User{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": us})
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usersDep()
	if err != nil {
		return err
	}
	if err := svc.DeleteUser(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
