package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
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
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service records and lists audit entries.
type Service struct {
	db  *sql.DB
	pg  bool
	log *slog.Logger
	now func() time.Time
	seq atomic.Uint32
}

const component = "audit"

// migrations are append-only: never edit one that has shipped. {id} is the
// identifier column type, which must compare bytes so paging gives the same
// order on both databases.
var migrations = [][]string{
	1: {
		`CREATE TABLE audit_log (
			id {id} PRIMARY KEY,
			org {id} NOT NULL,
			at BIGINT NOT NULL,
			actor TEXT NOT NULL,
			actor_org TEXT NOT NULL,
			via TEXT NOT NULL,
			kind TEXT NOT NULL,
			object TEXT NOT NULL,
			action TEXT NOT NULL,
			before_doc TEXT NOT NULL,
			after_doc TEXT NOT NULL,
			detail TEXT NOT NULL,
			read_role TEXT NOT NULL
		)`,
		`CREATE INDEX audit_log_org ON audit_log (org, id)`,
		`CREATE INDEX audit_log_object ON audit_log (org, kind, object, id)`,
		`CREATE INDEX audit_log_actor ON audit_log (org, actor, id)`,
		`CREATE INDEX audit_log_at ON audit_log (org, at)`,
	},
	// 2 copies the SIM state changes the connectivity package audited
	// before this log existed (its table stays; see copyConnAudit).
	2: nil,
}

// New creates or migrates the audit table.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("audit: a database is required")
	}
	s := &Service{db: cfg.DB, log: cfg.Logger, now: cfg.Now}
	switch cfg.Driver {
	case "sqlite":
	case "pgx":
		s.pg = true
	default:
		return nil, fmt.Errorf("audit: database driver %q is not supported; use sqlite or pgx", cfg.Driver)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Service) q(query string) string { return sqldb.Rebind(s.pg, query) }

// migrate brings the audit table to the latest version; version 2 also
// copies the SIM audit of older hubs.
func (s *Service) migrate(ctx context.Context) error {
	return sqldb.Migrate(ctx, s.db, s.pg, sqldb.Schema{Component: component, Steps: migrations,
		After: func(ctx context.Context, tx *sql.Tx, v int) error {
			if v == 2 {
				return s.copyConnAudit(ctx, tx)
			}
			return nil
		}})
}

// copyConnAudit copies the connectivity package's SIM state audit, when
// its table exists, so those entries are read through the same log. The
// ids keep their order: both use microseconds first.
func (s *Service) copyConnAudit(ctx context.Context, tx *sql.Tx) error {
	exists := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'conn_audit'`
	if s.pg {
		exists = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'conn_audit'`
	}
	var n int
	if err := tx.QueryRowContext(ctx, exists).Scan(&n); err != nil {
		return fmt.Errorf("audit: look for the SIM audit table: %w", err)
	}
	if n == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, org, iccid, actor, at, from_state, to_state, reason FROM conn_audit`)
	if err != nil {
		return fmt.Errorf("audit: read the SIM audit: %w", err)
	}
	type simChange struct {
		id, org, iccid, actor, from, to, reason string
		at                                      int64
	}
	var all []simChange
	for rows.Next() {
		var c simChange
		if err := rows.Scan(&c.id, &c.org, &c.iccid, &c.actor, &c.at, &c.from, &c.to, &c.reason); err != nil {
			rows.Close()
			return fmt.Errorf("audit: read the SIM audit: %w", err)
		}
		all = append(all, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read the SIM audit: %w", err)
	}
	for _, c := range all {
		state := func(st string) string {
			if st == "" {
				return ""
			}
			b, _ := json.Marshal(map[string]string{"state": st})
			return string(b)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO audit_log (id, org, at, actor, actor_org, via, kind, object, action, before_doc, after_doc, detail, read_role)
			VALUES (?, ?, ?, ?, '', ?, 'sim', ?, 'setState', ?, ?, ?, '')`),
			c.id, c.org, c.at, c.actor, ViaAPI, c.iccid, state(c.from), state(c.to), c.reason); err != nil {
			return fmt.Errorf("audit: copy SIM audit entry %s: %w", c.id, err)
		}
	}
	if len(all) > 0 {
		s.log.Info("audit: copied the SIM state audit into the audit log", "entries", len(all))
	}
	return nil
}

// newID is time-ordered: microseconds, a process sequence and randomness,
// in the same shape as the SIM audit's ids.
func (s *Service) newID(t time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%014x%08x%04x", t.UnixMicro(), s.seq.Add(1), binary.BigEndian.Uint16(b[:]))
}

// Record stores e with a new id and the current time, after redacting
// Before and After. Org, Actor, Kind and Action are required; Via is
// "api" when empty.
func (s *Service) Record(ctx context.Context, e Entry) (Entry, error) {
	if e.Org == "" || e.Actor == "" || e.Kind == "" || e.Action == "" {
		return Entry{}, fmt.Errorf("audit: an entry needs an organization, an actor, a kind and an action (got %q, %q, %q, %q)", e.Org, e.Actor, e.Kind, e.Action)
	}
	if e.Via == "" {
		e.Via = ViaAPI
	}
	e.At = s.now().UTC().Truncate(time.Microsecond)
	e.ID = s.newID(e.At)
	e.Before, e.After = Redact(e.Before), Redact(e.After)
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO audit_log (id, org, at, actor, actor_org, via, kind, object, action, before_doc, after_doc, detail, read_role)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		e.ID, e.Org, e.At.UnixMicro(), e.Actor, e.ActorOrg, e.Via, e.Kind, e.Object, e.Action, string(e.Before), string(e.After), e.Detail, e.Role); err != nil {
		return Entry{}, fmt.Errorf("audit: record the %s of %s %q: %w", e.Action, e.Kind, e.Object, err)
	}
	return e, nil
}

var cursorRE = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// List returns one page of org's entries matching f.
func (s *Service) List(ctx context.Context, org string, f Filter) (Page, error) {
	switch {
	case f.Limit == 0:
		f.Limit = DefaultLimit
	case f.Limit < 0 || f.Limit > MaxLimit:
		return Page{}, fmt.Errorf("limit must be between 1 and %d, not %d: %w", MaxLimit, f.Limit, ErrInvalid)
	}
	if f.After != "" && !cursorRE.MatchString(f.After) {
		return Page{}, fmt.Errorf("the paging cursor %q is not one this hub handed out; pass the next value of the previous page unchanged: %w", f.After, ErrInvalid)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return Page{}, fmt.Errorf("from (%s) must be before to (%s): %w", f.From.Format(time.RFC3339), f.To.Format(time.RFC3339), ErrInvalid)
	}
	q := `SELECT id, org, at, actor, actor_org, via, kind, object, action, before_doc, after_doc, detail, read_role FROM audit_log WHERE org = ?`
	args := []any{org}
	add := func(cond string, v any) {
		q += " AND " + cond
		args = append(args, v)
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if f.Object != "" {
		add("object = ?", f.Object)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if len(f.Roles) > 0 {
		q += " AND read_role IN (''" + strings.Repeat(", ?", len(f.Roles)) + ")"
		for _, r := range f.Roles {
			args = append(args, r)
		}
	}
	if !f.From.IsZero() {
		add("at >= ?", f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		add("at < ?", f.To.UnixMicro())
	}
	order := "ASC"
	if f.Newest {
		order = "DESC"
		if f.After != "" {
			add("id < ?", f.After)
		}
	} else if f.After != "" {
		add("id > ?", f.After)
	}
	q += " ORDER BY id " + order + " LIMIT ?"
	args = append(args, f.Limit+1)
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return Page{}, fmt.Errorf("audit: read the log: %w", err)
	}
	defer rows.Close()
	out := Page{Items: []Entry{}}
	for rows.Next() {
		var (
			e             Entry
			at            int64
			before, after string
		)
		if err := rows.Scan(&e.ID, &e.Org, &at, &e.Actor, &e.ActorOrg, &e.Via, &e.Kind, &e.Object, &e.Action, &before, &after, &e.Detail, &e.Role); err != nil {
			return Page{}, fmt.Errorf("audit: read the log: %w", err)
		}
		e.At = time.UnixMicro(at).UTC()
		if before != "" {
			e.Before = json.RawMessage(before)
		}
		if after != "" {
			e.After = json.RawMessage(after)
		}
		out.Items = append(out.Items, e)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("audit: read the log: %w", err)
	}
	if len(out.Items) > f.Limit {
		out.Items = out.Items[:f.Limit]
		out.Next = out.Items[len(out.Items)-1].ID
	}
	return out, nil
}
