package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

const (
	sessionCookie = "sf_session"
	loginCookie   = "sf_login" // double-submit CSRF token of the sign-in form
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

// session is one signed-in browser. The cookie carries only the random id;
// the API token stays on the server and is checked again on every request,
// so deleting the token signs the browser out.
type session struct {
	id      string
	secret  string
	csrf    string
	org     string // organization the browser acts on
	expires time.Time
}

type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
	now func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) create(secret, org string) *session {
	s := &session{id: randomToken(), secret: secret, csrf: randomToken(), org: org, expires: ss.now().Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for id, o := range ss.m { // drop expired sessions while we hold the lock
		if now.After(o.expires) {
			delete(ss.m, id)
		}
	}
	ss.m[s.id] = s
	return s
}

func (ss *sessions) get(id string) (session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return session{}, false
	}
	now := ss.now()
	if now.After(s.expires) {
		delete(ss.m, id)
		return session{}, false
	}
	s.expires = now.Add(ss.ttl)
	return *s, true
}

func (ss *sessions) setOrg(id, org string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		s.org = org
	}
}

func (ss *sessions) drop(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// viewer is the signed-in caller of one request.
type viewer struct {
	session
	P       registry.Principal
	Org     registry.Org
	Orgs    []registry.Org // organizations the caller may switch to (operators)
	CanEdit bool           // operator or admin
}

type viewerKey struct{}

func viewerOf(r *http.Request) *viewer {
	v, _ := r.Context().Value(viewerKey{}).(*viewer)
	return v
}

func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil}
}

// authed wraps a handler that needs a signed-in browser: it resolves the
// session, re-authenticates its token and, for every method other than GET
// and HEAD, checks the CSRF token and that the role may change things.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.resolve(r)
		if err != nil {
			if errors.Is(err, registry.ErrUnauthorized) {
				s.toLogin(w, r)
				return
			}
			s.fail(w, r, err)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			got := r.Header.Get(csrfHeader)
			if got == "" {
				got = r.PostFormValue(csrfField)
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(v.csrf)) != 1 {
				s.problem(w, r, http.StatusForbidden, "The form had expired or did not come from this console. Reload the page and try again.")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)))
	}
}

// edit is authed for handlers that change something: viewers get 403.
func (s *Server) edit(h http.HandlerFunc) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request) {
		v := viewerOf(r)
		if !v.CanEdit {
			s.problem(w, r, http.StatusForbidden, "Your token has the "+string(v.P.Role)+" role, which can only read. Ask an admin of the organization for an operator token to change things.")
			return
		}
		h(w, r)
	})
}

func (s *Server) toLogin(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("HX-Redirect", "/login")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodGet {
		http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) resolve(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, registry.ErrUnauthorized
	}
	sess, ok := s.sessions.get(c.Value)
	if !ok {
		return nil, registry.ErrUnauthorized
	}
	p, err := s.deps.Registry.Authenticate(r.Context(), sess.secret)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrUnauthorized) {
			s.sessions.drop(sess.id)
			return nil, registry.ErrUnauthorized
		}
		return nil, err
	}
	v := &viewer{session: sess, P: p, CanEdit: p.Role == registry.RoleOperator || p.Role == registry.RoleAdmin}
	org, err := s.deps.Registry.GetOrg(r.Context(), sess.org)
	if err != nil || (org.ID != p.Org && !(p.Operator && org.Parent == p.Org)) {
		// The chosen customer organization is gone: fall back to the token's own.
		if org, err = s.deps.Registry.GetOrg(r.Context(), p.Org); err != nil {
			return nil, err
		}
		s.sessions.setOrg(sess.id, org.ID)
	}
	v.Org = org
	v.org = org.ID
	if p.Operator {
		own, err := s.deps.Registry.GetOrg(r.Context(), p.Org)
		if err != nil {
			return nil, err
		}
		kids, err := s.deps.Registry.ListOrgs(r.Context(), p.Org)
		if err != nil {
			return nil, err
		}
		v.Orgs = append([]registry.Org{own}, kids...)
	}
	return v, nil
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	// Reuse the browser's sign-in token: two tabs (or a background request
	// redirected here) must not invalidate each other's form.
	tok := ""
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == 43 {
		tok = c.Value
	} else {
		tok = randomToken()
	}
	http.SetCookie(w, cookie(r, loginCookie, tok, 3600))
	s.render(w, r, http.StatusOK, "login", map[string]any{"LoginCSRF": tok, "Next": safeNext(r.FormValue("next"))})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string) {
		tok := randomToken()
		http.SetCookie(w, cookie(r, loginCookie, tok, 3600))
		s.render(w, r, status, "login", map[string]any{"LoginCSRF": tok, "Error": msg, "Next": safeNext(r.PostFormValue("next"))})
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue(csrfField))) != 1 {
		fail(http.StatusForbidden, "The sign-in form had expired. Try again.")
		return
	}
	if r.PostFormValue("user") != "" || r.PostFormValue("password") != "" {
		fail(http.StatusBadRequest, "Sign-in with a user name and password is not available on this hub yet. Sign in with an API token (shopfloor token create).")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("token"))
	if secret == "" {
		fail(http.StatusBadRequest, "Enter an API token.")
		return
	}
	p, err := s.deps.Registry.Authenticate(r.Context(), secret)
	if err != nil {
		if errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrNotFound) {
			fail(http.StatusUnauthorized, "That API token is not valid: it is unknown, was deleted or is mistyped. Ask an admin for a new token.")
			return
		}
		s.fail(w, r, err)
		return
	}
	sess := s.sessions.create(secret, p.Org)
	http.SetCookie(w, cookie(r, loginCookie, "", -1))
	http.SetCookie(w, cookie(r, sessionCookie, sess.id, 0))
	s.log.Info("console sign-in", "org", p.Org, "token", p.TokenID, "role", p.Role)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.sessions.drop(viewerOf(r).id)
	http.SetCookie(w, cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// switchOrg changes the organization the browser acts on; only an operator
// organization's token may name its customers. Reading another org is not a
// change, so viewers may switch too.
func (s *Server) switchOrg(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	want := r.PostFormValue("org")
	for _, o := range v.Orgs {
		if o.ID == want {
			s.sessions.setOrg(v.id, want)
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
	}
	s.problem(w, r, http.StatusNotFound, "Organization "+want+" was not found or your token may not see it.")
}

// safeNext keeps redirects after sign-in on this site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

// CSRF is the session's synchronizer token for forms and htmx requests.
func (v *viewer) CSRF() string { return v.csrf }
