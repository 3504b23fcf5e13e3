package web

import (
	"errors"
	"net/http"

	"github.com/shopfloor/shopfloor/internal/registry"
)

type accountData struct {
	Flash, Error string
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	d := accountData{}
	if r.URL.Query().Get("changed") != "" {
		d.Flash = "Password changed. Your other browsers were signed out."
	}
	s.render(w, r, http.StatusOK, "account", d)
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if v.session.user == "" || s.deps.Users == nil {
		s.problem(w, r, http.StatusBadRequest, "You signed in with an API token, which has no password to change.")
		return
	}
	refuse := func(msg string) {
		s.render(w, r, http.StatusBadRequest, "account", accountData{Error: msg})
	}
	if r.PostFormValue("password") != r.PostFormValue("password2") {
		refuse("The two new passwords differ; type them again.")
		return
	}
	err := s.deps.Users.ChangePassword(r.Context(), v.session.user, r.PostFormValue("current"), r.PostFormValue("password"), v.session.id)
	switch {
	case errors.Is(err, registry.ErrUnauthorized), errors.Is(err, registry.ErrInvalid):
		refuse(sentence(err))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.sessions.dropUser(v.session.user, v.session.id)
	s.log.Info("console password changed", "org", v.org, "user", v.User)
	http.Redirect(w, r, "/account?changed=1", http.StatusSeeOther)
}
