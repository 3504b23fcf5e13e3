package apitest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Registry keeps the registry contract in memory: tenancy (another
// organization's ids are not found), hub-wide unique device ids, generated
// keys, paging, per-row CSV import and sentinel errors wrapped with %w.
type Registry struct {
	mu      sync.Mutex
	now     func() time.Time
	orgs    map[string]registry.Org
	tokens  map[string]tokenRec // by token id
	secrets map[string]string   // SHA-256 of the secret -> token id
	sites   map[string]registry.Site
	devices map[string]registry.Device // hub-wide by id
	groups  map[string]registry.EnrollmentGroup
	cas     map[string]registry.CACert
	seq     int
}

type tokenRec struct {
	registry.Token
	hash string
}

// NewRegistry returns an empty registry; call Bootstrap first.
func NewRegistry() *Registry {
	return &Registry{
		now:     func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
		orgs:    map[string]registry.Org{},
		tokens:  map[string]tokenRec{},
		secrets: map[string]string{},
		sites:   map[string]registry.Site{},
		devices: map[string]registry.Device{},
		groups:  map[string]registry.EnrollmentGroup{},
		cas:     map[string]registry.CACert{},
	}
}

var (
	deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	slugRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	thumbRE    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

func key(org, id string) string { return org + "\x00" + id }

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func randomKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimSuffix(b.String(), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// Bootstrap creates the operator organization and, on first call, an admin
// token with adminSecret (random when empty). Later calls return "".
func (r *Registry) Bootstrap(ctx context.Context, adminSecret string) (registry.Org, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op, ok := r.orgs["operator"]
	if !ok {
		op = registry.Org{ID: "operator", Name: "Operator", RetentionDays: 30, CreatedAt: r.now()}
		r.orgs[op.ID] = op
	}
	for _, t := range r.tokens {
		if t.Org == op.ID && t.Role == registry.RoleAdmin {
			return op, "", nil
		}
	}
	if adminSecret == "" {
		adminSecret = "sft_" + randomHex(16)
	}
	r.addToken(op.ID, "bootstrap admin", registry.RoleAdmin, adminSecret)
	return op, adminSecret, nil
}

func (r *Registry) addToken(org, name string, role registry.Role, secret string) registry.Token {
	r.seq++
	t := registry.Token{ID: fmt.Sprintf("tok_%04d", r.seq), Org: org, Name: name, Role: role, CreatedAt: r.now()}
	h := hashSecret(secret)
	r.tokens[t.ID] = tokenRec{Token: t, hash: h}
	r.secrets[h] = t.ID
	t.Secret = secret
	return t
}

func (r *Registry) Authenticate(ctx context.Context, secret string) (registry.Principal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.secrets[hashSecret(secret)]
	if !ok {
		return registry.Principal{}, fmt.Errorf("unknown API token: %w", registry.ErrUnauthorized)
	}
	t := r.tokens[id]
	o := r.orgs[t.Org]
	return registry.Principal{TokenID: t.ID, Org: t.Org, Role: t.Role, Operator: o.Parent == ""}, nil
}

func (r *Registry) CreateOrg(ctx context.Context, parent string, o registry.Org) (registry.Org, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.orgs[parent]
	if !ok {
		return registry.Org{}, fmt.Errorf("parent organization %q not found: %w", parent, registry.ErrNotFound)
	}
	if p.Parent != "" {
		return registry.Org{}, fmt.Errorf("organization %q is a customer organization and cannot have organizations of its own: %w", parent, registry.ErrInvalid)
	}
	if strings.TrimSpace(o.Name) == "" {
		return registry.Org{}, fmt.Errorf("organization name is empty: %w", registry.ErrInvalid)
	}
	if o.ID == "" {
		o.ID = slug(o.Name)
	}
	if !slugRE.MatchString(o.ID) {
		return registry.Org{}, fmt.Errorf("organization id %q must be lower-case letters, digits and dashes: %w", o.ID, registry.ErrInvalid)
	}
	if _, ok := r.orgs[o.ID]; ok {
		return registry.Org{}, fmt.Errorf("organization %q already exists: %w", o.ID, registry.ErrConflict)
	}
	if o.RetentionDays == 0 {
		o.RetentionDays = 30
	}
	if o.RetentionDays < 0 {
		return registry.Org{}, fmt.Errorf("retentionDays must be at least 1: %w", registry.ErrInvalid)
	}
	o.Parent, o.CreatedAt = parent, r.now()
	r.orgs[o.ID] = o
	return o, nil
}

func (r *Registry) GetOrg(ctx context.Context, id string) (registry.Org, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.orgs[id]
	if !ok {
		return registry.Org{}, fmt.Errorf("organization %q not found: %w", id, registry.ErrNotFound)
	}
	return o, nil
}

func (r *Registry) ListOrgs(ctx context.Context, parent string) ([]registry.Org, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registry.Org
	for _, o := range r.orgs {
		if o.Parent == parent && parent != "" {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *Registry) SetRetention(ctx context.Context, id string, days int) (registry.Org, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.orgs[id]
	if !ok {
		return registry.Org{}, fmt.Errorf("organization %q not found: %w", id, registry.ErrNotFound)
	}
	if days < 1 {
		return registry.Org{}, fmt.Errorf("retention must be at least 1 day, not %d: %w", days, registry.ErrInvalid)
	}
	o.RetentionDays = days
	r.orgs[id] = o
	return o, nil
}

func (r *Registry) CreateToken(ctx context.Context, org, name string, role registry.Role) (registry.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.orgs[org]; !ok {
		return registry.Token{}, fmt.Errorf("organization %q not found: %w", org, registry.ErrNotFound)
	}
	switch role {
	case registry.RoleAdmin, registry.RoleOperator, registry.RoleViewer:
	default:
		return registry.Token{}, fmt.Errorf("role must be admin, operator or viewer, not %q: %w", role, registry.ErrInvalid)
	}
	return r.addToken(org, name, role, "sft_"+randomHex(16)), nil
}

func (r *Registry) ListTokens(ctx context.Context, org string) ([]registry.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registry.Token
	for _, t := range r.tokens {
		if t.Org == org {
			out = append(out, t.Token)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *Registry) DeleteToken(ctx context.Context, org, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tokens[id]
	if !ok || t.Org != org {
		return fmt.Errorf("token %q not found: %w", id, registry.ErrNotFound)
	}
	delete(r.tokens, id)
	delete(r.secrets, t.hash)
	return nil
}

func (r *Registry) CreateSite(ctx context.Context, org string, s registry.Site) (registry.Site, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.TrimSpace(s.Name) == "" {
		return registry.Site{}, fmt.Errorf("site name is empty: %w", registry.ErrInvalid)
	}
	if s.ID == "" {
		s.ID = slug(s.Name)
	}
	if !slugRE.MatchString(s.ID) {
		return registry.Site{}, fmt.Errorf("site id %q must be lower-case letters, digits and dashes: %w", s.ID, registry.ErrInvalid)
	}
	if _, ok := r.sites[key(org, s.ID)]; ok {
		return registry.Site{}, fmt.Errorf("site %q already exists: %w", s.ID, registry.ErrConflict)
	}
	s.Org, s.CreatedAt = org, r.now()
	r.sites[key(org, s.ID)] = s
	return s, nil
}

func (r *Registry) GetSite(ctx context.Context, org, id string) (registry.Site, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sites[key(org, id)]
	if !ok {
		return registry.Site{}, fmt.Errorf("site %q not found: %w", id, registry.ErrNotFound)
	}
	return s, nil
}

func (r *Registry) ListSites(ctx context.Context, org string) ([]registry.Site, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registry.Site
	for _, s := range r.sites {
		if s.Org == org {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *Registry) DeleteSite(ctx context.Context, org, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sites[key(org, id)]; !ok {
		return fmt.Errorf("site %q not found: %w", id, registry.ErrNotFound)
	}
	n := 0
	for _, d := range r.devices {
		if d.Org == org && d.Site == id {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("site %q still has %d devices; move or delete them first: %w", id, n, registry.ErrConflict)
	}
	delete(r.sites, key(org, id))
	return nil
}

// checkDevice validates a device for org; the caller holds the lock.
func (r *Registry) checkDevice(org string, d *registry.Device) error {
	if !deviceIDRE.MatchString(d.ID) {
		return fmt.Errorf("device id %q must be 1 to 128 letters, digits or . _ : -: %w", d.ID, registry.ErrInvalid)
	}
	if d.Site != "" {
		if _, ok := r.sites[key(org, d.Site)]; !ok {
			return fmt.Errorf("site %q not found; create it first: %w", d.Site, registry.ErrInvalid)
		}
	}
	switch d.Auth {
	case "":
		d.Auth = registry.AuthSAS
	case registry.AuthSAS, registry.AuthX509CA:
	case registry.AuthX509Self:
		if !thumbRE.MatchString(d.Thumbprint) {
			return fmt.Errorf("auth x509_self needs the certificate's SHA-256 thumbprint (64 hex digits): %w", registry.ErrInvalid)
		}
	default:
		return fmt.Errorf("auth must be sas, x509_self or x509_ca, not %q: %w", d.Auth, registry.ErrInvalid)
	}
	return nil
}

func (r *Registry) createDevice(org string, d registry.Device) (registry.Device, error) {
	if err := r.checkDevice(org, &d); err != nil {
		return registry.Device{}, err
	}
	if _, ok := r.devices[d.ID]; ok {
		return registry.Device{}, fmt.Errorf("device %q already exists: %w", d.ID, registry.ErrConflict)
	}
	if d.Auth == registry.AuthSAS {
		if d.PrimaryKey == "" {
			d.PrimaryKey = randomKey()
		}
		if d.SecondaryKey == "" {
			d.SecondaryKey = randomKey()
		}
	}
	d.Org = org
	d.CreatedAt = r.now()
	d.UpdatedAt = d.CreatedAt
	r.devices[d.ID] = d
	return d, nil
}

func (r *Registry) CreateDevice(ctx context.Context, org string, d registry.Device) (registry.Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.createDevice(org, d)
}

func (r *Registry) GetDevice(ctx context.Context, org, id string) (registry.Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[id]
	if !ok || d.Org != org {
		return registry.Device{}, fmt.Errorf("device %q not found: %w", id, registry.ErrNotFound)
	}
	return d, nil
}

func (r *Registry) ListDevices(ctx context.Context, org string, f registry.DeviceFilter) ([]registry.Device, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	if limit > 1000 {
		return nil, "", fmt.Errorf("limit must be at most 1000: %w", registry.ErrInvalid)
	}
	var all []registry.Device
	for _, d := range r.devices {
		if d.Org != org || (f.Site != "" && d.Site != f.Site) || (f.Template != "" && d.Template != f.Template) || d.ID <= f.After {
			continue
		}
		match := true
		for k, v := range f.Tag {
			if d.Tags[k] != v {
				match = false
			}
		}
		if match {
			all = append(all, d)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	if len(all) > limit {
		return all[:limit], all[limit-1].ID, nil
	}
	return all, "", nil
}

func (r *Registry) UpdateDevice(ctx context.Context, org, id string, p registry.DevicePatch) (registry.Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[id]
	if !ok || d.Org != org {
		return registry.Device{}, fmt.Errorf("device %q not found: %w", id, registry.ErrNotFound)
	}
	if p.Site != nil {
		d.Site = *p.Site
	}
	if p.Template != nil {
		d.Template = *p.Template
	}
	if p.Tags != nil {
		d.Tags = *p.Tags
	}
	if p.Disabled != nil {
		d.Disabled = *p.Disabled
	}
	if err := r.checkDevice(org, &d); err != nil {
		return registry.Device{}, err
	}
	d.UpdatedAt = r.now()
	r.devices[id] = d
	return d, nil
}

func (r *Registry) DeleteDevice(ctx context.Context, org, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[id]
	if !ok || d.Org != org {
		return fmt.Errorf("device %q not found: %w", id, registry.ErrNotFound)
	}
	delete(r.devices, id)
	return nil
}

func (r *Registry) RegenerateKey(ctx context.Context, org, id, which string) (registry.Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[id]
	if !ok || d.Org != org {
		return registry.Device{}, fmt.Errorf("device %q not found: %w", id, registry.ErrNotFound)
	}
	if d.Auth != registry.AuthSAS {
		return registry.Device{}, fmt.Errorf("device %q authenticates with certificates and has no keys: %w", id, registry.ErrInvalid)
	}
	switch which {
	case "primary":
		d.PrimaryKey = randomKey()
	case "secondary":
		d.SecondaryKey = randomKey()
	default:
		return registry.Device{}, fmt.Errorf("key must be primary or secondary, not %q: %w", which, registry.ErrInvalid)
	}
	d.UpdatedAt = r.now()
	r.devices[id] = d
	return d, nil
}

// ImportCSV creates one device per row; each row succeeds or fails alone.
func (r *Registry) ImportCSV(ctx context.Context, org string, in io.Reader, progress func(done, total int)) (registry.ImportReport, error) {
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return registry.ImportReport{}, fmt.Errorf("read the CSV header: %v: %w", err, registry.ErrInvalid)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch h {
		case "id", "site", "template", "tags", "auth", "thumbprint":
			col[h] = i
		default:
			return registry.ImportReport{}, fmt.Errorf("unknown CSV column %q; the columns are id,site,template,tags,auth,thumbprint: %w", h, registry.ErrInvalid)
		}
	}
	if _, ok := col["id"]; !ok {
		return registry.ImportReport{}, fmt.Errorf("the CSV header has no id column: %w", registry.ErrInvalid)
	}
	type row struct {
		line   int
		fields []string
		err    error
	}
	var rows []row
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return registry.ImportReport{}, fmt.Errorf("read the CSV file: %w", err)
			}
			rows = append(rows, row{line: pe.Line, err: fmt.Errorf("%v: %w", pe, registry.ErrInvalid)})
			continue
		}
		line, _ := cr.FieldPos(0)
		rows = append(rows, row{line: line, fields: rec})
	}
	rep := registry.ImportReport{Rows: []registry.ImportRow{}}
	for i, rw := range rows {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		get := func(name string) string {
			if c, ok := col[name]; ok && c < len(rw.fields) {
				return strings.TrimSpace(rw.fields[c])
			}
			return ""
		}
		out := registry.ImportRow{Line: rw.line, ID: get("id")}
		err := rw.err
		if err == nil {
			var tags map[string]string
			tags, err = parseTags(get("tags"))
			if err == nil {
				r.mu.Lock()
				_, err = r.createDevice(org, registry.Device{ID: out.ID, Site: get("site"), Template: get("template"),
					Tags: tags, Auth: registry.AuthKind(get("auth")), Thumbprint: get("thumbprint")})
				r.mu.Unlock()
			}
		}
		if err != nil {
			out.Error = err.Error()
			rep.Failed++
		} else {
			rep.Created++
		}
		rep.Rows = append(rep.Rows, out)
		if progress != nil {
			progress(i+1, len(rows))
		}
	}
	return rep, nil
}

func parseTags(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("tag %q must be key=value: %w", kv, registry.ErrInvalid)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func (r *Registry) CreateEnrollmentGroup(ctx context.Context, org string, g registry.EnrollmentGroup) (registry.EnrollmentGroup, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g.ID == "" {
		g.ID = "grp-" + randomHex(4)
	}
	if !slugRE.MatchString(g.ID) {
		return registry.EnrollmentGroup{}, fmt.Errorf("enrollment group id %q must be lower-case letters, digits and dashes: %w", g.ID, registry.ErrInvalid)
	}
	if _, ok := r.groups[key(org, g.ID)]; ok {
		return registry.EnrollmentGroup{}, fmt.Errorf("enrollment group %q already exists: %w", g.ID, registry.ErrConflict)
	}
	if g.Site != "" {
		if _, ok := r.sites[key(org, g.Site)]; !ok {
			return registry.EnrollmentGroup{}, fmt.Errorf("site %q not found; create it first: %w", g.Site, registry.ErrInvalid)
		}
	}
	for _, k := range []*string{&g.PrimaryKey, &g.SecondaryKey} {
		if *k == "" {
			*k = randomKey()
		} else if _, err := base64.StdEncoding.DecodeString(*k); err != nil {
			return registry.EnrollmentGroup{}, fmt.Errorf("enrollment group keys must be base64: %w", registry.ErrInvalid)
		}
	}
	g.Org, g.CreatedAt = org, r.now()
	r.groups[key(org, g.ID)] = g
	return g, nil
}

func (r *Registry) GetEnrollmentGroup(ctx context.Context, org, id string) (registry.EnrollmentGroup, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.groups[key(org, id)]
	if !ok {
		return registry.EnrollmentGroup{}, fmt.Errorf("enrollment group %q not found: %w", id, registry.ErrNotFound)
	}
	return g, nil
}

func (r *Registry) ListEnrollmentGroups(ctx context.Context, org string) ([]registry.EnrollmentGroup, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registry.EnrollmentGroup
	for _, g := range r.groups {
		if g.Org == org {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *Registry) DeleteEnrollmentGroup(ctx context.Context, org, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.groups[key(org, id)]; !ok {
		return fmt.Errorf("enrollment group %q not found: %w", id, registry.ErrNotFound)
	}
	delete(r.groups, key(org, id))
	return nil
}

func (r *Registry) CreateCACert(ctx context.Context, org string, c registry.CACert) (registry.CACert, error) {
	block, _ := pem.Decode([]byte(c.PEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return registry.CACert{}, fmt.Errorf("pem holds no CERTIFICATE block: %w", registry.ErrInvalid)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return registry.CACert{}, fmt.Errorf("the certificate cannot be parsed: %v: %w", err, registry.ErrInvalid)
	}
	if !cert.IsCA {
		return registry.CACert{}, fmt.Errorf("the certificate is not a CA certificate (basic constraints CA:FALSE): %w", registry.ErrInvalid)
	}
	sum := sha256.Sum256(block.Bytes)
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.ID == "" {
		c.ID = "ca-" + randomHex(4)
	}
	if _, ok := r.cas[key(org, c.ID)]; ok {
		return registry.CACert{}, fmt.Errorf("CA certificate %q already exists: %w", c.ID, registry.ErrConflict)
	}
	c.Org, c.Thumbprint, c.CreatedAt = org, hex.EncodeToString(sum[:]), r.now()
	r.cas[key(org, c.ID)] = c
	return c, nil
}

func (r *Registry) ListCACerts(ctx context.Context, org string) ([]registry.CACert, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registry.CACert
	for _, c := range r.cas {
		if c.Org == org {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *Registry) DeleteCACert(ctx context.Context, org, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cas[key(org, id)]; !ok {
		return fmt.Errorf("CA certificate %q not found: %w", id, registry.ErrNotFound)
	}
	delete(r.cas, key(org, id))
	return nil
}
