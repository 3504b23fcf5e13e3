package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/users"
)

const (
	sessionCookie = "sf_session"
	loginCookie   = "sf_login" // double-submit CSRF token of the sign-in form
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

// session is one signed-in browser. The cookie carries only the random id;
// the API token (or the user id of a password sign-in) stays on the server
// and is checked again on every request, so deleting the token or the user
// signs the browser out.
type session struct {
	id      string
	secret  string // API token of a token sign-in
	user    string // user id of a password sign-in
	csrf    string
	org     string // organization the browser acts on
	expires time.Time
	saved   time.Time // expires as last written to the store
}

// SessionStore keeps sessions across hub restarts; *users.Service
// implements it.
type SessionStore interface {
	SaveSession(ctx context.Context, s users.Session) error
	LoadSession(ctx context.Context, id string) (users.Session, bool, error)
	DeleteSession(ctx context.Context, id string) error
}

// sessions caches sessions in memory in front of the optional store.
type sessions struct {
	mu    sync.Mutex
	m     map[string]*session
	ttl   time.Duration
	now   func() time.Time
	store SessionStore // nil: memory only
}

func newSessions(ttl time.Duration, now func() time.Time, store SessionStore) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl, now: now, store: store}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) save(ctx context.Context, s *session) error {
	if ss.store == nil {
		return nil
	}
	s.saved = s.expires
	return ss.store.SaveSession(ctx, users.Session{ID: s.id, User: s.user, Secret: s.secret, CSRF: s.csrf, Org: s.org, Expires: s.expires})
}

func (ss *sessions) create(ctx context.Context, secret, user, org string) (*session, error) {
	s := &session{id: randomToken(), secret: secret, user: user, csrf: randomToken(), org: org, expires: ss.now().Add(ss.ttl)}
	if err := ss.save(ctx, s); err != nil {
		return nil, err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for id, o := range ss.m { // drop expired sessions while we hold the lock
		if now.After(o.expires) {
			delete(ss.m, id)
		}
	}
	ss.m[s.id] = s
	return s, nil
}

func (ss *sessions) get(ctx context.Context, id string) (session, bool, error) {
	ss.mu.Lock()
	s, ok := ss.m[id]
	ss.mu.Unlock()
	if !ok && ss.store != nil {
		// Not in memory: signed in before a restart, or through another hub.
		st, found, err := ss.store.LoadSession(ctx, id)
		if err != nil || !found {
			return session{}, false, err
		}
		s = &session{id: id, secret: st.Secret, user: st.User, csrf: st.CSRF, org: st.Org, expires: st.Expires, saved: st.Expires}
		ss.mu.Lock()
		ss.m[id] = s
		ss.mu.Unlock()
	} else if !ok {
		return session{}, false, nil
	}
	ss.mu.Lock()
	now := ss.now()
	if now.After(s.expires) {
		delete(ss.m, id)
		ss.mu.Unlock()
		if ss.store != nil {
			return session{}, false, ss.store.DeleteSession(ctx, id)
		}
		return session{}, false, nil
	}
	s.expires = now.Add(ss.ttl)
	// Write the longer expiry back only now and then, not on every request.
	stale := ss.store != nil && s.expires.Sub(s.saved) > ss.ttl/12
	out := *s
	ss.mu.Unlock()
	if stale {
		if err := ss.save(ctx, &out); err != nil {
			return session{}, false, err
		}
		ss.mu.Lock()
		s.saved = out.saved
		ss.mu.Unlock()
	}
	return out, true, nil
}

func (ss *sessions) setOrg(ctx context.Context, id, org string) error {
	ss.mu.Lock()
	s, ok := ss.m[id]
	if ok {
		s.org = org
	}
	var out session
	if ok {
		out = *s
	}
	ss.mu.Unlock()
	if !ok {
		return nil
	}
	return ss.save(ctx, &out)
}

// dropUser forgets the cached sessions of a user except keep; the store
// has already deleted their rows.
func (ss *sessions) dropUser(user, keep string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, s := range ss.m {
		if s.user == user && id != keep {
			delete(ss.m, id)
		}
	}
}

func (ss *sessions) drop(ctx context.Context, id string) error {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
	if ss.store != nil {
		return ss.store.DeleteSession(ctx, id)
	}
	return nil
}

// viewer is the signed-in caller of one request.
type viewer struct {
	session
	P       registry.Principal
	Org     registry.Org
	Orgs    []registry.Org // organizations the caller may switch to (operators)
	CanEdit bool           // operator or admin
	IsAdmin bool           // may manage users
	User    string         // user name of a password sign-in, "" for a token
}

// Who names the signed-in caller in alert history: the user, or the
// token id as the REST API does.
func (v *viewer) Who() string {
	if v.User != "" {
		return "user:" + v.User
	}
	return "token:" + v.P.TokenID
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
			s.problem(w, r, http.StatusForbidden, "You have the "+string(v.P.Role)+" role, which can only read. Ask an admin of the organization for the operator role to change things.")
			return
		}
		h(w, r)
	})
}

// admin is authed for the pages that manage the organization's users.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request) {
		v := viewerOf(r)
		if v.P.Role != registry.RoleAdmin {
			s.problem(w, r, http.StatusForbidden, "Only an admin of the organization manages its users; you have the "+string(v.P.Role)+" role.")
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
	ctx := r.Context()
	sess, ok, err := s.sessions.get(ctx, c.Value)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, registry.ErrUnauthorized
	}
	p, userName, err := s.principal(ctx, sess)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrUnauthorized) {
			if derr := s.sessions.drop(ctx, sess.id); derr != nil {
				s.log.Warn("console: drop session", "err", derr)
			}
			return nil, registry.ErrUnauthorized
		}
		return nil, err
	}
	v := &viewer{session: sess, P: p, User: userName, CanEdit: p.Role == registry.RoleOperator || p.Role == registry.RoleAdmin,
		IsAdmin: p.Role == registry.RoleAdmin && s.deps.Users != nil}
	org, err := s.deps.Registry.GetOrg(ctx, sess.org)
	if err != nil || (org.ID != p.Org && !(p.Operator && org.Parent == p.Org)) {
		// The chosen customer organization is gone: fall back to the caller's own.
		if org, err = s.deps.Registry.GetOrg(ctx, p.Org); err != nil {
			return nil, err
		}
		if err := s.sessions.setOrg(ctx, sess.id, org.ID); err != nil {
			return nil, err
		}
	}
	v.Org = org
	v.org = org.ID
	if p.Operator {
		own, err := s.deps.Registry.GetOrg(ctx, p.Org)
		if err != nil {
			return nil, err
		}
		kids, err := s.deps.Registry.ListOrgs(ctx, p.Org)
		if err != nil {
			return nil, err
		}
		v.Orgs = append([]registry.Org{own}, kids...)
	}
	return v, nil
}

// principal checks a session's credentials again: the API token, or that
// the user still exists (with its current role).
func (s *Server) principal(ctx context.Context, sess session) (registry.Principal, string, error) {
	if sess.user == "" {
		p, err := s.deps.Registry.Authenticate(ctx, sess.secret)
		return p, "", err
	}
	if s.deps.Users == nil {
		return registry.Principal{}, "", registry.ErrUnauthorized
	}
	u, err := s.deps.Users.Get(ctx, sess.user)
	if err != nil {
		return registry.Principal{}, "", err
	}
	own, err := s.deps.Registry.GetOrg(ctx, u.Org)
	if err != nil {
		return registry.Principal{}, "", err
	}
	return registry.Principal{Org: u.Org, Role: u.Role, Operator: own.Parent == ""}, u.Name, nil
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
	s.render(w, r, http.StatusOK, "login", map[string]any{"LoginCSRF": tok, "Next": safeNext(r.FormValue("next")), "UsersOn": s.deps.Users != nil})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string) {
		tok := randomToken()
		http.SetCookie(w, cookie(r, loginCookie, tok, 3600))
		s.render(w, r, status, "login", map[string]any{"LoginCSRF": tok, "Error": msg, "Next": safeNext(r.PostFormValue("next")),
			"UsersOn": s.deps.Users != nil, "User": r.PostFormValue("user")})
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue(csrfField))) != 1 {
		fail(http.StatusForbidden, "The sign-in form had expired. Try again.")
		return
	}
	ctx := r.Context()
	var (
		secret, userID string
		p              registry.Principal
	)
	if name := strings.TrimSpace(r.PostFormValue("user")); name != "" || r.PostFormValue("password") != "" {
		if s.deps.Users == nil {
			fail(http.StatusBadRequest, "Sign-in with a user name and password is not available on this hub. Sign in with an API token (shopfloor token create).")
			return
		}
		if name == "" || r.PostFormValue("password") == "" {
			fail(http.StatusBadRequest, "Enter both your user name and your password.")
			return
		}
		try, ok := s.reserveSignIn(r, name, fail)
		if !ok {
			return
		}
		u, err := s.deps.Users.Authenticate(ctx, name, r.PostFormValue("password"))
		if err != nil {
			if errors.Is(err, registry.ErrUnauthorized) {
				s.log.Info("console sign-in refused", "user", name, "remote", r.RemoteAddr)
				fail(http.StatusUnauthorized, "Wrong user name or password. Check both and try again, or ask an admin of your organization to reset your account.")
				return
			}
			try.aborted()
			s.fail(w, r, err)
			return
		}
		try.succeeded()
		userID, p = u.ID, registry.Principal{Org: u.Org, Role: u.Role}
	} else {
		secret = strings.TrimSpace(r.PostFormValue("token"))
		if secret == "" {
			fail(http.StatusBadRequest, "Enter a user name and password, or an API token.")
			return
		}
		try, ok := s.reserveSignIn(r, "", fail)
		if !ok {
			return
		}
		p, err = s.deps.Registry.Authenticate(ctx, secret)
		if err != nil {
			if errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrNotFound) {
				s.log.Info("console sign-in with an invalid API token refused", "remote", r.RemoteAddr)
				fail(http.StatusUnauthorized, "That API token is not valid: it is unknown, was deleted or is mistyped. Ask an admin for a new token.")
				return
			}
			try.aborted()
			s.fail(w, r, err)
			return
		}
		try.succeeded()
	}
	sess, err := s.sessions.create(ctx, secret, userID, p.Org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, cookie(r, loginCookie, "", -1))
	http.SetCookie(w, cookie(r, sessionCookie, sess.id, 0))
	s.log.Info("console sign-in", "org", p.Org, "token", p.TokenID, "user", userID, "role", p.Role)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

// reserveSignIn counts a sign-in try against the throttle before its
// password or token is checked; when a limit is reached it answers 429
// through fail and reports false.
func (s *Server) reserveSignIn(r *http.Request, name string, fail func(int, string)) (*loginAttempt, bool) {
	addr := clientAddress(r)
	try, why, wait := s.throttle.reserve(name, addr)
	minutes := int(wait.Minutes()) + 1
	switch why {
	case throttledUser:
		s.log.Warn("console sign-in throttled", "user", name, "remote", r.RemoteAddr)
		fail(http.StatusTooManyRequests, fmt.Sprintf("Too many wrong passwords for %s from this computer. Wait %d minutes and try again, or ask an admin of your organization to reset the password.", name, minutes))
		return nil, false
	case throttledAddress:
		s.log.Warn("console sign-in throttled: too many failed sign-ins from one address", "user", name, "remote", r.RemoteAddr)
		fail(http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins from this computer (%s), for any user name. Wait %d minutes and try again.", addr, minutes))
		return nil, false
	}
	return try, true
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.drop(r.Context(), viewerOf(r).id); err != nil {
		s.fail(w, r, err)
		return
	}
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
			if err := s.sessions.setOrg(r.Context(), v.id, want); err != nil {
				s.fail(w, r, err)
				return
			}
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
