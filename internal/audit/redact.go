package audit

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Redacted replaces the value of every secret field in Before and After.
const Redacted = "[redacted]"

// secretNames are field names, lower case without - and _, whose values
// are secrets wherever they appear: device and enrollment group keys, API
// tokens, passwords, webhook signing secrets, SIM credentials (Ki, OPc)
// and SD-Core credentials.
var secretNames = map[string]bool{
	"password": true, "passwd": true, "currentpassword": true, "newpassword": true,
	"secret": true, "token": true, "key": true, "ki": true, "opc": true,
	"authorization": true, "credentials": true, "credential": true, "privatekey": true,
	"sas": true, "signature": true, "sharedaccesskey": true, "connectionstring": true,
}

// secretSuffixes catch the many spellings: primaryKey, groupKey, apiKey,
// sasToken, accessToken, clientSecret, webhookSecret, adminPassword, ….
var secretSuffixes = []string{"key", "secret", "token", "password", "credentials", "connectionstring"}

// IsSecret says whether a JSON field of that name holds a secret.
func IsSecret(name string) bool {
	n := strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(name))
	if secretNames[n] {
		return true
	}
	for _, s := range secretSuffixes {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

// Redact returns doc with the value of every secret field, at any depth,
// replaced by Redacted, and every value of a "headers" or "keys" object
// too (a webhook's Authorization or API key header). A document that is not JSON
// is not kept at all: nothing unchecked reaches the log.
func Redact(doc json.RawMessage) json.RawMessage {
	doc = bytes.TrimSpace(doc)
	if len(doc) == 0 || bytes.Equal(doc, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return json.RawMessage(`{"unreadable":"the value was not JSON and is not kept"}`)
	}
	out, err := json.Marshal(redactValue(v, false))
	if err != nil {
		return json.RawMessage(`{"unreadable":"the value could not be encoded and is not kept"}`)
	}
	return out
}

func redactValue(v any, all bool) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch {
			case all || IsSecret(k):
				if val != nil && val != "" {
					x[k] = Redacted
				}
			case strings.EqualFold(k, "headers"), strings.EqualFold(k, "keys"):
				x[k] = redactValue(val, true)
			default:
				x[k] = redactValue(val, false)
			}
		}
		return x
	case []any:
		for i := range x {
			x[i] = redactValue(x[i], all)
		}
		return x
	case string:
		if all {
			return Redacted
		}
	}
	return v
}
