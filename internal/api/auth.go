package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// OrgHeader names the organization an operator-organization token acts on;
// the query parameter ?org= does the same.
const OrgHeader = "X-Shopfloor-Org"

type ctxKey int

const (
	principalKey ctxKey = iota
	orgKey
	infoKey
)

// PrincipalFrom returns the authenticated caller the API put in the request
// context.
func PrincipalFrom(ctx context.Context) (registry.Principal, bool) {
	p, ok := ctx.Value(principalKey).(registry.Principal)
	return p, ok
}

// OrgFromRequest returns the organization an authenticated request acts on:
// the token's own, or the customer organization an operator token named.
// Handlers mounted behind the API's authentication (the Prometheus API) use
// it to scope their data.
func OrgFromRequest(r *http.Request) (string, error) {
	org, ok := r.Context().Value(orgKey).(string)
	if !ok || org == "" {
		return "", fmt.Errorf("the request was not authenticated by the API: %w", registry.ErrUnauthorized)
	}
	return org, nil
}

func orgOf(r *http.Request) string {
	org, _ := r.Context().Value(orgKey).(string)
	return org
}

func principalOf(r *http.Request) registry.Principal {
	p, _ := PrincipalFrom(r.Context())
	return p
}

func roleRank(r registry.Role) int {
	switch r {
	case registry.RoleViewer:
		return 1
	case registry.RoleOperator:
		return 2
	case registry.RoleAdmin:
		return 3
	}
	return 0
}

// hasRole says whether the caller's role is at least min.
func hasRole(p registry.Principal, min registry.Role) bool {
	return roleRank(p.Role) >= roleRank(min)
}

// authorize authenticates the bearer token, resolves the organization the
// request acts on and checks the role. Naming an organization the token may
// not see answers 404, exactly as one that does not exist.
func (s *Server) authorize(r *http.Request, min registry.Role) (*http.Request, error) {
	secret, err := bearer(r)
	if err != nil {
		return nil, err
	}
	p, err := s.deps.Registry.Authenticate(r.Context(), secret)
	if err != nil {
		if errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrNotFound) {
			return nil, &httpError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "the API token is not valid: it is unknown, was deleted or is mistyped; ask an admin for a new token"}
		}
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	org, err := s.actingOrg(r, p)
	if err != nil {
		return nil, err
	}
	if info := infoFrom(r.Context()); info != nil {
		info.tokenID, info.org = p.TokenID, org
	}
	ctx := context.WithValue(r.Context(), principalKey, p)
	ctx = context.WithValue(ctx, orgKey, org)
	r = r.WithContext(ctx)
	if !hasRole(p, min) {
		return nil, &httpError{Status: http.StatusForbidden, Code: "forbidden",
			Message: fmt.Sprintf("this needs the %s role and your token has the %s role; ask an admin of the organization for a token with the %s role", min, p.Role, min)}
	}
	return r, nil
}

func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", &httpError{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "this request needs an API token: send the header \"Authorization: Bearer <token>\""}
	}
	scheme, secret, ok := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", &httpError{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "the Authorization header must be \"Bearer <token>\""}
	}
	return secret, nil
}

// actingOrg is the token's organization unless the request names another
// with ?org= or the X-Shopfloor-Org header, which only an operator-
// organization token may do, and only for its customer organizations.
func (s *Server) actingOrg(r *http.Request, p registry.Principal) (string, error) {
	q := strings.TrimSpace(r.URL.Query().Get("org"))
	h := strings.TrimSpace(r.Header.Get(OrgHeader))
	if q != "" && h != "" && q != h {
		return "", invalid("the request names organization %q in ?org= and %q in %s; name one", q, h, OrgHeader)
	}
	want := q
	if want == "" {
		want = h
	}
	if want == "" || want == p.Org {
		return p.Org, nil
	}
	if !p.Operator {
		return "", notFound("organization %q not found", want)
	}
	o, err := s.deps.Registry.GetOrg(r.Context(), want)
	if errors.Is(err, registry.ErrNotFound) || (err == nil && o.Parent != p.Org) {
		return "", notFound("organization %q not found", want)
	}
	if err != nil {
		return "", fmt.Errorf("look up organization %q: %w", want, err)
	}
	return o.ID, nil
}

// canSeeOrg says whether the caller may see organization o: its own, or a
// customer of its operator organization.
func canSeeOrg(p registry.Principal, o registry.Org) bool {
	return o.ID == p.Org || (p.Operator && o.Parent == p.Org)
}
