package users

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/sqldb"
)

// User is a console account. The password hash never leaves the package.
type User struct {
	ID        string        `json:"id"`
	Org       string        `json:"org"`
	Name      string        `json:"name"`
	Role      registry.Role `json:"role"`
	CreatedAt time.Time     `json:"createdAt"`
}

// Config configures a Service. DB and Driver are required.
type Config struct {
	DB *sql.DB
	// Driver is the database/sql driver name: "sqlite" or "pgx".
	Driver string
	// Cost is the bcrypt cost; bcrypt.DefaultCost (10) when zero. Tests
	// use bcrypt.MinCost.
	Cost int
	Now  func() time.Time
}

// Service stores users and sessions.
type Service struct {
	db    *sql.DB
	pg    bool
	cost  int
	now   func() time.Time
	dummy []byte // hash compared when the name is unknown, so timing does not reveal names
}

// MinPassword and MaxPassword bound a password's length in bytes; bcrypt
// reads at most 72 bytes.
const (
	MinPassword = 10
	MaxPassword = 72
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// New creates the tables if needed.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("users: a database is required")
	}
	s := &Service{db: cfg.DB, cost: cfg.Cost, now: cfg.Now}
	switch cfg.Driver {
	case "sqlite":
	case "pgx":
		s.pg = true
	default:
		return nil, fmt.Errorf("users: database driver %q is not supported; use sqlite or pgx", cfg.Driver)
	}
	if s.cost == 0 {
		s.cost = bcrypt.DefaultCost
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS console_users (
			id TEXT PRIMARY KEY,
			org TEXT NOT NULL,
			name TEXT NOT NULL UNIQUE,
			role TEXT NOT NULL,
			password_hash TEXT NOT NULL,
			created_ms BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS console_users_org ON console_users (org, name)`,
		`CREATE TABLE IF NOT EXISTS console_sessions (
			id_hash TEXT PRIMARY KEY,
			user_id TEXT NOT NULL,
			sealed_secret TEXT NOT NULL,
			csrf TEXT NOT NULL,
			org TEXT NOT NULL,
			expires_ms BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_ms)`,
	} {
		if _, err := cfg.DB.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("users: create tables: %w", err)
		}
	}
	var err error
	if s.dummy, err = bcrypt.GenerateFromPassword([]byte("not a password of anyone"), s.cost); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return s, nil
}

func (s *Service) q(query string) string { return sqldb.Rebind(s.pg, query) }

// Create adds a user to org. Names are unique on the hub, because the
// sign-in form does not ask for an organization.
func (s *Service) Create(ctx context.Context, org, name, password string, role registry.Role) (User, error) {
	name = strings.TrimSpace(name)
	if !nameRE.MatchString(name) {
		return User{}, fmt.Errorf("user name %q must be 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit: %w", name, registry.ErrInvalid)
	}
	switch role {
	case registry.RoleAdmin, registry.RoleOperator, registry.RoleViewer:
	default:
		return User{}, fmt.Errorf("role must be viewer, operator or admin, not %q: %w", role, registry.ErrInvalid)
	}
	if err := checkPassword(password); err != nil {
		return User{}, err
	}
	if org == "" {
		return User{}, fmt.Errorf("a user belongs to an organization: %w", registry.ErrInvalid)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return User{}, fmt.Errorf("hash the password: %w", err)
	}
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	u := User{ID: "usr_" + hex.EncodeToString(b), Org: org, Name: name, Role: role, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO console_users (id, org, name, role, password_hash, created_ms) VALUES (?, ?, ?, ?, ?, ?)`),
		u.ID, u.Org, u.Name, string(u.Role), string(hash), u.CreatedAt.UnixMilli())
	if err != nil {
		if sqldb.IsUnique(err) {
			return User{}, fmt.Errorf("user name %q is taken on this hub; choose another: %w", name, registry.ErrConflict)
		}
		return User{}, fmt.Errorf("save user %s: %w", name, err)
	}
	return u, nil
}

const userCols = `id, org, name, role, created_ms`

func scanUser(sc interface{ Scan(...any) error }) (User, error) {
	var u User
	var role string
	var created int64
	if err := sc.Scan(&u.ID, &u.Org, &u.Name, &role, &created); err != nil {
		return User{}, err
	}
	u.Role, u.CreatedAt = registry.Role(role), time.UnixMilli(created).UTC()
	return u, nil
}

// Get returns a user by id in any organization.
func (s *Service) Get(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, s.q(`SELECT `+userCols+` FROM console_users WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q does not exist: %w", id, registry.ErrNotFound)
	}
	return u, err
}

// List returns org's users by name.
func (s *Service) List(ctx context.Context, org string) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+userCols+` FROM console_users WHERE org = ? ORDER BY name`), org)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Delete removes a user of org and signs out its browsers.
func (s *Service) Delete(ctx context.Context, org, id string) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM console_users WHERE org = ? AND id = ?`), org, id)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %q does not exist in this organization: %w", id, registry.ErrNotFound)
	}
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM console_sessions WHERE user_id = ?`), id); err != nil {
		return fmt.Errorf("sign out user %s: %w", id, err)
	}
	return nil
}

// Authenticate checks a name and password. Unknown names and wrong
// passwords both wrap registry.ErrUnauthorized and take the same time.
func (s *Service) Authenticate(ctx context.Context, name, password string) (User, error) {
	var hash string
	u := User{}
	var role string
	var created int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, org, name, role, created_ms, password_hash FROM console_users WHERE name = ?`), strings.TrimSpace(name)).
		Scan(&u.ID, &u.Org, &u.Name, &role, &created, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(s.dummy, []byte(password))
		return User{}, fmt.Errorf("wrong user name or password: %w", registry.ErrUnauthorized)
	}
	if err != nil {
		return User{}, fmt.Errorf("look up user: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return User{}, fmt.Errorf("wrong user name or password: %w", registry.ErrUnauthorized)
	}
	u.Role, u.CreatedAt = registry.Role(role), time.UnixMilli(created).UTC()
	return u, nil
}

// ChangePassword sets user id's password after checking the current one,
// and signs out the user's other browsers: every session but keep (the
// cookie value of the browser that made the change; "" signs out all).
func (s *Service) ChangePassword(ctx context.Context, id, current, next, keep string) error {
	var org, hash string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT org, password_hash FROM console_users WHERE id = ?`), id).Scan(&org, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("user %q does not exist: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("look up user: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(current)) != nil {
		return fmt.Errorf("the current password is wrong: %w", registry.ErrUnauthorized)
	}
	if next == current {
		return fmt.Errorf("the new password is the current one; choose another: %w", registry.ErrInvalid)
	}
	return s.storePassword(ctx, org, id, next, keep)
}

// SetPassword is an admin's reset of a user's password in org: no current
// password is asked, and every browser of the user is signed out.
func (s *Service) SetPassword(ctx context.Context, org, id, next string) error {
	return s.storePassword(ctx, org, id, next, "")
}

// storePassword replaces the password of user id in org and deletes the
// user's sessions other than keep, in one transaction.
func (s *Service) storePassword(ctx context.Context, org, id, next, keep string) error {
	if err := checkPassword(next); err != nil {
		return err
	}
	nh, err := bcrypt.GenerateFromPassword([]byte(next), s.cost)
	if err != nil {
		return fmt.Errorf("hash the password: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(`UPDATE console_users SET password_hash = ? WHERE org = ? AND id = ?`), string(nh), org, id)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %q does not exist in this organization: %w", id, registry.ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM console_sessions WHERE user_id = ? AND id_hash <> ?`), id, idHash(keep)); err != nil {
		return fmt.Errorf("sign out the user's browsers: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return nil
}

func checkPassword(pw string) error {
	if len(pw) < MinPassword || len(pw) > MaxPassword {
		return fmt.Errorf("a password needs %d to %d characters: %w", MinPassword, MaxPassword, registry.ErrInvalid)
	}
	return nil
}
