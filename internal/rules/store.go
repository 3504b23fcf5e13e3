package rules

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/sqldb"
	"time"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/egress"
)

// StoreConfig builds a Store.
type StoreConfig struct {
	DB *sql.DB
	// Driver is the database/sql driver name: "sqlite" or "pgx".
	Driver string
	// Compile must match the engine's options (anomaly enabled or not), so
	// a rule the engine cannot run is refused at creation.
	Compile CompileOptions
	// Subjects is the subject space a bus action must stay in: the hub
	// passes its bus's; nil is a bus with the default prefix.
	Subjects actions.SubjectPolicy
	// Egress refuses webhooks to internal addresses when a rule is saved;
	// nil is the default policy (no allow-list).
	Egress *egress.Policy
	Now    func() time.Time
}

// Store keeps rule definitions (tables rules_rules, rules_meta) and the
// engine's state snapshots (rules_state).
type Store struct {
	db       *sql.DB
	pg       bool
	opts     CompileOptions
	subjects actions.SubjectPolicy
	egress   *egress.Policy
	now      func() time.Time
}

// NewStore creates the rules_ tables if they do not exist.
func NewStore(ctx context.Context, cfg StoreConfig) (*Store, error) {
	if cfg.DB == nil {
		return nil, errors.New("rules: a database is required")
	}
	s := &Store{db: cfg.DB, opts: cfg.Compile, subjects: cfg.Subjects, egress: cfg.Egress, now: cfg.Now}
	if s.subjects == nil {
		s.subjects = bus.NewSubjects("")
	}
	switch cfg.Driver {
	case "sqlite":
	case "pgx", "postgres":
		s.pg = true
	default:
		return nil, fmt.Errorf("rules: database driver %q is not supported; use sqlite or pgx", cfg.Driver)
	}
	if s.now == nil {
		s.now = time.Now
	}
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS rules_rules (
			id TEXT PRIMARY KEY,
			org TEXT NOT NULL,
			name TEXT NOT NULL,
			def TEXT NOT NULL,
			disabled INTEGER NOT NULL DEFAULT 0,
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE UNIQUE INDEX IF NOT EXISTS rules_rules_org_name ON rules_rules (org, name)`,
		`CREATE TABLE IF NOT EXISTS rules_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`,
		`INSERT INTO rules_meta (k, v) VALUES ('changes', 0) ON CONFLICT (k) DO NOTHING`,
		`CREATE TABLE IF NOT EXISTS rules_state (
			org TEXT NOT NULL,
			device TEXT NOT NULL,
			data TEXT NOT NULL,
			saved_at BIGINT NOT NULL,
			PRIMARY KEY (org, device)
		)`,
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("rules: create tables: %w", err)
		}
	}
	return s, nil
}

func (s *Store) q(query string) string {
	return sqldb.Rebind(s.pg, query)
}

func newID(now time.Time) string {
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("%012x", now.UnixMilli()) + hex.EncodeToString(rnd[:])
}

// Check validates a rule and compiles its condition without storing it.
// A condition that does not compile returns a *CompileError. An action
// reaching past the organization's walls — a bus subject outside its
// subject space, a webhook to an internal address — is refused.
func (s *Store) Check(r Rule) error {
	if err := r.validate(); err != nil {
		return err
	}
	for i, a := range r.Actions {
		if err := a.CheckTargets(r.Org, s.subjects, s.egress); err != nil {
			return fmt.Errorf("%w: action %d: %w", ErrInvalid, i+1, err)
		}
	}
	_, err := Compile(r.Condition, s.opts)
	return err
}

// definition is what the def column holds: the rule without the columns.
type definition struct {
	Description   string         `json:"description,omitempty"`
	Condition     string         `json:"condition"`
	Severity      string         `json:"severity"`
	Scope         Scope          `json:"scope"`
	For           Duration       `json:"for,omitempty"`
	ClearAfter    int            `json:"clearAfter,omitempty"`
	ClearFor      Duration       `json:"clearFor,omitempty"`
	ManualResolve bool           `json:"manualResolve,omitempty"`
	Actions       []actions.Spec `json:"actions,omitempty"`
}

func encodeDef(r Rule) (string, error) {
	b, err := json.Marshal(definition{Description: r.Description, Condition: r.Condition, Severity: string(r.Severity), Scope: r.Scope,
		For: r.For, ClearAfter: r.ClearAfter, ClearFor: r.ClearFor, ManualResolve: r.ManualResolve, Actions: r.Actions})
	return string(b), err
}

const ruleCols = `id, org, name, def, disabled, version, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanRule(sc scanner) (Rule, error) {
	var r Rule
	var def string
	var disabled int
	var created, updated int64
	if err := sc.Scan(&r.ID, &r.Org, &r.Name, &def, &disabled, &r.Version, &created, &updated); err != nil {
		return Rule{}, err
	}
	var d definition
	if err := json.Unmarshal([]byte(def), &d); err != nil {
		return Rule{}, fmt.Errorf("decode rule %s: %w", r.ID, err)
	}
	r.Description, r.Condition, r.Severity, r.Scope = d.Description, d.Condition, alerts.Severity(d.Severity), d.Scope
	r.For, r.ClearAfter, r.ClearFor, r.ManualResolve, r.Actions = d.For, d.ClearAfter, d.ClearFor, d.ManualResolve, d.Actions
	r.Disabled = disabled != 0
	r.CreatedAt, r.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return r, nil
}

func (s *Store) bump(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE rules_meta SET v = v + 1 WHERE k = 'changes'`)
	return err
}

func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("rules: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := s.bump(ctx, tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("rules: record change: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rules: commit: %w", err)
	}
	return nil
}

// Create validates and compiles the rule and stores it, enabled unless
// r.Disabled. A condition that does not compile is refused with a
// *CompileError naming the line and column.
func (s *Store) Create(ctx context.Context, r Rule) (Rule, error) {
	if r.Org == "" {
		return Rule{}, fmt.Errorf("%w: a rule belongs to an organization", ErrInvalid)
	}
	if err := s.Check(r); err != nil {
		return Rule{}, err
	}
	_ = r.validate() // normalise (trimmed name, default severity)
	now := s.now()
	r.ID, r.Version, r.CreatedAt, r.UpdatedAt = newID(now), 1, now.UTC().Truncate(time.Millisecond), now.UTC().Truncate(time.Millisecond)
	def, err := encodeDef(r)
	if err != nil {
		return Rule{}, fmt.Errorf("rules: encode: %w", err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO rules_rules (`+ruleCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
			r.ID, r.Org, r.Name, def, boolInt(r.Disabled), r.Version, now.UnixMilli(), now.UnixMilli())
		if err != nil && sqldb.IsUnique(err) {
			return fmt.Errorf("%w: a rule named %q exists in this organization; choose another name", ErrConflict, r.Name)
		}
		if err != nil {
			return fmt.Errorf("rules: create: %w", err)
		}
		return nil
	})
	if err != nil {
		return Rule{}, err
	}
	return r, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Get returns one rule of org.
func (s *Store) Get(ctx context.Context, org, id string) (Rule, error) {
	r, err := scanRule(s.db.QueryRowContext(ctx, s.q(`SELECT `+ruleCols+` FROM rules_rules WHERE org = ? AND id = ?`), org, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Rule{}, fmt.Errorf("%w: rule %s", ErrNotFound, id)
	}
	if err != nil {
		return Rule{}, fmt.Errorf("rules: get %s: %w", id, err)
	}
	return r, nil
}

// ListFilter pages List.
type ListFilter struct {
	Limit int    // default 100, at most 1000
	After string // cursor: RulePage.Next of the previous page
}

// RulePage is one page of List, oldest first.
type RulePage struct {
	Items []Rule `json:"items"`
	Next  string `json:"next,omitempty"`
}

// List returns the rules of org.
func (s *Store) List(ctx context.Context, org string, f ListFilter) (RulePage, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+ruleCols+` FROM rules_rules WHERE org = ? AND id > ? ORDER BY id LIMIT ?`), org, f.After, f.Limit+1)
	if err != nil {
		return RulePage{}, fmt.Errorf("rules: list: %w", err)
	}
	defer rows.Close()
	p := RulePage{Items: []Rule{}}
	for rows.Next() {
		r, err := scanRule(rows)
		if err != nil {
			return RulePage{}, fmt.Errorf("rules: list: %w", err)
		}
		p.Items = append(p.Items, r)
	}
	if err := rows.Err(); err != nil {
		return RulePage{}, fmt.Errorf("rules: list: %w", err)
	}
	if len(p.Items) > f.Limit {
		p.Items = p.Items[:f.Limit]
		p.Next = p.Items[f.Limit-1].ID
	}
	return p, nil
}

// Update replaces the definition of rule r.ID of r.Org (name, condition,
// severity, scope, durations, actions); Disabled is changed only by Enable
// and Disable. The version goes up, which restarts the rule's "for" timer
// and hysteresis per device (an alert it has open stays known so it can
// clear); windows belong to the device and field, shared by rules, and stay.
func (s *Store) Update(ctx context.Context, r Rule) (Rule, error) {
	if err := s.Check(r); err != nil {
		return Rule{}, err
	}
	_ = r.validate()
	def, err := encodeDef(r)
	if err != nil {
		return Rule{}, fmt.Errorf("rules: encode: %w", err)
	}
	now := s.now()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE rules_rules SET name = ?, def = ?, version = version + 1, updated_at = ? WHERE org = ? AND id = ?`),
			r.Name, def, now.UnixMilli(), r.Org, r.ID)
		if err != nil && sqldb.IsUnique(err) {
			return fmt.Errorf("%w: a rule named %q exists in this organization; choose another name", ErrConflict, r.Name)
		}
		if err != nil {
			return fmt.Errorf("rules: update %s: %w", r.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: rule %s", ErrNotFound, r.ID)
		}
		return nil
	})
	if err != nil {
		return Rule{}, err
	}
	return s.Get(ctx, r.Org, r.ID)
}

// Delete removes a rule. Its open alerts stay as they are.
func (s *Store) Delete(ctx context.Context, org, id string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM rules_rules WHERE org = ? AND id = ?`), org, id)
		if err != nil {
			return fmt.Errorf("rules: delete %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: rule %s", ErrNotFound, id)
		}
		return nil
	})
}

// Enable and Disable switch a rule on and off.
func (s *Store) Enable(ctx context.Context, org, id string) (Rule, error) {
	return s.setDisabled(ctx, org, id, false)
}
func (s *Store) Disable(ctx context.Context, org, id string) (Rule, error) {
	return s.setDisabled(ctx, org, id, true)
}

func (s *Store) setDisabled(ctx context.Context, org, id string, disabled bool) (Rule, error) {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE rules_rules SET disabled = ?, updated_at = ? WHERE org = ? AND id = ?`),
			boolInt(disabled), s.now().UnixMilli(), org, id)
		if err != nil {
			return fmt.Errorf("rules: switch %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: rule %s", ErrNotFound, id)
		}
		return nil
	})
	if err != nil {
		return Rule{}, err
	}
	return s.Get(ctx, org, id)
}

// Enabled returns the enabled rules of every organization, for the engine.
func (s *Store) Enabled(ctx context.Context) ([]Rule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+ruleCols+` FROM rules_rules WHERE disabled = 0 ORDER BY org, id`)
	if err != nil {
		return nil, fmt.Errorf("rules: load: %w", err)
	}
	defer rows.Close()
	var out []Rule
	for rows.Next() {
		r, err := scanRule(rows)
		if err != nil {
			return nil, fmt.Errorf("rules: load: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Changes is a counter that moves on every change to any rule; the engine
// polls it to pick up changes made by other processes.
func (s *Store) Changes(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, `SELECT v FROM rules_meta WHERE k = 'changes'`).Scan(&v); err != nil {
		return 0, fmt.Errorf("rules: read change counter: %w", err)
	}
	return v, nil
}

// RuleActions returns the actions of a rule; it serves the actions
// dispatcher (actions.Source).
func (s *Store) RuleActions(ctx context.Context, org, rule string) ([]actions.Spec, error) {
	r, err := s.Get(ctx, org, rule)
	if err != nil {
		return nil, err
	}
	return r.Actions, nil
}

type stateRow struct {
	org, device string
	data        []byte
}

func (s *Store) saveStates(ctx context.Context, rows []stateRow, gone [][2]string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("rules: save state: %w", err)
	}
	defer tx.Rollback()
	up, err := tx.PrepareContext(ctx, s.q(`INSERT INTO rules_state (org, device, data, saved_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (org, device) DO UPDATE SET data = excluded.data, saved_at = excluded.saved_at`))
	if err != nil {
		return fmt.Errorf("rules: save state: %w", err)
	}
	defer up.Close()
	now := s.now().UnixMilli()
	for _, r := range rows {
		if _, err := up.ExecContext(ctx, r.org, r.device, string(r.data), now); err != nil {
			return fmt.Errorf("rules: save state of %s: %w", r.device, err)
		}
	}
	for _, g := range gone {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM rules_state WHERE org = ? AND device = ?`), g[0], g[1]); err != nil {
			return fmt.Errorf("rules: drop state of %s: %w", g[1], err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rules: save state: %w", err)
	}
	return nil
}

func (s *Store) loadStates(ctx context.Context, fn func(org, device string, data []byte) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT org, device, data FROM rules_state`)
	if err != nil {
		return fmt.Errorf("rules: load state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var org, dev, data string
		if err := rows.Scan(&org, &dev, &data); err != nil {
			return fmt.Errorf("rules: load state: %w", err)
		}
		if err := fn(org, dev, []byte(data)); err != nil {
			return err
		}
	}
	return rows.Err()
}
