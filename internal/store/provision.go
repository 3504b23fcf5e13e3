package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/shopfloor/shopfloor/internal/registry"
)

const groupCols = "id, org, site, template, tags, primary_key, secondary_key, disabled, created_at"

func scanGroup(row scanner) (registry.EnrollmentGroup, error) {
	var g registry.EnrollmentGroup
	var site sql.NullString
	var tags string
	var created int64
	err := row.Scan(&g.ID, &g.Org, &site, &g.Template, &tags, &g.PrimaryKey, &g.SecondaryKey, &g.Disabled, &created)
	if err != nil {
		return registry.EnrollmentGroup{}, err
	}
	if g.Tags, err = decodeTags(tags); err != nil {
		return registry.EnrollmentGroup{}, err
	}
	g.Site = site.String
	g.CreatedAt = fromMicros(created)
	return g, nil
}

func (s *SQL) listGroups(ctx context.Context, what, where string, args ...any) ([]registry.EnrollmentGroup, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+groupCols+" FROM enrollment_groups WHERE "+where+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	defer rows.Close()
	out := []registry.EnrollmentGroup{}
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return out, nil
}

// CreateEnrollmentGroup implements registry.Store.
func (s *SQL) CreateEnrollmentGroup(ctx context.Context, g registry.EnrollmentGroup) error {
	tags, err := encodeTags(g.Tags)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, "INSERT INTO enrollment_groups ("+groupCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		g.ID, g.Org, nullString(g.Site), g.Template, tags, g.PrimaryKey, g.SecondaryKey, g.Disabled, micros(g.CreatedAt))
	switch s.violation(err) {
	case NoViolation:
	case Unique:
		return fmt.Errorf("enrollment group id %q is already taken (ids are unique across the hub): choose another id: %w", g.ID, registry.ErrConflict)
	case ForeignKey:
		return fmt.Errorf("site %q does not exist in organization %q: create the site first or leave site empty: %w", g.Site, g.Org, registry.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("create enrollment group %q: %w", g.ID, err)
	}
	return nil
}

// GetEnrollmentGroup implements registry.Store.
func (s *SQL) GetEnrollmentGroup(ctx context.Context, org, id string) (registry.EnrollmentGroup, error) {
	g, err := scanGroup(s.db.QueryRowContext(ctx, "SELECT "+groupCols+" FROM enrollment_groups WHERE id = $1 AND org = $2", id, org))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.EnrollmentGroup{}, fmt.Errorf("enrollment group %q does not exist in organization %q: %w", id, org, registry.ErrNotFound)
	}
	if err != nil {
		return registry.EnrollmentGroup{}, fmt.Errorf("read enrollment group %q: %w", id, err)
	}
	return g, nil
}

// LookupEnrollmentGroup implements registry.Store.
func (s *SQL) LookupEnrollmentGroup(ctx context.Context, id string) (registry.EnrollmentGroup, error) {
	g, err := scanGroup(s.db.QueryRowContext(ctx, "SELECT "+groupCols+" FROM enrollment_groups WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.EnrollmentGroup{}, fmt.Errorf("enrollment group %q does not exist: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return registry.EnrollmentGroup{}, fmt.Errorf("read enrollment group %q: %w", id, err)
	}
	return g, nil
}

// ListEnrollmentGroups implements registry.Store.
func (s *SQL) ListEnrollmentGroups(ctx context.Context, org string) ([]registry.EnrollmentGroup, error) {
	return s.listGroups(ctx, "enrollment groups of "+org, "org = $1", org)
}

// ListEnabledEnrollmentGroups implements registry.Store.
func (s *SQL) ListEnabledEnrollmentGroups(ctx context.Context) ([]registry.EnrollmentGroup, error) {
	return s.listGroups(ctx, "enabled enrollment groups", "disabled = $1", false)
}

// DeleteEnrollmentGroup implements registry.Store.
func (s *SQL) DeleteEnrollmentGroup(ctx context.Context, org, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM enrollment_groups WHERE org = $1 AND id = $2", org, id)
	if err != nil {
		return fmt.Errorf("delete enrollment group %q: %w", id, err)
	}
	return affected(res, fmt.Errorf("enrollment group %q does not exist in organization %q: %w", id, org, registry.ErrNotFound))
}

const caCols = "id, org, name, pem, thumbprint, auto_register, site, created_at"

func scanCA(row scanner) (registry.CACert, error) {
	var c registry.CACert
	var site sql.NullString
	var created int64
	if err := row.Scan(&c.ID, &c.Org, &c.Name, &c.PEM, &c.Thumbprint, &c.AutoRegister, &site, &created); err != nil {
		return registry.CACert{}, err
	}
	c.Site = site.String
	c.CreatedAt = fromMicros(created)
	return c, nil
}

func (s *SQL) listCAs(ctx context.Context, what, where string, args ...any) ([]registry.CACert, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+caCols+" FROM ca_certs"+where+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	defer rows.Close()
	out := []registry.CACert{}
	for rows.Next() {
		c, err := scanCA(rows)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return out, nil
}

// CreateCACert implements registry.Store.
func (s *SQL) CreateCACert(ctx context.Context, c registry.CACert) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// Checked first for a message that says which rule was broken; the
		// unique index still decides under a race.
		var owner, id string
		err := tx.QueryRowContext(ctx, "SELECT org, id FROM ca_certs WHERE thumbprint = $1", c.Thumbprint).Scan(&owner, &id)
		switch {
		case err == nil && owner == c.Org:
			return fmt.Errorf("this CA certificate is already registered as %q: %w", id, registry.ErrConflict)
		case err == nil:
			return fmt.Errorf("this CA certificate is already registered by another organization; a CA can belong to one organization only: %w", registry.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("check CA certificate thumbprint: %w", err)
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO ca_certs ("+caCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			c.ID, c.Org, c.Name, c.PEM, c.Thumbprint, c.AutoRegister, nullString(c.Site), micros(c.CreatedAt))
		return err
	})
	if errors.Is(err, registry.ErrConflict) {
		return err
	}
	switch s.violation(err) {
	case NoViolation:
	case Unique:
		return fmt.Errorf("CA certificate id %q is already taken, or the certificate is already registered: choose another id: %w", c.ID, registry.ErrConflict)
	case ForeignKey:
		return fmt.Errorf("site %q does not exist in organization %q: create the site first or leave site empty: %w", c.Site, c.Org, registry.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("register CA certificate %q: %w", c.ID, err)
	}
	return nil
}

// LookupCACert implements registry.Store.
func (s *SQL) LookupCACert(ctx context.Context, id string) (registry.CACert, error) {
	c, err := scanCA(s.db.QueryRowContext(ctx, "SELECT "+caCols+" FROM ca_certs WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.CACert{}, fmt.Errorf("CA certificate %q does not exist: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return registry.CACert{}, fmt.Errorf("read CA certificate %q: %w", id, err)
	}
	return c, nil
}

// ListCACerts implements registry.Store.
func (s *SQL) ListCACerts(ctx context.Context, org string) ([]registry.CACert, error) {
	return s.listCAs(ctx, "CA certificates of "+org, " WHERE org = $1", org)
}

// ListAllCACerts implements registry.Store.
func (s *SQL) ListAllCACerts(ctx context.Context) ([]registry.CACert, error) {
	return s.listCAs(ctx, "CA certificates", "")
}

// DeleteCACert implements registry.Store.
func (s *SQL) DeleteCACert(ctx context.Context, org, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM ca_certs WHERE org = $1 AND id = $2", org, id)
	if err != nil {
		return fmt.Errorf("delete CA certificate %q: %w", id, err)
	}
	return affected(res, fmt.Errorf("CA certificate %q does not exist in organization %q: %w", id, org, registry.ErrNotFound))
}
