package template

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/sqldb"
	"strings"
	"sync"
	"time"
)

// Config configures a Service. DB and Driver are required.
type Config struct {
	DB *sql.DB
	// Driver is the database/sql driver name: "sqlite" or "pgx".
	Driver string
	Now    func() time.Time
}

// Service stores templates and per-device violation counts.
type Service struct {
	db  *sql.DB
	d   dialect
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cached // org/id → template
	any   map[string]anyOrg // org → whether it has templates
}

// anyOrg is a HasTemplates result, kept like cached.
type anyOrg struct {
	has bool
	at  time.Time
}

// cached is a Lookup result; another hub process may change the template,
// so entries are kept only cacheTTL.
type cached struct {
	t  *Template // nil: known absent
	at time.Time
}

const cacheTTL = 30 * time.Second

type dialect struct{ dollar bool }

// q rewrites ? placeholders for PostgreSQL.
func (d dialect) q(s string) string {
	return sqldb.Rebind(d.dollar, s)
}

// New creates the tables if needed.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, fmt.Errorf("%w: a database is required", ErrConfig)
	}
	var d dialect
	switch cfg.Driver {
	case "sqlite":
	case "pgx":
		d.dollar = true
	default:
		return nil, fmt.Errorf("%w: database driver %q is not supported; use sqlite or pgx", ErrConfig, cfg.Driver)
	}
	s := &Service{db: cfg.DB, d: d, now: cfg.Now, cache: map[string]cached{}, any: map[string]anyOrg{}}
	if s.now == nil {
		s.now = time.Now
	}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS tmpl_templates (
			org TEXT NOT NULL,
			id TEXT NOT NULL,
			doc TEXT NOT NULL,
			created_ms BIGINT NOT NULL,
			updated_ms BIGINT NOT NULL,
			PRIMARY KEY (org, id))`,
		`CREATE TABLE IF NOT EXISTS tmpl_violations (
			org TEXT NOT NULL,
			device TEXT NOT NULL,
			template TEXT NOT NULL,
			telemetry BIGINT NOT NULL,
			reported BIGINT NOT NULL,
			command BIGINT NOT NULL,
			last_error TEXT NOT NULL,
			last_ms BIGINT NOT NULL,
			PRIMARY KEY (org, device))`,
	} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("create template tables: %w", err)
		}
	}
	return s, nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// Create stores a new template.
func (s *Service) Create(ctx context.Context, org string, t Template) (Template, error) {
	t.Org = org
	if err := t.Validate(); err != nil {
		return Template{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	t.CreatedAt, t.UpdatedAt = now, now
	doc, err := encode(t)
	if err != nil {
		return Template{}, err
	}
	res, err := s.db.ExecContext(ctx, s.d.q(`INSERT INTO tmpl_templates (org, id, doc, created_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`), org, t.ID, doc, ms(now), ms(now))
	if err != nil {
		return Template{}, fmt.Errorf("store template %s: %w", t.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Template{}, fmt.Errorf("store template %s: %w", t.ID, err)
	} else if n == 0 {
		return Template{}, fmt.Errorf("%w: template %q exists; delete it first or import with replace", ErrExists, t.ID)
	}
	s.forget(org, t.ID)
	return t, nil
}

// Put creates or replaces a template (import with replace).
func (s *Service) Put(ctx context.Context, org string, t Template) (Template, error) {
	t.Org = org
	if err := t.Validate(); err != nil {
		return Template{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	old, err := s.Get(ctx, org, t.ID)
	switch {
	case err == nil:
		t.CreatedAt = old.CreatedAt
	case errors.Is(err, ErrNotFound):
		t.CreatedAt = now
	default:
		return Template{}, err
	}
	t.UpdatedAt = now
	doc, err := encode(t)
	if err != nil {
		return Template{}, err
	}
	if _, err := s.db.ExecContext(ctx, s.d.q(`INSERT INTO tmpl_templates (org, id, doc, created_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (org, id) DO UPDATE SET doc = excluded.doc, updated_ms = excluded.updated_ms`),
		org, t.ID, doc, ms(t.CreatedAt), ms(now)); err != nil {
		return Template{}, fmt.Errorf("store template %s: %w", t.ID, err)
	}
	s.forget(org, t.ID)
	return t, nil
}

func encode(t Template) (string, error) {
	if t.Telemetry == nil {
		t.Telemetry = []Telemetry{}
	}
	if t.Properties == nil {
		t.Properties = []Property{}
	}
	if t.Commands == nil {
		t.Commands = []Command{}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode template %s: %w", t.ID, err)
	}
	return string(b), nil
}

func decode(doc string) (Template, error) {
	var t Template
	if err := json.Unmarshal([]byte(doc), &t); err != nil {
		return t, fmt.Errorf("read template: stored document is damaged: %w", err)
	}
	if t.Telemetry == nil {
		t.Telemetry = []Telemetry{}
	}
	if t.Properties == nil {
		t.Properties = []Property{}
	}
	if t.Commands == nil {
		t.Commands = []Command{}
	}
	return t, nil
}

// Get returns a template of org.
func (s *Service) Get(ctx context.Context, org, id string) (Template, error) {
	var doc string
	err := s.db.QueryRowContext(ctx, s.d.q(`SELECT doc FROM tmpl_templates WHERE org = ? AND id = ?`), org, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return Template{}, fmt.Errorf("%w: no template %q in this organization", ErrNotFound, id)
	}
	if err != nil {
		return Template{}, fmt.Errorf("read template %s: %w", id, err)
	}
	return decode(doc)
}

// List returns org's templates ordered by id.
func (s *Service) List(ctx context.Context, org string) ([]Template, error) {
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT doc FROM tmpl_templates WHERE org = ? ORDER BY id`), org)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	defer rows.Close()
	out := []Template{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("list templates: %w", err)
		}
		t, err := decode(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Delete removes a template. Devices that reference it are no longer
// validated.
func (s *Service) Delete(ctx context.Context, org, id string) error {
	res, err := s.db.ExecContext(ctx, s.d.q(`DELETE FROM tmpl_templates WHERE org = ? AND id = ?`), org, id)
	if err != nil {
		return fmt.Errorf("delete template %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: no template %q in this organization", ErrNotFound, id)
	}
	s.forget(org, id)
	return nil
}

// Export returns a template as portable JSON: without org and timestamps.
func (s *Service) Export(ctx context.Context, org, id string) ([]byte, error) {
	t, err := s.Get(ctx, org, id)
	if err != nil {
		return nil, err
	}
	t.Org, t.CreatedAt, t.UpdatedAt = "", time.Time{}, time.Time{}
	return json.MarshalIndent(t, "", "  ")
}

// Import reads an exported template and stores it in org; replace
// overwrites a template with the same id.
func (s *Service) Import(ctx context.Context, org string, doc []byte, replace bool) (Template, error) {
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	dec.DisallowUnknownFields()
	var t Template
	if err := dec.Decode(&t); err != nil {
		return Template{}, fmt.Errorf("%w: the document is not a template: %v", ErrInvalid, err)
	}
	if replace {
		return s.Put(ctx, org, t)
	}
	return s.Create(ctx, org, t)
}

// Lookup returns a template through a short-lived cache for the
// validation hot path; ok is false when it does not exist. Changes made
// through this Service are seen at once, others within cacheTTL.
func (s *Service) Lookup(ctx context.Context, org, id string) (*Template, bool, error) {
	key := org + "\x00" + id
	now := time.Now()
	s.mu.Lock()
	c, hit := s.cache[key]
	s.mu.Unlock()
	if hit && now.Sub(c.at) < cacheTTL {
		return c.t, c.t != nil, nil
	}
	var t *Template
	got, err := s.Get(ctx, org, id)
	switch {
	case errors.Is(err, ErrNotFound):
		t = nil
	case err != nil:
		return nil, false, err
	default:
		t = &got
	}
	s.mu.Lock()
	if len(s.cache) > 10000 {
		clear(s.cache)
	}
	s.cache[key] = cached{t: t, at: now}
	s.mu.Unlock()
	return t, t != nil, nil
}

func (s *Service) forget(org, id string) {
	s.mu.Lock()
	delete(s.cache, org+"\x00"+id)
	delete(s.any, org)
	s.mu.Unlock()
}

// HasTemplates reports whether org has any template, through the same
// kind of cache as Lookup: an organization without templates then costs
// the validation hot paths no device read at all.
func (s *Service) HasTemplates(ctx context.Context, org string) (bool, error) {
	now := time.Now()
	s.mu.Lock()
	c, hit := s.any[org]
	s.mu.Unlock()
	if hit && now.Sub(c.at) < cacheTTL {
		return c.has, nil
	}
	var one int
	err := s.db.QueryRowContext(ctx, s.d.q(`SELECT 1 FROM tmpl_templates WHERE org = ? LIMIT 1`), org).Scan(&one)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("read the templates of %s: %w", org, err)
	}
	s.mu.Lock()
	if len(s.any) > 10000 {
		clear(s.any)
	}
	s.any[org] = anyOrg{has: err == nil, at: now}
	s.mu.Unlock()
	return err == nil, nil
}

// Counts are a device's template violations.
type Counts struct {
	Device    string    `json:"deviceId"`
	Template  string    `json:"template"`
	Telemetry int64     `json:"telemetry"`
	Reported  int64     `json:"reported"`
	Command   int64     `json:"command"`
	LastError string    `json:"lastError"`
	LastAt    time.Time `json:"lastAt"`
}

// Flag counts n messages of kind (telemetry, reported or command) from
// device that broke template tmpl, remembering msg as the last error.
func (s *Service) Flag(ctx context.Context, org, device, tmpl, kind, msg string, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: violation count %d must be at least 1", ErrInvalid, n)
	}
	var tel, rep, cmd int64
	switch kind {
	case "telemetry":
		tel = int64(n)
	case "reported":
		rep = int64(n)
	case "command":
		cmd = int64(n)
	default:
		return fmt.Errorf("%w: violation kind %q", ErrInvalid, kind)
	}
	_, err := s.db.ExecContext(ctx, s.d.q(`INSERT INTO tmpl_violations (org, device, template, telemetry, reported, command, last_error, last_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org, device) DO UPDATE SET template = excluded.template,
		telemetry = tmpl_violations.telemetry + excluded.telemetry, reported = tmpl_violations.reported + excluded.reported,
		command = tmpl_violations.command + excluded.command, last_error = excluded.last_error, last_ms = excluded.last_ms`),
		org, device, tmpl, tel, rep, cmd, msg, ms(s.now()))
	if err != nil {
		return fmt.Errorf("count a template violation of %s: %w", device, err)
	}
	return nil
}

// DeleteViolations forgets a device's violation counts (the device was
// deleted: one created later with the same id starts clean).
func (s *Service) DeleteViolations(ctx context.Context, org, device string) error {
	if _, err := s.db.ExecContext(ctx, s.d.q(`DELETE FROM tmpl_violations WHERE org = ? AND device = ?`), org, device); err != nil {
		return fmt.Errorf("delete the template violations of %s: %w", device, err)
	}
	return nil
}

// Violations returns a device's counts; zero counts when it never broke
// its template.
func (s *Service) Violations(ctx context.Context, org, device string) (Counts, error) {
	c := Counts{Device: device}
	var last int64
	err := s.db.QueryRowContext(ctx, s.d.q(`SELECT template, telemetry, reported, command, last_error, last_ms
		FROM tmpl_violations WHERE org = ? AND device = ?`), org, device).
		Scan(&c.Template, &c.Telemetry, &c.Reported, &c.Command, &c.LastError, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read the template violations of %s: %w", device, err)
	}
	c.LastAt = time.UnixMilli(last).UTC()
	return c, nil
}
