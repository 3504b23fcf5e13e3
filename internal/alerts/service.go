package alerts

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/sqldb"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Config builds a Service.
type Config struct {
	DB *sql.DB
	// Driver is the database/sql driver name the DB was opened with:
	// "sqlite" (modernc.org/sqlite) or "pgx" (PostgreSQL).
	Driver    string
	Publisher Publisher        // optional; receives every stored change
	Logger    *slog.Logger     // optional
	Now       func() time.Time // optional; for tests
}

// Service is the alert lifecycle over its store. It is safe for concurrent
// use, also by several processes sharing one PostgreSQL database.
type Service struct {
	group txGroup
	db    *sql.DB
	pg    bool
	pub   Publisher
	log   *slog.Logger
	now   func() time.Time
}

// New creates the alerts_ tables if they do not exist and returns the service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("alerts: a database is required")
	}
	s := &Service{db: cfg.DB, pub: cfg.Publisher, log: cfg.Logger, now: cfg.Now}
	switch cfg.Driver {
	case "sqlite":
	case "pgx", "postgres":
		s.pg = true
	default:
		return nil, fmt.Errorf("alerts: database driver %q is not supported; use sqlite or pgx", cfg.Driver)
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

func (s *Service) migrate(ctx context.Context) error {
	serial := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if s.pg {
		serial = "BIGSERIAL PRIMARY KEY"
	}
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS alerts_alerts (
			id TEXT PRIMARY KEY,
			org TEXT NOT NULL,
			rule TEXT NOT NULL,
			rule_name TEXT NOT NULL DEFAULT '',
			device TEXT NOT NULL,
			severity TEXT NOT NULL,
			state TEXT NOT NULL,
			occurrences BIGINT NOT NULL,
			first_seen BIGINT NOT NULL,
			last_seen BIGINT NOT NULL,
			message TEXT NOT NULL DEFAULT '',
			vals TEXT NOT NULL DEFAULT '',
			assignee TEXT NOT NULL DEFAULT '',
			acked_by TEXT NOT NULL DEFAULT '',
			acked_at BIGINT NOT NULL DEFAULT 0,
			resolved_by TEXT NOT NULL DEFAULT '',
			resolved_at BIGINT NOT NULL DEFAULT 0,
			updated_at BIGINT NOT NULL,
			version BIGINT NOT NULL DEFAULT 1
		)`,
		// The arbiter of deduplication: one alert per (org, rule, device)
		// that is not resolved.
		`CREATE UNIQUE INDEX IF NOT EXISTS alerts_alerts_active ON alerts_alerts (org, rule, device) WHERE state <> 'resolved'`,
		`CREATE INDEX IF NOT EXISTS alerts_alerts_org_id ON alerts_alerts (org, id)`,
		`CREATE INDEX IF NOT EXISTS alerts_alerts_org_state ON alerts_alerts (org, state, id)`,
		`CREATE TABLE IF NOT EXISTS alerts_history (
			seq ` + serial + `,
			alert_id TEXT NOT NULL,
			org TEXT NOT NULL,
			at BIGINT NOT NULL,
			by_who TEXT NOT NULL,
			kind TEXT NOT NULL,
			from_state TEXT NOT NULL DEFAULT '',
			to_state TEXT NOT NULL DEFAULT '',
			note TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX IF NOT EXISTS alerts_history_alert ON alerts_history (alert_id, seq)`,
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("alerts: create tables: %w", err)
		}
	}
	return nil
}

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *Service) q(query string) string {
	return sqldb.Rebind(s.pg, query)
}

const alertCols = `id, org, rule, rule_name, device, severity, state, occurrences, first_seen, last_seen,
	message, vals, assignee, acked_by, acked_at, resolved_by, resolved_at, updated_at, version`

type scanner interface{ Scan(dest ...any) error }

func scanAlert(r scanner) (Alert, int64, error) {
	var a Alert
	var first, last, acked, resolved, updated, version int64
	var vals string
	err := r.Scan(&a.ID, &a.Org, &a.Rule, &a.RuleName, &a.Device, &a.Severity, &a.State, &a.Count,
		&first, &last, &a.Message, &vals, &a.Assignee, &a.AckedBy, &acked, &a.ResolvedBy, &resolved, &updated, &version)
	if err != nil {
		return Alert{}, 0, err
	}
	a.FirstSeen = time.UnixMilli(first).UTC()
	a.LastSeen = time.UnixMilli(last).UTC()
	a.UpdatedAt = time.UnixMilli(updated).UTC()
	if acked != 0 {
		t := time.UnixMilli(acked).UTC()
		a.AckedAt = &t
	}
	if resolved != 0 {
		t := time.UnixMilli(resolved).UTC()
		a.ResolvedAt = &t
	}
	if vals != "" {
		if err := json.Unmarshal([]byte(vals), &a.Values); err != nil {
			return Alert{}, 0, fmt.Errorf("decode values of alert %s: %w", a.ID, err)
		}
	}
	return a, version, nil
}

// newID returns a time-ordered id: newer alerts sort after older ones, which
// makes the id a stable paging cursor.
func newID(now time.Time) string {
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("%012x", now.UnixMilli()) + hex.EncodeToString(rnd[:])
}

func (s *Service) publish(ctx context.Context, ev AlertEvent) error {
	if s.pub == nil {
		return nil
	}
	if err := s.pub.PublishAlert(ctx, ev); err != nil {
		return fmt.Errorf("alert %s stored but publishing the %s event failed: %w", ev.Alert.ID, ev.Type, err)
	}
	return nil
}

// withTx runs fn in a transaction. Transactions that callers ask for while
// one is being written are then written together, each in its own
// savepoint: one commit (one fsync on SQLite) for a burst of alert changes,
// and a failing change does not undo the others. fn must use the ctx it is
// given, which is not cancelled while the group is written.
func (s *Service) withTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	j := &txJob{ctx: ctx, fn: fn, done: make(chan struct{})}
	s.group.mu.Lock()
	s.group.queue = append(s.group.queue, j)
	if !s.group.running {
		s.group.running = true
		go s.writeGroups()
	}
	s.group.mu.Unlock()
	<-j.done
	return j.err
}

// txGroup is the queue of transactions waiting to be written together.
type txGroup struct {
	mu      sync.Mutex
	queue   []*txJob
	running bool // a writer goroutine is draining the queue
}

type txJob struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	err  error
	done chan struct{}
}

// maxGroup bounds how many changes share one transaction.
const maxGroup = 256

func (s *Service) writeGroups() {
	for {
		s.group.mu.Lock()
		n := min(len(s.group.queue), maxGroup)
		if n == 0 {
			s.group.running = false
			s.group.mu.Unlock()
			return
		}
		batch := append([]*txJob(nil), s.group.queue[:n]...)
		s.group.queue = append(s.group.queue[:0], s.group.queue[n:]...)
		s.group.mu.Unlock()
		s.writeGroup(batch)
		for _, j := range batch {
			close(j.done)
		}
	}
}

func (s *Service) writeGroup(batch []*txJob) {
	live := batch[:0:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.err = err // the caller gave up before anything was written
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), 30*time.Second)
	defer cancel()
	fail := func(err error) {
		for _, j := range live {
			if j.err == nil {
				j.err = err
			}
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("alerts: begin: %w", err))
		return
	}
	if len(live) == 1 {
		if err := live[0].fn(ctx, tx); err != nil {
			_ = tx.Rollback()
			live[0].err = err
			return
		}
	} else {
		for _, j := range live {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT alert_change"); err != nil {
				_ = tx.Rollback()
				fail(fmt.Errorf("alerts: savepoint: %w", err))
				return
			}
			if err := j.fn(ctx, tx); err != nil {
				j.err = err
				if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT alert_change"); rerr != nil {
					_ = tx.Rollback()
					fail(fmt.Errorf("alerts: roll back one change: %w", rerr))
					return
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT alert_change"); err != nil {
				_ = tx.Rollback()
				fail(fmt.Errorf("alerts: release savepoint: %w", err))
				return
			}
		}
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("alerts: commit: %w", err))
	}
}

func (s *Service) addHistory(ctx context.Context, tx *sql.Tx, id, org string, c Change) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO alerts_history (alert_id, org, at, by_who, kind, from_state, to_state, note)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), id, org, c.At.UnixMilli(), c.By, c.Kind, string(c.From), string(c.To), c.Note)
	if err != nil {
		return fmt.Errorf("alerts: record history of %s: %w", id, err)
	}
	return nil
}

// Fire opens an alert for (Org, Rule, Device), or, while one is open or
// acknowledged, counts another occurrence on it. opened says which.
func (s *Service) Fire(ctx context.Context, r FireRequest) (a Alert, opened bool, err error) {
	if r.Org == "" || r.Rule == "" || r.Device == "" {
		return Alert{}, false, fmt.Errorf("%w: firing an alert needs an organization, a rule and a device", ErrInvalid)
	}
	if r.Severity == "" {
		r.Severity = SeverityWarning
	}
	if err := r.Severity.Validate(); err != nil {
		return Alert{}, false, err
	}
	now := s.now()
	at := r.At
	if at.IsZero() {
		at = now
	}
	vals := ""
	if len(r.Values) > 0 {
		b, err := json.Marshal(finite(r.Values))
		if err != nil {
			return Alert{}, false, fmt.Errorf("alerts: encode values: %w", err)
		}
		vals = string(b)
	}
	id := newID(now)
	err = s.withTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, s.q(`INSERT INTO alerts_alerts
			(id, org, rule, rule_name, device, severity, state, occurrences, first_seen, last_seen, message, vals, updated_at, version)
			VALUES (?, ?, ?, ?, ?, ?, 'open', 1, ?, ?, ?, ?, ?, 1)
			ON CONFLICT (org, rule, device) WHERE state <> 'resolved' DO UPDATE SET
				occurrences = alerts_alerts.occurrences + 1,
				last_seen = CASE WHEN excluded.last_seen > alerts_alerts.last_seen THEN excluded.last_seen ELSE alerts_alerts.last_seen END,
				severity = excluded.severity,
				rule_name = excluded.rule_name,
				message = excluded.message,
				vals = excluded.vals,
				updated_at = excluded.updated_at,
				version = alerts_alerts.version + 1
			RETURNING `+alertCols),
			id, r.Org, r.Rule, r.RuleName, r.Device, string(r.Severity), at.UnixMilli(), at.UnixMilli(), r.Message, vals, now.UnixMilli())
		var err error
		a, _, err = scanAlert(row)
		if err != nil {
			return fmt.Errorf("alerts: fire %s on %s: %w", r.Rule, r.Device, err)
		}
		opened = a.ID == id
		if opened {
			return s.addHistory(ctx, tx, a.ID, a.Org, Change{At: now, By: "rule:" + r.Rule, Kind: KindState, To: StateOpen, Note: r.Message})
		}
		return nil
	})
	if err != nil {
		return Alert{}, false, err
	}
	ev := AlertEvent{Type: EventRefired, At: now, By: "rule:" + r.Rule, Alert: a}
	if opened {
		ev.Type = EventOpened
	}
	return a, opened, s.publish(ctx, ev)
}

func finite(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if v == v && v < 1e308 && v > -1e308 { // JSON has no NaN or Inf
			out[k] = v
		}
	}
	return out
}

// mutation edits a loaded alert and says what to record and publish.
type mutation func(a *Alert) (Change, EventType, error)

// change loads one alert, applies fn and stores the result with optimistic
// concurrency, retrying when another writer got there first.
func (s *Service) change(ctx context.Context, load func(ctx context.Context, tx *sql.Tx) (*sql.Row, string), fn mutation) (Alert, error) {
	for attempt := 0; ; attempt++ {
		var a Alert
		var c Change
		var et EventType
		raced := false
		err := s.withTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			row, what := load(ctx, tx)
			var version int64
			var err error
			a, version, err = scanAlert(row)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %s", ErrNotFound, what)
			}
			if err != nil {
				return fmt.Errorf("alerts: load %s: %w", what, err)
			}
			c, et, err = fn(&a)
			if err != nil {
				return err
			}
			now := s.now()
			c.At, a.UpdatedAt = now, now
			res, err := tx.ExecContext(ctx, s.q(`UPDATE alerts_alerts SET state = ?, assignee = ?, acked_by = ?, acked_at = ?,
				resolved_by = ?, resolved_at = ?, updated_at = ?, version = version + 1 WHERE id = ? AND version = ?`),
				string(a.State), a.Assignee, a.AckedBy, ms(a.AckedAt), a.ResolvedBy, ms(a.ResolvedAt), now.UnixMilli(), a.ID, version)
			if err != nil {
				return fmt.Errorf("alerts: update %s: %w", a.ID, err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				raced = true
				return errRaced
			}
			return s.addHistory(ctx, tx, a.ID, a.Org, c)
		})
		if raced && attempt < 10 {
			continue
		}
		if err != nil {
			return Alert{}, err
		}
		return a, s.publish(ctx, AlertEvent{Type: et, At: c.At, By: c.By, Note: c.Note, Alert: a})
	}
}

var errRaced = errors.New("alerts: concurrent change; retry")

func ms(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixMilli()
}

func (s *Service) byID(org, id string) func(ctx context.Context, tx *sql.Tx) (*sql.Row, string) {
	return func(ctx context.Context, tx *sql.Tx) (*sql.Row, string) {
		return tx.QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM alerts_alerts WHERE org = ? AND id = ?`), org, id), "alert " + id
	}
}

// Clear resolves the active alert of (org, rule, device) because its
// condition cleared. It reports false when there was nothing to resolve.
func (s *Service) Clear(ctx context.Context, org, rule, device string, at time.Time) (Alert, bool, error) {
	a, err := s.change(ctx, func(ctx context.Context, tx *sql.Tx) (*sql.Row, string) {
		return tx.QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM alerts_alerts WHERE org = ? AND rule = ? AND device = ? AND state <> 'resolved'`),
			org, rule, device), "active alert of rule " + rule + " on device " + device
	}, func(a *Alert) (Change, EventType, error) {
		from := a.State
		t := at
		if t.IsZero() {
			t = s.now()
		}
		t = t.UTC()
		a.State, a.ResolvedBy, a.ResolvedAt = StateResolved, "rule:"+rule, &t
		return Change{By: a.ResolvedBy, Kind: KindState, From: from, To: StateResolved, Note: "condition cleared"}, EventResolved, nil
	})
	if errors.Is(err, ErrNotFound) {
		return Alert{}, false, nil
	}
	if err != nil {
		return Alert{}, false, err
	}
	return a, true, nil
}

// Ack acknowledges an open alert.
func (s *Service) Ack(ctx context.Context, org, id, by, note string) (Alert, error) {
	return s.change(ctx, s.byID(org, id), func(a *Alert) (Change, EventType, error) {
		if a.State != StateOpen {
			return Change{}, "", fmt.Errorf("%w: alert %s is %s; only an open alert can be acknowledged", ErrConflict, a.ID, a.State)
		}
		t := s.now().UTC()
		a.State, a.AckedBy, a.AckedAt = StateAcknowledged, by, &t
		return Change{By: by, Kind: KindState, From: StateOpen, To: StateAcknowledged, Note: note}, EventAcknowledged, nil
	})
}

// Resolve resolves an open or acknowledged alert by hand.
func (s *Service) Resolve(ctx context.Context, org, id, by, note string) (Alert, error) {
	return s.change(ctx, s.byID(org, id), func(a *Alert) (Change, EventType, error) {
		if a.State == StateResolved {
			return Change{}, "", fmt.Errorf("%w: alert %s is already resolved", ErrConflict, a.ID)
		}
		from := a.State
		t := s.now().UTC()
		a.State, a.ResolvedBy, a.ResolvedAt = StateResolved, by, &t
		return Change{By: by, Kind: KindState, From: from, To: StateResolved, Note: note}, EventResolved, nil
	})
}

// AddNote adds a note to an alert in any state.
func (s *Service) AddNote(ctx context.Context, org, id, by, text string) (Alert, error) {
	if strings.TrimSpace(text) == "" {
		return Alert{}, fmt.Errorf("%w: the note is empty; write what was seen or done", ErrInvalid)
	}
	return s.change(ctx, s.byID(org, id), func(a *Alert) (Change, EventType, error) {
		return Change{By: by, Kind: KindNote, Note: text}, EventNote, nil
	})
}

// Assign sets who works on the alert; an empty assignee unassigns it.
func (s *Service) Assign(ctx context.Context, org, id, by, assignee string) (Alert, error) {
	return s.change(ctx, s.byID(org, id), func(a *Alert) (Change, EventType, error) {
		a.Assignee = assignee
		return Change{By: by, Kind: KindAssign, Note: assignee}, EventAssigned, nil
	})
}

// RecordAction records an action's outcome in the alert's history.
func (s *Service) RecordAction(ctx context.Context, org, id string, o ActionOutcome) error {
	_, err := s.change(ctx, s.byID(org, id), func(a *Alert) (Change, EventType, error) {
		status := "failed"
		if o.OK {
			status = "delivered"
		}
		note := fmt.Sprintf("%s %s after %d attempt(s)", o.Action, status, o.Attempts)
		if o.Detail != "" {
			note += ": " + o.Detail
		}
		if o.Delivery != "" {
			note += " (delivery " + o.Delivery + ")"
		}
		return Change{By: "action", Kind: KindAction, Note: note}, EventAction, nil
	})
	return err
}

// Get returns one alert with its notes and history.
func (s *Service) Get(ctx context.Context, org, id string) (Alert, error) {
	a, _, err := scanAlert(s.db.QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM alerts_alerts WHERE org = ? AND id = ?`), org, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alert{}, fmt.Errorf("%w: alert %s", ErrNotFound, id)
	}
	if err != nil {
		return Alert{}, fmt.Errorf("alerts: get %s: %w", id, err)
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at, by_who, kind, from_state, to_state, note FROM alerts_history
		WHERE alert_id = ? AND org = ? ORDER BY seq`), id, org)
	if err != nil {
		return Alert{}, fmt.Errorf("alerts: history of %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Change
		var at int64
		if err := rows.Scan(&at, &c.By, &c.Kind, &c.From, &c.To, &c.Note); err != nil {
			return Alert{}, fmt.Errorf("alerts: history of %s: %w", id, err)
		}
		c.At = time.UnixMilli(at).UTC()
		a.History = append(a.History, c)
		if c.Kind == KindNote {
			a.Notes = append(a.Notes, Note{At: c.At, By: c.By, Text: c.Note})
		}
	}
	if err := rows.Err(); err != nil {
		return Alert{}, fmt.Errorf("alerts: history of %s: %w", id, err)
	}
	return a, nil
}

// List returns alerts of org matching f, newest first.
func (s *Service) List(ctx context.Context, org string, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	where := []string{"org = ?"}
	args := []any{org}
	switch f.State {
	case "":
	case StateActive:
		where = append(where, "state <> 'resolved'")
	case StateOpen, StateAcknowledged, StateResolved:
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	default:
		return Page{}, fmt.Errorf("%w: state %q is not known; use open, acknowledged, resolved or active", ErrInvalid, string(f.State))
	}
	if f.Severity != "" {
		if err := f.Severity.Validate(); err != nil {
			return Page{}, err
		}
		where = append(where, "severity = ?")
		args = append(args, string(f.Severity))
	}
	if f.Device != "" {
		where = append(where, "device = ?")
		args = append(args, f.Device)
	}
	if f.Rule != "" {
		where = append(where, "rule = ?")
		args = append(args, f.Rule)
	}
	if f.After != "" {
		where = append(where, "id < ?")
		args = append(args, f.After)
	}
	args = append(args, f.Limit+1)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+alertCols+` FROM alerts_alerts WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id DESC LIMIT ?`), args...)
	if err != nil {
		return Page{}, fmt.Errorf("alerts: list: %w", err)
	}
	defer rows.Close()
	p := Page{Items: []Alert{}}
	for rows.Next() {
		a, _, err := scanAlert(rows)
		if err != nil {
			return Page{}, fmt.Errorf("alerts: list: %w", err)
		}
		p.Items = append(p.Items, a)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("alerts: list: %w", err)
	}
	if len(p.Items) > f.Limit {
		p.Items = p.Items[:f.Limit]
		p.Next = p.Items[f.Limit-1].ID
	}
	return p, nil
}
