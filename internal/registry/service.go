package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// OperatorOrg is the id of the operator organization Bootstrap creates.
const OperatorOrg = "operator"

// DefaultRetentionDays applies when an organization is created without one.
const DefaultRetentionDays = 30

// MaxRetentionDays bounds telemetry retention (ten years).
const MaxRetentionDays = 3650

// Service is the registry API used by the gateway, the REST API and the
// edge. It is safe for concurrent use.
type Service struct {
	store Store
	log   *slog.Logger
	rand  io.Reader
	auth  authCache
	// deviceChanged is told after a device's record changed (OnDeviceChanged).
	deviceChanged atomic.Pointer[func(org, device string)]
	// templateExists checks device templates (CheckTemplatesWith).
	templateExists atomic.Pointer[TemplateExists]
}

// authCacheTTL bounds how long a token stays accepted by a hub process after
// another process deleted it; a deletion through this process is immediate.
const authCacheTTL = 10 * time.Second

// authCache spares the database a token lookup on every API request.
type authCache struct {
	mu      sync.Mutex
	entries map[string]authEntry // by secret hash
}

type authEntry struct {
	p  Principal
	at time.Time
}

func (c *authCache) get(hash string, now time.Time) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || now.Sub(e.at) > authCacheTTL {
		return Principal{}, false
	}
	return e.p, true
}

func (c *authCache) put(hash string, p Principal, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= 10_000 {
		c.entries = map[string]authEntry{} // bounded: start over rather than grow
	}
	c.entries[hash] = authEntry{p: p, at: now}
}

func (c *authCache) forgetToken(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.entries {
		if e.p.TokenID == id {
			delete(c.entries, h)
		}
	}
}

// New returns a Service over store. A nil logger discards logs.
func New(store Store, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, log: logger, rand: rand.Reader}
}

// OnDeviceChanged sets fn to be told, after the change is stored, that a
// device was updated, had a key regenerated or was deleted; the hub uses it
// to end connections whose credential no longer holds. fn must not block.
func (s *Service) OnDeviceChanged(fn func(org, device string)) {
	s.deviceChanged.Store(&fn)
}

func (s *Service) changed(org, device string) {
	if fn := s.deviceChanged.Load(); fn != nil && *fn != nil {
		(*fn)(org, device)
	}
}

// now is truncated to microseconds, the precision both databases keep, so a
// value returned by a create equals the one read back later.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// Bootstrap creates the operator organization and, when it has no admin
// token yet, an admin token with adminSecret (a random "sft_…" secret when
// empty). The secret is returned only when the token was created now, so a
// second Bootstrap returns "".
func (s *Service) Bootstrap(ctx context.Context, adminSecret string) (Org, string, error) {
	if adminSecret != "" && len(adminSecret) < MinAdminSecretLen {
		return Org{}, "", fmt.Errorf("the admin secret is too short (%d characters): use at least %d, or leave it empty to generate one: %w", len(adminSecret), MinAdminSecretLen, ErrInvalid)
	}
	secret := adminSecret
	if secret == "" {
		var err error
		if secret, err = newSecret(s.rand); err != nil {
			return Org{}, "", err
		}
	}
	id, err := newID(s.rand, "tok_")
	if err != nil {
		return Org{}, "", err
	}
	t := now()
	op := Org{ID: OperatorOrg, Name: "Operator", RetentionDays: DefaultRetentionDays, Retention: days(DefaultRetentionDays), CreatedAt: t}
	tok := Token{ID: id, Org: OperatorOrg, Name: "bootstrap admin", Role: RoleAdmin, CreatedAt: t}
	org, created, err := s.store.Bootstrap(ctx, op, tok, HashSecret(secret))
	if err != nil {
		return Org{}, "", fmt.Errorf("bootstrap the registry: %w", err)
	}
	if !created {
		return org, "", nil
	}
	s.log.Info("registry bootstrapped: created the operator admin token", "org", org.ID, "token", id)
	return org, secret, nil
}

// Authenticate resolves an API token secret to its principal.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if secret == "" {
		return Principal{}, fmt.Errorf("no API token was given: send it as a bearer token: %w", ErrUnauthorized)
	}
	hash, at := HashSecret(secret), time.Now()
	if p, ok := s.auth.get(hash, at); ok {
		return p, nil
	}
	t, o, err := s.store.TokenByHash(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, fmt.Errorf("the API token is not valid (it may have been deleted): ask an administrator for a new one: %w", ErrUnauthorized)
	}
	if err != nil {
		return Principal{}, err
	}
	p := Principal{TokenID: t.ID, Org: t.Org, Role: t.Role, Operator: o.Parent == ""}
	s.auth.put(hash, p, at)
	return p, nil
}

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

func checkRetention(d int) error {
	if d < 1 || d > MaxRetentionDays {
		return fmt.Errorf("retention of %d days is invalid: use 1 to %d days: %w", d, MaxRetentionDays, ErrInvalid)
	}
	return nil
}

// CreateOrg creates a customer organization under parent, which must be the
// operator organization. The id is o.ID, or a slug of o.Name when empty
// (with a random suffix if that slug is taken).
func (s *Service) CreateOrg(ctx context.Context, parent string, o Org) (Org, error) {
	if parent == "" {
		return Org{}, fmt.Errorf("a parent organization is required: customer organizations are created under the operator organization: %w", ErrInvalid)
	}
	p, err := s.store.GetOrg(ctx, parent)
	if err != nil {
		return Org{}, err
	}
	if p.Parent != "" {
		return Org{}, fmt.Errorf("organization %q is a customer organization and cannot have organizations of its own: use sites to divide it: %w", parent, ErrInvalid)
	}
	if o.ID == "" && o.Name == "" {
		return Org{}, fmt.Errorf("organization name is required: %w", ErrInvalid)
	}
	if o.ID != "" {
		if err := checkOrgID(o.ID); err != nil {
			return Org{}, err
		}
	}
	if o.Name == "" {
		o.Name = o.ID
	}
	if err := checkName("organization name", o.Name); err != nil {
		return Org{}, err
	}
	if o.RetentionDays == 0 {
		o.RetentionDays = DefaultRetentionDays
	}
	if err := checkRetention(o.RetentionDays); err != nil {
		return Org{}, err
	}
	o.Parent = parent
	o.Retention = days(o.RetentionDays)
	o.CreatedAt = now()
	err = s.withID(o.ID, slug(o.Name, 50), "org", func(id string) error {
		o.ID = id
		return s.store.CreateOrg(ctx, o)
	})
	if err != nil {
		return Org{}, err
	}
	s.log.Info("organization created", "org", o.ID, "parent", parent)
	return o, nil
}

// withID runs create with id when given; otherwise with base (or fallback),
// retrying with random suffixes while the generated id is taken.
func (s *Service) withID(id, base, fallback string, create func(id string) error) error {
	if id != "" {
		return create(id)
	}
	if base == "" {
		base = fallback
	}
	cand := base
	for try := 0; ; try++ {
		err := create(cand)
		if !errors.Is(err, ErrConflict) || try == 5 {
			return err
		}
		b, rerr := randomBytes(s.rand, 3)
		if rerr != nil {
			return rerr
		}
		cand = fmt.Sprintf("%s-%x", base, b)
	}
}

// GetOrg returns one organization.
func (s *Service) GetOrg(ctx context.Context, id string) (Org, error) {
	return s.store.GetOrg(ctx, id)
}

// ListOrgs returns the children of parent, by id.
func (s *Service) ListOrgs(ctx context.Context, parent string) ([]Org, error) {
	if _, err := s.store.GetOrg(ctx, parent); err != nil {
		return nil, err
	}
	return s.store.ListOrgs(ctx, parent)
}

// SetRetention sets how many days of telemetry the organization keeps.
func (s *Service) SetRetention(ctx context.Context, id string, d int) (Org, error) {
	if err := checkRetention(d); err != nil {
		return Org{}, err
	}
	o, err := s.store.SetRetention(ctx, id, d)
	if err != nil {
		return Org{}, err
	}
	s.log.Info("organization retention changed", "org", id, "days", d)
	return o, nil
}

// CreateToken creates an API token; its Secret is returned only here.
func (s *Service) CreateToken(ctx context.Context, org, name string, role Role) (Token, error) {
	if err := checkName("token name", name); err != nil {
		return Token{}, err
	}
	if err := checkRole(role); err != nil {
		return Token{}, err
	}
	if _, err := s.store.GetOrg(ctx, org); err != nil {
		return Token{}, err
	}
	secret, err := newSecret(s.rand)
	if err != nil {
		return Token{}, err
	}
	id, err := newID(s.rand, "tok_")
	if err != nil {
		return Token{}, err
	}
	t := Token{ID: id, Org: org, Name: name, Role: role, CreatedAt: now()}
	if err := s.store.CreateToken(ctx, t, HashSecret(secret)); err != nil {
		return Token{}, err
	}
	s.log.Info("API token created", "org", org, "token", id, "role", role)
	t.Secret = secret
	return t, nil
}

// ListTokens returns the org's tokens without secrets.
func (s *Service) ListTokens(ctx context.Context, org string) ([]Token, error) {
	return s.store.ListTokens(ctx, org)
}

// DeleteToken revokes a token of org.
func (s *Service) DeleteToken(ctx context.Context, org, id string) error {
	if err := s.store.DeleteToken(ctx, org, id); err != nil {
		return err
	}
	s.auth.forgetToken(id)
	s.log.Info("API token deleted", "org", org, "token", id)
	return nil
}

// CreateSite creates a site in org. The id is s.ID, or a slug of s.Name.
func (s *Service) CreateSite(ctx context.Context, org string, st Site) (Site, error) {
	if st.ID == "" && st.Name == "" {
		return Site{}, fmt.Errorf("site name is required: %w", ErrInvalid)
	}
	if st.ID != "" {
		if err := checkID("site id", st.ID); err != nil {
			return Site{}, err
		}
	}
	if st.Name == "" {
		st.Name = st.ID
	}
	if err := checkName("site name", st.Name); err != nil {
		return Site{}, err
	}
	if err := checkTags(st.Tags); err != nil {
		return Site{}, err
	}
	if _, err := s.store.GetOrg(ctx, org); err != nil {
		return Site{}, err
	}
	st.Org = org
	st.Tags = copyTags(st.Tags)
	st.CreatedAt = now()
	err := s.withID(st.ID, slug(st.Name, 64), "site", func(id string) error {
		st.ID = id
		return s.store.CreateSite(ctx, st)
	})
	if err != nil {
		return Site{}, err
	}
	return st, nil
}

// GetSite returns a site of org.
func (s *Service) GetSite(ctx context.Context, org, id string) (Site, error) {
	return s.store.GetSite(ctx, org, id)
}

// ListSites returns the sites of org, by id.
func (s *Service) ListSites(ctx context.Context, org string) ([]Site, error) {
	return s.store.ListSites(ctx, org)
}

// DeleteSite deletes a site of org; ErrConflict while devices, enrollment
// groups or CA certificates still reference it.
func (s *Service) DeleteSite(ctx context.Context, org, id string) error {
	return s.store.DeleteSite(ctx, org, id)
}
