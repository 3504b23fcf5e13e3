package registry

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits enforced on input. They are generous for real plants and keep a
// single bad request from filling the database.
const (
	MaxIDLen       = 128
	MaxOrgIDLen    = 63
	MaxNameLen     = 200
	MaxTags        = 64
	MaxTagKeyLen   = 64
	MaxTagValueLen = 256
	MinKeyBytes    = 16
	MaxKeyBytes    = 64
	// MinAdminSecretLen guards the bootstrap admin secret given in config.
	MinAdminSecretLen = 16
	// MaxErrorLen bounds what RecordDeviceError keeps of a message.
	MaxErrorLen = 1024
	// TokenPrefix starts every generated API token secret, so secret
	// scanners and people recognise a leaked token.
	TokenPrefix = "sft_"
)

// ValidateDeviceID reports whether id can be a device id (also the MQTT
// client id): 1 to 128 of letters, digits and . _ : -.
func ValidateDeviceID(id string) error {
	return checkID("device id", id)
}

// checkID validates ids of devices, sites, templates, enrollment groups and
// CA certificates: ^[A-Za-z0-9._:-]{1,128}$.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s is required: use letters, digits and . _ : - (at most %d): %w", what, MaxIDLen, ErrInvalid)
	}
	if len(id) > MaxIDLen || !idChars(id) {
		return fmt.Errorf("%s %q is invalid: use letters, digits and . _ : - (at most %d): %w", what, id, MaxIDLen, ErrInvalid)
	}
	return nil
}

// IsID reports whether s has the form of an id: 1 to MaxIDLen letters,
// digits and . _ : -. Every listed collection pages by such ids.
func IsID(s string) bool { return s != "" && len(s) <= MaxIDLen && idChars(s) }

func idChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// checkOrgID validates organization ids. They are stricter than device ids
// (lowercase, no dots) because they name tenants in URLs, bus subjects and
// metric labels.
func checkOrgID(id string) error {
	ok := id != "" && len(id) <= MaxOrgIDLen && id[0] != '-' && id[len(id)-1] != '-'
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("organization id %q is invalid: use lowercase letters, digits and - (at most %d, not starting or ending with -): %w", id, MaxOrgIDLen, ErrInvalid)
	}
	return nil
}

// checkName validates a display name: 1 to 200 printable characters.
func checkName(what, name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%s is required: %w", what, ErrInvalid)
	}
	if !printable(name) || utf8.RuneCountInString(name) > MaxNameLen {
		return fmt.Errorf("%s %q is invalid: use 1 to %d printable characters: %w", what, name, MaxNameLen, ErrInvalid)
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkTemplate allows an empty template (none) or a template id.
func checkTemplate(t string) error {
	if t == "" {
		return nil
	}
	return checkID("template", t)
}

// checkTags validates tag keys (letters, digits, _ . -, starting with a
// letter or _) and values (printable, at most 256 characters).
func checkTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("too many tags (%d): at most %d are allowed: %w", len(tags), MaxTags, ErrInvalid)
	}
	for k, v := range tags {
		ok := k != "" && len(k) <= MaxTagKeyLen && (k[0] == '_' || 'a' <= k[0] && k[0] <= 'z' || 'A' <= k[0] && k[0] <= 'Z')
		for i := 0; ok && i < len(k); i++ {
			c := k[i]
			ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
		}
		if !ok {
			return fmt.Errorf("tag key %q is invalid: start with a letter or _, then use letters, digits and _ . - (at most %d): %w", k, MaxTagKeyLen, ErrInvalid)
		}
		if !printable(v) || utf8.RuneCountInString(v) > MaxTagValueLen {
			return fmt.Errorf("tag %q has an invalid value %q: use at most %d printable characters: %w", k, v, MaxTagValueLen, ErrInvalid)
		}
	}
	return nil
}

// checkKey validates a symmetric key given by the user: standard base64 of
// 16 to 64 bytes.
func checkKey(what, key string) error {
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(b) < MinKeyBytes || len(b) > MaxKeyBytes {
		return fmt.Errorf("%s is invalid: give standard base64 of %d to %d random bytes, or leave it empty to generate one: %w", what, MinKeyBytes, MaxKeyBytes, ErrInvalid)
	}
	return nil
}

// normalizeThumbprint accepts a hex SHA-256 thumbprint with optional colons
// or spaces (as certificate tools print it) and returns lowercase hex.
func normalizeThumbprint(tp string) (string, error) {
	s := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(tp)))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("thumbprint %q is invalid: give the SHA-256 of the device certificate as 64 hex digits (openssl x509 -noout -fingerprint -sha256): %w", tp, ErrInvalid)
	}
	return s, nil
}

func checkAuth(a AuthKind) error {
	switch a {
	case AuthSAS, AuthX509Self, AuthX509CA:
		return nil
	}
	return fmt.Errorf("auth %q is invalid: use %s, %s or %s: %w", a, AuthSAS, AuthX509Self, AuthX509CA, ErrInvalid)
}

func checkRole(r Role) error {
	switch r {
	case RoleAdmin, RoleOperator, RoleViewer:
		return nil
	}
	return fmt.Errorf("role %q is invalid: use %s, %s or %s: %w", r, RoleAdmin, RoleOperator, RoleViewer, ErrInvalid)
}

// DeriveKey returns the key of a device in an enrollment group, as Azure DPS
// does: base64(HMAC-SHA256(base64decode(groupKey), deviceID)).
func DeriveKey(groupKey, deviceID string) (string, error) {
	k, err := base64.StdEncoding.DecodeString(groupKey)
	if err != nil {
		return "", fmt.Errorf("enrollment group key is not valid base64: %w", ErrInvalid)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(deviceID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// HashSecret returns the stored form of an API token secret: hex SHA-256.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func randomBytes(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read random bytes: %w", err)
	}
	return b, nil
}

// newKey returns a device or group key: base64 of 32 random bytes.
func newKey(r io.Reader) (string, error) {
	b, err := randomBytes(r, 32)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// newSecret returns an API token secret: "sft_" + base64url of 32 random bytes.
func newSecret(r io.Reader) (string, error) {
	b, err := randomBytes(r, 32)
	if err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + 16 lowercase base32 characters (80 random bits).
func newID(r io.Reader, prefix string) (string, error) {
	b, err := randomBytes(r, 10)
	if err != nil {
		return "", err
	}
	return prefix + idEncoding.EncodeToString(b), nil
}

// slug turns a display name into an org or site id candidate: lowercase
// letters and digits, other runs replaced by one '-'.
func slug(name string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	s := b.String()
	if len(s) > max {
		s = s[:max]
	}
	return strings.TrimRight(s, "-")
}

func copyTags(t map[string]string) map[string]string {
	if len(t) == 0 {
		return nil
	}
	c := make(map[string]string, len(t))
	for k, v := range t {
		c[k] = v
	}
	return c
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the stored text stays valid UTF-8.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
