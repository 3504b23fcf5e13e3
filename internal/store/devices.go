package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

const deviceCols = "id, org, site, template, tags, disabled, auth, primary_key, secondary_key, thumbprint, enrollment_group, created_at, updated_at, last_error, last_error_at, error_count"

func scanDevice(row scanner) (registry.Device, error) {
	var d registry.Device
	var site sql.NullString
	var tags, auth string
	var created, updated int64
	var lastAt sql.NullInt64
	err := row.Scan(&d.ID, &d.Org, &site, &d.Template, &tags, &d.Disabled, &auth, &d.PrimaryKey, &d.SecondaryKey,
		&d.Thumbprint, &d.EnrollmentGroup, &created, &updated, &d.LastError, &lastAt, &d.ErrorCount)
	if err != nil {
		return registry.Device{}, err
	}
	if d.Tags, err = decodeTags(tags); err != nil {
		return registry.Device{}, err
	}
	d.Site = site.String
	d.Auth = registry.AuthKind(auth)
	d.CreatedAt = fromMicros(created)
	d.UpdatedAt = fromMicros(updated)
	if lastAt.Valid {
		t := fromMicros(lastAt.Int64)
		d.LastErrorAt = &t
	}
	return d, nil
}

func deviceNotFound(org, id string) error {
	return fmt.Errorf("device %q does not exist in organization %q: %w", id, org, registry.ErrNotFound)
}

// writeTags replaces the filter rows of a device's tags.
func writeTags(ctx context.Context, tx *sql.Tx, org, id string, tags map[string]string, replace bool) error {
	if replace {
		if _, err := tx.ExecContext(ctx, "DELETE FROM device_tags WHERE device = $1", id); err != nil {
			return fmt.Errorf("replace tags of device %q: %w", id, err)
		}
	}
	for k, v := range tags {
		if _, err := tx.ExecContext(ctx, "INSERT INTO device_tags (device, org, tag_key, tag_value) VALUES ($1, $2, $3, $4)", id, org, k, v); err != nil {
			return fmt.Errorf("write tag %q of device %q: %w", k, id, err)
		}
	}
	return nil
}

// CreateDevice implements registry.Store.
func (s *SQL) CreateDevice(ctx context.Context, d registry.Device) error {
	tags, err := encodeTags(d.Tags)
	if err != nil {
		return err
	}
	var lastAt sql.NullInt64
	if d.LastErrorAt != nil {
		lastAt = sql.NullInt64{Int64: micros(*d.LastErrorAt), Valid: true}
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO devices ("+deviceCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
			d.ID, d.Org, nullString(d.Site), d.Template, tags, d.Disabled, string(d.Auth), d.PrimaryKey, d.SecondaryKey,
			d.Thumbprint, d.EnrollmentGroup, micros(d.CreatedAt), micros(d.UpdatedAt), d.LastError, lastAt, d.ErrorCount)
		if err != nil {
			return err
		}
		return writeTags(ctx, tx, d.Org, d.ID, d.Tags, false)
	})
	switch s.violation(err) {
	case NoViolation:
	case Unique:
		return fmt.Errorf("device id %q is already registered (device ids are unique across the hub): choose another id: %w", d.ID, registry.ErrConflict)
	case ForeignKey:
		if d.Site == "" {
			return orgNotFound(d.Org)
		}
		return fmt.Errorf("site %q does not exist in organization %q: create the site first or leave site empty: %w", d.Site, d.Org, registry.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("create device %q: %w", d.ID, err)
	}
	return nil
}

// GetDevice implements registry.Store.
func (s *SQL) GetDevice(ctx context.Context, org, id string) (registry.Device, error) {
	// The prepared primary-key lookup: the REST API reads the device on
	// every twin, method and message call, and parsing the query again cost
	// more than running it.
	d, err := scanDevice(s.lookup.QueryRowContext(ctx, id))
	if err == nil && d.Org != org {
		err = sql.ErrNoRows
	}
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Device{}, deviceNotFound(org, id)
	}
	if err != nil {
		return registry.Device{}, fmt.Errorf("read device %q: %w", id, err)
	}
	return d, nil
}

// LookupDevice implements registry.Store with one primary-key query.
func (s *SQL) LookupDevice(ctx context.Context, id string) (registry.Device, error) {
	d, err := scanDevice(s.lookup.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Device{}, fmt.Errorf("device %q is not registered: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return registry.Device{}, fmt.Errorf("look up device %q: %w", id, err)
	}
	return d, nil
}

// ListDevices implements registry.Store.
func (s *SQL) ListDevices(ctx context.Context, org string, f registry.DeviceFilter) ([]registry.Device, error) {
	var q strings.Builder
	args := []any{org}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	q.WriteString("SELECT " + deviceCols + " FROM devices d WHERE d.org = $1")
	if f.Site != "" {
		q.WriteString(" AND d.site = " + arg(f.Site))
	}
	if f.Template != "" {
		q.WriteString(" AND d.template = " + arg(f.Template))
	}
	keys := make([]string, 0, len(f.Tag))
	for k := range f.Tag {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same filter gives the same SQL text
	for _, k := range keys {
		q.WriteString(" AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device = d.id AND t.tag_key = " + arg(k) + " AND t.tag_value = " + arg(f.Tag[k]) + ")")
	}
	if f.After != "" {
		q.WriteString(" AND d.id > " + arg(f.After))
	}
	q.WriteString(" ORDER BY d.id")
	if f.Limit > 0 {
		q.WriteString(" LIMIT " + arg(f.Limit))
	}
	rows, err := s.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list devices of %q: %w", org, err)
	}
	defer rows.Close()
	out := []registry.Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices of %q: %w", org, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices of %q: %w", org, err)
	}
	return out, nil
}

// CountDevices implements registry.Store.
func (s *SQL) CountDevices(ctx context.Context, org string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM devices WHERE org = $1", org).Scan(&n); err != nil {
		return 0, fmt.Errorf("count devices of %q: %w", org, err)
	}
	return n, nil
}

// UpdateDevice implements registry.Store.
func (s *SQL) UpdateDevice(ctx context.Context, org, id string, p registry.DevicePatch, at time.Time) (registry.Device, error) {
	if p.Site == nil && p.Template == nil && p.Tags == nil && p.Disabled == nil {
		return s.GetDevice(ctx, org, id)
	}
	var set []string
	args := []any{org, id}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if p.Site != nil {
		set = append(set, "site = "+arg(nullString(*p.Site)))
	}
	if p.Template != nil {
		set = append(set, "template = "+arg(*p.Template))
	}
	if p.Tags != nil {
		tags, err := encodeTags(*p.Tags)
		if err != nil {
			return registry.Device{}, err
		}
		set = append(set, "tags = "+arg(tags))
	}
	if p.Disabled != nil {
		set = append(set, "disabled = "+arg(*p.Disabled))
	}
	set = append(set, "updated_at = "+arg(micros(at)))
	var d registry.Device
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, "UPDATE devices SET "+strings.Join(set, ", ")+" WHERE org = $1 AND id = $2 RETURNING "+deviceCols, args...))
		if err != nil {
			return err
		}
		if p.Tags != nil {
			return writeTags(ctx, tx, org, id, *p.Tags, true)
		}
		return nil
	})
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Device{}, deviceNotFound(org, id)
	}
	if s.violation(err) == ForeignKey {
		return registry.Device{}, fmt.Errorf("site %q does not exist in organization %q: create the site first or leave site empty: %w", *p.Site, org, registry.ErrInvalid)
	}
	if err != nil {
		return registry.Device{}, fmt.Errorf("update device %q: %w", id, err)
	}
	return d, nil
}

// SetDeviceKey implements registry.Store.
func (s *SQL) SetDeviceKey(ctx context.Context, org, id string, slot registry.KeySlot, key string, at time.Time) (registry.Device, error) {
	var col string
	switch slot {
	case registry.KeyPrimary:
		col = "primary_key"
	case registry.KeySecondary:
		col = "secondary_key"
	default:
		return registry.Device{}, fmt.Errorf("key %q is invalid: use primary or secondary: %w", slot, registry.ErrInvalid)
	}
	d, err := scanDevice(s.db.QueryRowContext(ctx, "UPDATE devices SET "+col+" = $3, updated_at = $4 WHERE org = $1 AND id = $2 RETURNING "+deviceCols,
		org, id, key, micros(at)))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Device{}, deviceNotFound(org, id)
	}
	if err != nil {
		return registry.Device{}, fmt.Errorf("set the %s key of device %q: %w", slot, id, err)
	}
	return d, nil
}

// DeleteDevice implements registry.Store; its tag rows go with it.
func (s *SQL) DeleteDevice(ctx context.Context, org, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM devices WHERE org = $1 AND id = $2", org, id)
	if err != nil {
		return fmt.Errorf("delete device %q: %w", id, err)
	}
	return affected(res, deviceNotFound(org, id))
}

// RecordDeviceErrors implements registry.Store.
func (s *SQL) RecordDeviceErrors(ctx context.Context, id, msg string, n int, at time.Time) error {
	res, err := s.db.ExecContext(ctx, "UPDATE devices SET last_error = $2, last_error_at = $3, error_count = error_count + $4 WHERE id = $1",
		id, msg, micros(at), n)
	if err != nil {
		return fmt.Errorf("record an error of device %q: %w", id, err)
	}
	return affected(res, fmt.Errorf("device %q is not registered: %w", id, registry.ErrNotFound))
}
