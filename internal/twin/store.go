package twin

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shopfloor/shopfloor/internal/sqldb"
)

// Config configures a Service. DB and Driver are required.
type Config struct {
	DB *sql.DB
	// Driver is the database/sql driver name: "sqlite" or "pgx".
	Driver string
	Now    func() time.Time

	MaxQueue      int           // pending cloud-to-device messages per device; default 50
	MaxDeliveries int           // deliveries without acknowledgement before a message is rejected; default 10
	DefaultTTL    time.Duration // default 1h
	MaxTTL        time.Duration // default 48h (IoT Hub's limit)
	MaxBody       int           // largest cloud-to-device message; default 64 KiB

	// Notifier and Check serve Change and Queue; either may be nil.
	Notifier Notifier
	Check    DesiredCheck
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 50
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = 10
	}
	if c.DefaultTTL <= 0 {
		c.DefaultTTL = time.Hour
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = 48 * time.Hour
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 64 * 1024
	}
	return c
}

// Service stores twins and cloud-to-device queues.
type Service struct {
	cfg Config
	db  *sql.DB
	d   dialect

	lastSeq atomic.Int64

	// Prepared twin statements: parsing them again on every request cost
	// as much as running them.
	loadStmt, updateStmt, insertStmt *sql.Stmt
	// commits batches SQLite twin writes (see batch.go).
	commits batcher
}

// dialect is what differs between SQLite and PostgreSQL here.
type dialect struct {
	dollar bool   // $1 placeholders instead of ?
	blob   string // binary column type
}

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
		d = dialect{blob: "BLOB"}
	case "pgx":
		d = dialect{dollar: true, blob: "BYTEA"}
	default:
		return nil, fmt.Errorf("%w: database driver %q is not supported; use sqlite or pgx", ErrConfig, cfg.Driver)
	}
	s := &Service{cfg: cfg.withDefaults(), db: cfg.DB, d: d}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS twin_twins (
			org TEXT NOT NULL,
			device TEXT NOT NULL,
			version BIGINT NOT NULL,
			tags TEXT NOT NULL,
			desired TEXT NOT NULL,
			reported TEXT NOT NULL,
			desired_version BIGINT NOT NULL,
			reported_version BIGINT NOT NULL,
			updated_ms BIGINT NOT NULL,
			PRIMARY KEY (org, device))`,
		`CREATE TABLE IF NOT EXISTS twin_c2d (
			id TEXT PRIMARY KEY,
			org TEXT NOT NULL,
			device TEXT NOT NULL,
			seq BIGINT NOT NULL,
			body ` + d.blob + ` NOT NULL,
			props TEXT NOT NULL,
			created_ms BIGINT NOT NULL,
			expires_ms BIGINT NOT NULL,
			attempts INTEGER NOT NULL,
			state TEXT NOT NULL,
			state_ms BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS twin_c2d_queue ON twin_c2d (org, device, state, seq)`,
	} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("create twin tables: %w", err)
		}
	}
	var err error
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.loadStmt, `SELECT version, tags, desired, reported, desired_version, reported_version, updated_ms
			FROM twin_twins WHERE org = ? AND device = ?`},
		{&s.updateStmt, `UPDATE twin_twins SET version = ?, tags = ?, desired = ?, reported = ?,
			desired_version = ?, reported_version = ?, updated_ms = ? WHERE org = ? AND device = ? AND version = ?`},
		{&s.insertStmt, `INSERT INTO twin_twins (org, device, version, tags, desired, reported,
			desired_version, reported_version, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`},
	} {
		if *p.dst, err = s.db.PrepareContext(ctx, s.d.q(p.q)); err != nil {
			return nil, fmt.Errorf("prepare twin statements: %w", err)
		}
	}
	return s, nil
}

// stmt returns st bound to tx, or st itself outside a transaction.
func stmt(ctx context.Context, tx *sql.Tx, st *sql.Stmt) *sql.Stmt {
	if tx == nil {
		return st
	}
	return tx.StmtContext(ctx, st)
}

// Get returns a device's twin; a device that never had one gets an empty
// twin at version 1.
func (s *Service) Get(ctx context.Context, org, device string) (Twin, error) {
	t, _, err := s.load(ctx, nil, org, device)
	return t, err
}

// load reads a twin, within tx when it is not nil.
func (s *Service) load(ctx context.Context, tx *sql.Tx, org, device string) (Twin, bool, error) {
	t := Twin{Org: org, DeviceID: device}
	var tags, desired, reported string
	var updated int64
	err := stmt(ctx, tx, s.loadStmt).QueryRowContext(ctx, org, device).
		Scan(&t.Version, &tags, &desired, &reported, &t.DesiredVersion, &t.ReportedVersion, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		t.Version, t.DesiredVersion, t.ReportedVersion = 1, 1, 1
		t.Tags, t.Desired, t.Reported = map[string]any{}, map[string]any{}, map[string]any{}
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("read the twin of %s: %w", device, err)
	}
	for _, p := range []struct {
		raw string
		dst *map[string]any
	}{{tags, &t.Tags}, {desired, &t.Desired}, {reported, &t.Reported}} {
		dec := json.NewDecoder(strings.NewReader(p.raw))
		dec.UseNumber()
		if err := dec.Decode(p.dst); err != nil {
			return t, false, fmt.Errorf("read the twin of %s: stored document is damaged: %w", device, err)
		}
	}
	t.Updated = time.UnixMilli(updated)
	return t, true, nil
}

// save writes t if the stored version is still prev (or, for a new row,
// no row exists); it reports whether it won. It writes within tx when tx
// is not nil.
func (s *Service) save(ctx context.Context, tx *sql.Tx, t Twin, prev int64, exists bool) (bool, error) {
	tags, err1 := json.Marshal(t.Tags)
	des, err2 := json.Marshal(t.Desired)
	rep, err3 := json.Marshal(t.Reported)
	if err := errors.Join(err1, err2, err3); err != nil {
		return false, fmt.Errorf("encode the twin of %s: %w", t.DeviceID, err)
	}
	var res sql.Result
	var err error
	if exists {
		res, err = stmt(ctx, tx, s.updateStmt).ExecContext(ctx,
			t.Version, string(tags), string(des), string(rep), t.DesiredVersion, t.ReportedVersion, t.Updated.UnixMilli(),
			t.Org, t.DeviceID, prev)
	} else {
		res, err = stmt(ctx, tx, s.insertStmt).ExecContext(ctx,
			t.Org, t.DeviceID, t.Version, string(tags), string(des), string(rep), t.DesiredVersion, t.ReportedVersion, t.Updated.UnixMilli())
	}
	if err != nil {
		return false, fmt.Errorf("write the twin of %s: %w", t.DeviceID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("write the twin of %s: %w", t.DeviceID, err)
	}
	return n == 1, nil
}

// update applies change to the current twin. ifMatch, when set, must
// name the version read. On SQLite, which has one writer at a time, the
// updates of concurrent callers are committed together (batch.go); on
// PostgreSQL each caller writes alone and retries when it loses the
// optimistic version check.
func (s *Service) update(ctx context.Context, org, device, ifMatch string, change func(*Twin) error) (Twin, error) {
	if !s.d.dollar {
		return s.commits.do(ctx, s, org, device, ifMatch, change)
	}
	return s.updateAlone(ctx, org, device, ifMatch, change)
}

// updateAlone applies change until it wins the optimistic version check.
func (s *Service) updateAlone(ctx context.Context, org, device, ifMatch string, change func(*Twin) error) (Twin, error) {
	for {
		next, bad, ok, err := s.apply(ctx, nil, org, device, ifMatch, change)
		if err != nil {
			return Twin{}, err
		}
		if bad != nil {
			return Twin{}, bad
		}
		if ok {
			return next, nil
		}
		if err := ctx.Err(); err != nil {
			return Twin{}, err
		}
	}
}

// apply loads the twin, applies change and saves it if the stored version
// is still the one read (ok). bad is an error of the change itself (a bad
// patch, a failed If-Match), err one of the database.
func (s *Service) apply(ctx context.Context, tx *sql.Tx, org, device, ifMatch string, change func(*Twin) error) (next Twin, bad error, ok bool, err error) {
	cur, exists, err := s.load(ctx, tx, org, device)
	if err != nil {
		return Twin{}, nil, false, err
	}
	if ifMatch != "" && !cur.MatchesETag(ifMatch) {
		return Twin{}, fmt.Errorf("%w: If-Match %s does not match the twin's etag %s; read the twin again and reapply your change", ErrPrecondition, ifMatch, cur.ETag()), false, nil
	}
	next = cur
	if err := change(&next); err != nil {
		return Twin{}, err, false, nil
	}
	next.Version = cur.Version + 1
	next.Updated = s.cfg.Now()
	ok, err = s.save(ctx, tx, next, cur.Version, exists)
	if err != nil {
		return Twin{}, nil, false, err
	}
	return next, nil, ok, nil
}

// PatchResult is the outcome of a service patch. DesiredPatch is what
// devices are sent (the patch with $version) when desired changed, else nil.
type PatchResult struct {
	Twin         Twin
	DesiredPatch []byte
}

// Patch merges tags and desired properties. ifMatch (an ETag, or "") makes
// the patch conditional: ErrPrecondition when the twin changed.
func (s *Service) Patch(ctx context.Context, org, device string, p Patch, ifMatch string) (PatchResult, error) {
	if p.Tags == nil && p.Desired == nil {
		return PatchResult{}, fmt.Errorf("%w: the patch changes nothing: give \"tags\" or \"properties\": {\"desired\": …}", ErrInvalid)
	}
	var desiredPatch map[string]any
	t, err := s.update(ctx, org, device, ifMatch, func(t *Twin) error {
		if p.Tags != nil {
			tags, _, err := applyPatch("tags", t.Tags, p.Tags, MaxTagsBytes)
			if err != nil {
				return err
			}
			t.Tags = tags
		}
		if p.Desired != nil {
			des, patch, err := applyPatch("desired properties", t.Desired, p.Desired, MaxDesiredBytes)
			if err != nil {
				return err
			}
			t.Desired, desiredPatch = des, patch
			t.DesiredVersion++
		}
		return nil
	})
	if err != nil {
		return PatchResult{}, err
	}
	res := PatchResult{Twin: t}
	if desiredPatch != nil {
		if res.DesiredPatch, err = json.Marshal(withVersion(desiredPatch, t.DesiredVersion)); err != nil {
			return PatchResult{}, fmt.Errorf("encode the desired patch: %w", err)
		}
	}
	return res, nil
}

// PatchReported merges a device's reported-properties patch and returns
// the new reported $version.
func (s *Service) PatchReported(ctx context.Context, org, device string, patch []byte) (int64, error) {
	t, err := s.update(ctx, org, device, "", func(t *Twin) error {
		rep, _, err := applyPatch("reported properties", t.Reported, bytes.TrimSpace(patch), MaxReportedBytes)
		if err != nil {
			return err
		}
		t.Reported = rep
		t.ReportedVersion++
		return nil
	})
	if err != nil {
		return 0, err
	}
	return t.ReportedVersion, nil
}

// Delete removes a device's twin and its queued messages (the device was
// deleted).
func (s *Service) Delete(ctx context.Context, org, device string) error {
	for _, q := range []string{`DELETE FROM twin_twins WHERE org = ? AND device = ?`, `DELETE FROM twin_c2d WHERE org = ? AND device = ?`} {
		if _, err := s.db.ExecContext(ctx, s.d.q(q), org, device); err != nil {
			return fmt.Errorf("delete the twin of %s: %w", device, err)
		}
	}
	return nil
}
