package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/users"
)

type usersData struct {
	Users       []users.User
	Error, Name string
	Role        string
	Flash       string
	Roles       []string
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request) {
	d := &usersData{}
	if r.URL.Query().Get("added") != "" {
		d.Flash = "User " + r.URL.Query().Get("added") + " added. They sign in on this console with their user name and password."
	}
	s.renderUsers(w, r, http.StatusOK, d)
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, status int, d *usersData) {
	var err error
	if d.Users, err = s.deps.Users.List(r.Context(), viewerOf(r).org); err != nil {
		s.fail(w, r, err)
		return
	}
	d.Roles = []string{string(registry.RoleViewer), string(registry.RoleOperator), string(registry.RoleAdmin)}
	if d.Role == "" {
		d.Role = string(registry.RoleViewer)
	}
	s.render(w, r, status, "users", d)
}

func (s *Server) userCreate(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	name, role := strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("role")
	if r.PostFormValue("password") != r.PostFormValue("password2") {
		s.renderUsers(w, r, http.StatusBadRequest, &usersData{Error: "The two passwords differ; type them again.", Name: name, Role: role})
		return
	}
	u, err := s.deps.Users.Create(r.Context(), v.org, name, r.PostFormValue("password"), registry.Role(role))
	if err != nil {
		if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrConflict) {
			s.renderUsers(w, r, http.StatusBadRequest, &usersData{Error: sentence(err), Name: name, Role: role})
			return
		}
		s.fail(w, r, err)
		return
	}
	s.log.Info("console user added", "org", v.org, "user", u.Name, "role", u.Role, "by", v.Who())
	http.Redirect(w, r, "/users?added="+urlQueryEscape(u.Name), http.StatusSeeOther)
}

func (s *Server) userDelete(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if err := s.deps.Users.Delete(r.Context(), v.org, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("console user deleted", "org", v.org, "user", r.PathValue("id"), "by", v.Who())
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}
