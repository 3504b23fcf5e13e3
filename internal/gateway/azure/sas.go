package azure

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors of SAS handling. They are wrapped with details.
var (
	ErrMalformed     = errors.New("malformed SAS token")
	ErrExpired       = errors.New("SAS token expired")
	ErrBadSignature  = errors.New("SAS token signature does not match the device key")
	ErrWrongResource = errors.New("SAS token is for another resource")
	ErrBadKey        = errors.New("invalid symmetric key")
)

const sasPrefix = "SharedAccessSignature "

// SAS is a parsed shared access signature token:
//
//	SharedAccessSignature sr={URL-encoded resource}&sig={URL-encoded base64 signature}&se={unix expiry}[&skn={key name}]
//
// The signature is base64(HMAC-SHA256(base64decode(key), sr + "\n" + se))
// computed over the sr and se values exactly as they appear in the token.
type SAS struct {
	Resource    string    // decoded sr, e.g. "hub.example.com/devices/press-1"
	RawResource string    // sr as it appears in the token: the signed form
	Signature   string    // base64 signature, URL-decoded
	Expiry      time.Time // se
	KeyName     string    // skn, optional (policy name); device tokens have none
	rawExpiry   string    // se as it appears in the token: the signed form
}

// SASToken builds a device SAS token for host/devices/deviceID signed with
// key (base64, as stored in the registry) and valid until expiry.
func SASToken(host, deviceID, key string, expiry time.Time) (string, error) {
	k, err := decodeKey(key)
	if err != nil {
		return "", err
	}
	sr := url.QueryEscape(host + "/devices/" + deviceID)
	se := strconv.FormatInt(expiry.Unix(), 10)
	sig := sign(k, sr, se)
	return sasPrefix + "sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + se, nil
}

// String formats the token again; ParseSAS(s.String()) yields s.
func (s SAS) String() string {
	var b strings.Builder
	b.WriteString(sasPrefix)
	b.WriteString("sr=")
	b.WriteString(s.RawResource)
	b.WriteString("&sig=")
	b.WriteString(escapeValue(s.Signature))
	b.WriteString("&se=")
	b.WriteString(s.expiryText())
	if s.KeyName != "" {
		b.WriteString("&skn=")
		b.WriteString(escapeValue(s.KeyName))
	}
	return b.String()
}

func (s SAS) expiryText() string {
	if s.rawExpiry != "" {
		return s.rawExpiry
	}
	return strconv.FormatInt(s.Expiry.Unix(), 10)
}

// ParseSAS parses a SAS token. Fields may come in any order; unknown fields
// are ignored, duplicates are refused.
func ParseSAS(s string) (SAS, error) {
	var out SAS
	if len(s) < len(sasPrefix) || !strings.EqualFold(s[:len(sasPrefix)], sasPrefix) {
		return out, fmt.Errorf("%w: the password must start with %q followed by sr=...&sig=...&se=...", ErrMalformed, strings.TrimSpace(sasPrefix))
	}
	rest := strings.TrimSpace(s[len(sasPrefix):])
	var seenSR, seenSig, seenSE, seenSKN bool
	for rest != "" {
		var field string
		field, rest, _ = strings.Cut(rest, "&")
		if field == "" {
			continue
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return out, fmt.Errorf("%w: field %q has no '='", ErrMalformed, clip(field))
		}
		// PathUnescape, not QueryUnescape: a '+' in an unencoded base64
		// signature must stay a '+'.
		dv, err := url.PathUnescape(v)
		if err != nil {
			return out, fmt.Errorf("%w: field %s is not valid URL encoding", ErrMalformed, clip(k))
		}
		switch k {
		case "sr":
			if seenSR {
				return out, fmt.Errorf("%w: sr appears twice", ErrMalformed)
			}
			seenSR = true
			out.RawResource, out.Resource = v, dv
		case "sig":
			if seenSig {
				return out, fmt.Errorf("%w: sig appears twice", ErrMalformed)
			}
			seenSig = true
			out.Signature = dv
		case "se":
			if seenSE {
				return out, fmt.Errorf("%w: se appears twice", ErrMalformed)
			}
			seenSE = true
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || n > maxUnixSeconds || strconv.FormatInt(n, 10) != v {
				return out, fmt.Errorf("%w: se must be the expiry as unix seconds, got %q", ErrMalformed, clip(v))
			}
			out.Expiry, out.rawExpiry = time.Unix(n, 0).UTC(), v
		case "skn":
			if seenSKN {
				return out, fmt.Errorf("%w: skn appears twice", ErrMalformed)
			}
			seenSKN = true
			out.KeyName = dv
		}
	}
	switch {
	case !seenSR || out.Resource == "":
		return out, fmt.Errorf("%w: missing sr (the resource, {host}/devices/{deviceId})", ErrMalformed)
	case !seenSig || out.Signature == "":
		return out, fmt.Errorf("%w: missing sig (the signature)", ErrMalformed)
	case !seenSE:
		return out, fmt.Errorf("%w: missing se (the expiry in unix seconds)", ErrMalformed)
	}
	return out, nil
}

// maxUnixSeconds is the end of year 9999, the largest expiry accepted.
const maxUnixSeconds = 253402300799

// VerifySAS checks that s is signed with key, not expired at now, and, when
// resource is not empty, that it is for that resource (case-insensitive, as
// host names are). The comparison of signatures is constant-time.
func VerifySAS(s SAS, resource string, key string, now time.Time) error {
	if resource != "" && !strings.EqualFold(strings.TrimSuffix(s.Resource, "/"), strings.TrimSuffix(resource, "/")) {
		return fmt.Errorf("%w: token is for %q, expected %q", ErrWrongResource, clip(s.Resource), resource)
	}
	k, err := decodeKey(key)
	if err != nil {
		return err
	}
	got, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: sig is not a base64 HMAC-SHA256 signature", ErrMalformed)
	}
	se := s.expiryText()
	ok := macEqual(k, s.RawResource, se, got)
	// Clients differ in how they URL-encode sr (%2F or %2f, or not at all);
	// accept a signature over the canonical encoding or the plain resource.
	if !ok {
		if canon := url.QueryEscape(s.Resource); canon != s.RawResource {
			ok = macEqual(k, canon, se, got)
		}
	}
	if !ok && s.Resource != s.RawResource {
		ok = macEqual(k, s.Resource, se, got)
	}
	if !ok {
		return ErrBadSignature
	}
	if !now.Before(s.Expiry) {
		return fmt.Errorf("%w at %s (now %s): generate a new token", ErrExpired, s.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// DeriveKey derives a device key from an enrollment group key as Azure DPS
// does: base64(HMAC-SHA256(base64decode(groupKey), deviceID)).
func DeriveKey(groupKey, deviceID string) (string, error) {
	k, err := decodeKey(groupKey)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(deviceID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// ConnectionString formats a device connection string as the Azure SDKs
// read it.
func ConnectionString(host, deviceID, key string) string {
	return "HostName=" + host + ";DeviceId=" + deviceID + ";SharedAccessKey=" + key
}

// ParseConnectionString reads HostName, DeviceId and SharedAccessKey from a
// device connection string.
func ParseConnectionString(s string) (host, deviceID, key string, err error) {
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "HostName":
			host = v
		case "DeviceId":
			deviceID = v
		case "SharedAccessKey":
			key = v
		}
	}
	if host == "" || deviceID == "" || key == "" {
		return "", "", "", fmt.Errorf("%w: connection string needs HostName=...;DeviceId=...;SharedAccessKey=...", ErrMalformed)
	}
	return host, deviceID, key, nil
}

func decodeKey(key string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("%w: the key must be base64, as shown by 'shopfloor device show'", ErrBadKey)
	}
	return k, nil
}

func sign(key []byte, sr, se string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr))
	m.Write([]byte{'\n'})
	m.Write([]byte(se))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func macEqual(key []byte, sr, se string, want []byte) bool {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr))
	m.Write([]byte{'\n'})
	m.Write([]byte(se))
	var sum [sha256.Size]byte
	return subtle.ConstantTimeCompare(m.Sum(sum[:0]), want) == 1
}

// escapeValue URL-encodes a token field so that ParseSAS, which decodes
// with PathUnescape, restores it: spaces become %20, not '+'.
func escapeValue(v string) string {
	return strings.ReplaceAll(url.QueryEscape(v), "+", "%20")
}

// clip keeps attacker-controlled text in error messages short.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
