package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

const orgCols = "id, name, parent, retention_days, created_at"

func scanOrg(row scanner) (registry.Org, error) {
	var o registry.Org
	var parent sql.NullString
	var created int64
	if err := row.Scan(&o.ID, &o.Name, &parent, &o.RetentionDays, &created); err != nil {
		return registry.Org{}, err
	}
	o.Parent = parent.String
	o.Retention = time.Duration(o.RetentionDays) * 24 * time.Hour
	o.CreatedAt = fromMicros(created)
	return o, nil
}

func orgNotFound(id string) error {
	return fmt.Errorf("organization %q does not exist: %w", id, registry.ErrNotFound)
}

func (s *SQL) getOrg(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (registry.Org, error) {
	o, err := scanOrg(q.QueryRowContext(ctx, "SELECT "+orgCols+" FROM orgs WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Org{}, orgNotFound(id)
	}
	if err != nil {
		return registry.Org{}, fmt.Errorf("read organization %q: %w", id, err)
	}
	return o, nil
}

// Bootstrap implements registry.Store.
func (s *SQL) Bootstrap(ctx context.Context, op registry.Org, admin registry.Token, hash string) (registry.Org, bool, error) {
	var org registry.Org
	created := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO orgs ("+orgCols+") VALUES ($1, $2, NULL, $3, $4) ON CONFLICT (id) DO NOTHING",
			op.ID, op.Name, op.RetentionDays, micros(op.CreatedAt)); err != nil {
			return fmt.Errorf("create the operator organization: %w", err)
		}
		// A no-op update locks the org row (PostgreSQL), so concurrent
		// bootstraps count admin tokens one after the other. SQLite
		// transactions already hold the write lock.
		if _, err := tx.ExecContext(ctx, "UPDATE orgs SET name = name WHERE id = $1", op.ID); err != nil {
			return fmt.Errorf("lock the operator organization: %w", err)
		}
		var admins int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM tokens WHERE org = $1 AND role = $2", op.ID, string(registry.RoleAdmin)).Scan(&admins); err != nil {
			return fmt.Errorf("count admin tokens: %w", err)
		}
		if admins == 0 {
			if err := insertToken(ctx, tx, admin, hash); err != nil {
				return s.tokenError(admin, err)
			}
			created = true
		}
		var err error
		org, err = s.getOrg(ctx, tx, op.ID)
		return err
	})
	if err != nil {
		return registry.Org{}, false, err
	}
	return org, created, nil
}

// CreateOrg implements registry.Store.
func (s *SQL) CreateOrg(ctx context.Context, o registry.Org) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO orgs ("+orgCols+") VALUES ($1, $2, $3, $4, $5)",
		o.ID, o.Name, nullString(o.Parent), o.RetentionDays, micros(o.CreatedAt))
	switch s.violation(err) {
	case NoViolation:
	case Unique:
		return fmt.Errorf("organization id %q is already taken: choose another id: %w", o.ID, registry.ErrConflict)
	case ForeignKey:
		return fmt.Errorf("parent organization %q does not exist: %w", o.Parent, registry.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("create organization %q: %w", o.ID, err)
	}
	return nil
}

// GetOrg implements registry.Store.
func (s *SQL) GetOrg(ctx context.Context, id string) (registry.Org, error) {
	return s.getOrg(ctx, s.db, id)
}

// ListOrgs implements registry.Store.
func (s *SQL) ListOrgs(ctx context.Context, parent string) ([]registry.Org, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+orgCols+" FROM orgs WHERE parent = $1 ORDER BY id", parent)
	if err != nil {
		return nil, fmt.Errorf("list organizations of %q: %w", parent, err)
	}
	defer rows.Close()
	out := []registry.Org{}
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, fmt.Errorf("list organizations of %q: %w", parent, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list organizations of %q: %w", parent, err)
	}
	return out, nil
}

// SetRetention implements registry.Store.
func (s *SQL) SetRetention(ctx context.Context, id string, days int) (registry.Org, error) {
	o, err := scanOrg(s.db.QueryRowContext(ctx, "UPDATE orgs SET retention_days = $2 WHERE id = $1 RETURNING "+orgCols, id, days))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Org{}, orgNotFound(id)
	}
	if err != nil {
		return registry.Org{}, fmt.Errorf("set retention of organization %q: %w", id, err)
	}
	return o, nil
}

const tokenCols = "id, org, name, role, created_at"

func scanToken(row scanner, extra ...any) (registry.Token, error) {
	var t registry.Token
	var role string
	var created int64
	if err := row.Scan(append([]any{&t.ID, &t.Org, &t.Name, &role, &created}, extra...)...); err != nil {
		return registry.Token{}, err
	}
	t.Role = registry.Role(role)
	t.CreatedAt = fromMicros(created)
	return t, nil
}

func insertToken(ctx context.Context, q execer, t registry.Token, hash string) error {
	_, err := q.ExecContext(ctx, "INSERT INTO tokens (id, org, name, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
		t.ID, t.Org, t.Name, string(t.Role), hash, micros(t.CreatedAt))
	return err
}

func (s *SQL) tokenError(t registry.Token, err error) error {
	switch s.violation(err) {
	case Unique:
		return fmt.Errorf("token id %q or its secret is already in use: create the token again: %w", t.ID, registry.ErrConflict)
	case ForeignKey:
		return orgNotFound(t.Org)
	}
	return fmt.Errorf("create API token %q: %w", t.Name, err)
}

// CreateToken implements registry.Store.
func (s *SQL) CreateToken(ctx context.Context, t registry.Token, hash string) error {
	if err := insertToken(ctx, s.db, t, hash); err != nil {
		return s.tokenError(t, err)
	}
	return nil
}

// TokenByHash implements registry.Store.
func (s *SQL) TokenByHash(ctx context.Context, hash string) (registry.Token, registry.Org, error) {
	var o registry.Org
	var parent sql.NullString
	var created int64
	row := s.db.QueryRowContext(ctx, `SELECT t.id, t.org, t.name, t.role, t.created_at, o.id, o.name, o.parent, o.retention_days, o.created_at
		FROM tokens t JOIN orgs o ON o.id = t.org WHERE t.secret_hash = $1`, hash)
	t, err := scanToken(row, &o.ID, &o.Name, &parent, &o.RetentionDays, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Token{}, registry.Org{}, fmt.Errorf("no API token has this secret: %w", registry.ErrNotFound)
	}
	if err != nil {
		return registry.Token{}, registry.Org{}, fmt.Errorf("look up API token: %w", err)
	}
	o.Parent = parent.String
	o.Retention = time.Duration(o.RetentionDays) * 24 * time.Hour
	o.CreatedAt = fromMicros(created)
	return t, o, nil
}

// ListTokens implements registry.Store.
func (s *SQL) ListTokens(ctx context.Context, org string) ([]registry.Token, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+tokenCols+" FROM tokens WHERE org = $1 ORDER BY created_at, id", org)
	if err != nil {
		return nil, fmt.Errorf("list API tokens of %q: %w", org, err)
	}
	defer rows.Close()
	out := []registry.Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list API tokens of %q: %w", org, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list API tokens of %q: %w", org, err)
	}
	return out, nil
}

// DeleteToken implements registry.Store.
func (s *SQL) DeleteToken(ctx context.Context, org, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM tokens WHERE org = $1 AND id = $2", org, id)
	if err != nil {
		return fmt.Errorf("delete API token %q: %w", id, err)
	}
	return affected(res, fmt.Errorf("API token %q does not exist in organization %q: %w", id, org, registry.ErrNotFound))
}

const siteCols = "org, id, name, tags, created_at"

func scanSite(row scanner) (registry.Site, error) {
	var st registry.Site
	var tags string
	var created int64
	if err := row.Scan(&st.Org, &st.ID, &st.Name, &tags, &created); err != nil {
		return registry.Site{}, err
	}
	var err error
	if st.Tags, err = decodeTags(tags); err != nil {
		return registry.Site{}, err
	}
	st.CreatedAt = fromMicros(created)
	return st, nil
}

// CreateSite implements registry.Store.
func (s *SQL) CreateSite(ctx context.Context, st registry.Site) error {
	tags, err := encodeTags(st.Tags)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, "INSERT INTO sites ("+siteCols+") VALUES ($1, $2, $3, $4, $5)",
		st.Org, st.ID, st.Name, tags, micros(st.CreatedAt))
	switch s.violation(err) {
	case NoViolation:
	case Unique:
		return fmt.Errorf("site id %q is already taken in organization %q: choose another id: %w", st.ID, st.Org, registry.ErrConflict)
	case ForeignKey:
		return orgNotFound(st.Org)
	}
	if err != nil {
		return fmt.Errorf("create site %q: %w", st.ID, err)
	}
	return nil
}

// GetSite implements registry.Store.
func (s *SQL) GetSite(ctx context.Context, org, id string) (registry.Site, error) {
	st, err := scanSite(s.db.QueryRowContext(ctx, "SELECT "+siteCols+" FROM sites WHERE org = $1 AND id = $2", org, id))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Site{}, fmt.Errorf("site %q does not exist in organization %q: %w", id, org, registry.ErrNotFound)
	}
	if err != nil {
		return registry.Site{}, fmt.Errorf("read site %q: %w", id, err)
	}
	return st, nil
}

// ListSites implements registry.Store.
func (s *SQL) ListSites(ctx context.Context, org string) ([]registry.Site, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+siteCols+" FROM sites WHERE org = $1 ORDER BY id", org)
	if err != nil {
		return nil, fmt.Errorf("list sites of %q: %w", org, err)
	}
	defer rows.Close()
	out := []registry.Site{}
	for rows.Next() {
		st, err := scanSite(rows)
		if err != nil {
			return nil, fmt.Errorf("list sites of %q: %w", org, err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sites of %q: %w", org, err)
	}
	return out, nil
}

// DeleteSite implements registry.Store.
func (s *SQL) DeleteSite(ctx context.Context, org, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM sites WHERE org = $1 AND id = $2", org, id)
	if s.violation(err) == ForeignKey {
		return fmt.Errorf("site %q still has devices, enrollment groups or CA certificates: move or delete them first: %w", id, registry.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("delete site %q: %w", id, err)
	}
	return affected(res, fmt.Errorf("site %q does not exist in organization %q: %w", id, org, registry.ErrNotFound))
}
