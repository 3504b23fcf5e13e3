package users

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Session is one signed-in browser.
type Session struct {
	// ID is the cookie value; the table keeps only its SHA-256.
	ID string
	// User is the user id of a password sign-in, "" for a token sign-in.
	User string
	// Secret is the API token of a token sign-in; stored encrypted with a
	// key derived from ID.
	Secret  string
	CSRF    string
	Org     string // organization the browser acts on
	Expires time.Time
}

func idHash(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

func sessionAEAD(id string) (cipher.AEAD, error) {
	key := sha256.Sum256([]byte("shopfloor console session key\x00" + id))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(id, secret string) (string, error) {
	aead, err := sessionAEAD(id)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawStdEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(secret), nil)), nil
}

func unseal(id, sealed string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil {
		return "", err
	}
	aead, err := sessionAEAD(id)
	if err != nil {
		return "", err
	}
	if len(b) < aead.NonceSize() {
		return "", errors.New("sealed secret too short")
	}
	plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], nil)
	return string(plain), err
}

// SaveSession inserts or replaces a session.
func (s *Service) SaveSession(ctx context.Context, ss Session) error {
	sealed, err := seal(ss.ID, ss.Secret)
	if err != nil {
		return fmt.Errorf("seal session: %w", err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO console_sessions (id_hash, user_id, sealed_secret, csrf, org, expires_ms) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id_hash) DO UPDATE SET user_id = excluded.user_id, sealed_secret = excluded.sealed_secret, csrf = excluded.csrf, org = excluded.org, expires_ms = excluded.expires_ms`),
		idHash(ss.ID), ss.User, sealed, ss.CSRF, ss.Org, ss.Expires.UnixMilli())
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// LoadSession returns the session of cookie value id; false when it is
// unknown or expired.
func (s *Service) LoadSession(ctx context.Context, id string) (Session, bool, error) {
	ss := Session{ID: id}
	var sealed string
	var exp int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT user_id, sealed_secret, csrf, org, expires_ms FROM console_sessions WHERE id_hash = ?`), idHash(id)).
		Scan(&ss.User, &sealed, &ss.CSRF, &ss.Org, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, fmt.Errorf("load session: %w", err)
	}
	ss.Expires = time.UnixMilli(exp)
	if s.now().After(ss.Expires) {
		return Session{}, false, s.DeleteSession(ctx, id)
	}
	if ss.Secret, err = unseal(id, sealed); err != nil {
		return Session{}, false, nil // not this cookie's row: treat as unknown
	}
	return ss, true, nil
}

// DeleteSession signs a browser out.
func (s *Service) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM console_sessions WHERE id_hash = ?`), idHash(id)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions drops sessions that expired before now.
func (s *Service) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM console_sessions WHERE expires_ms < ?`), s.now().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
