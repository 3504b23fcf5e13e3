package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. The API maps them to HTTP statuses, the gateway to the
// status of a twin response.
var (
	ErrInvalid      = errors.New("invalid twin patch")
	ErrTooLarge     = errors.New("twin too large")
	ErrPrecondition = errors.New("twin changed since it was read")
	ErrNotFound     = errors.New("not found")
	ErrQueueFull    = errors.New("cloud-to-device queue full")
	ErrConfig       = errors.New("invalid twin store configuration")
)

// Limits as IoT Hub documents them.
const (
	MaxDesiredBytes  = 32 * 1024
	MaxReportedBytes = 32 * 1024
	MaxTagsBytes     = 8 * 1024
	MaxDepth         = 10 // levels of nested objects below the root
	maxKeyBytes      = 1024
)

// Twin is a device twin.
type Twin struct {
	Org             string
	DeviceID        string
	Version         int64 // rises on every change of tags, desired or reported
	Tags            map[string]any
	Desired         map[string]any
	Reported        map[string]any
	DesiredVersion  int64
	ReportedVersion int64
	Updated         time.Time
}

// ETag is the twin's entity tag: its version, quoted as HTTP wants it.
func (t Twin) ETag() string { return `"` + strconv.FormatInt(t.Version, 10) + `"` }

// MatchesETag says whether an If-Match value names this twin's version;
// "*" matches any.
func (t Twin) MatchesETag(v string) bool {
	v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "W/"))
	return v == "*" || v == t.ETag() || v == strconv.FormatInt(t.Version, 10)
}

// withVersion returns a copy of props with $version added.
func withVersion(props map[string]any, v int64) map[string]any {
	out := make(map[string]any, len(props)+1)
	for k, x := range props {
		out[k] = x
	}
	out["$version"] = v
	return out
}

// DeviceDocument is what a device receives for a twin GET:
// {"desired":{…,"$version":n},"reported":{…,"$version":m}}.
func (t Twin) DeviceDocument() ([]byte, error) {
	return json.Marshal(map[string]any{
		"desired":  withVersion(t.Desired, t.DesiredVersion),
		"reported": withVersion(t.Reported, t.ReportedVersion),
	})
}

// MarshalJSON writes the service view of the twin:
// {"deviceId","etag","version","tags","properties":{"desired","reported"}}.
func (t Twin) MarshalJSON() ([]byte, error) {
	tags := t.Tags
	if tags == nil {
		tags = map[string]any{}
	}
	return json.Marshal(struct {
		DeviceID   string         `json:"deviceId"`
		ETag       string         `json:"etag"`
		Version    int64          `json:"version"`
		Tags       map[string]any `json:"tags"`
		Properties map[string]any `json:"properties"`
	}{t.DeviceID, t.ETag(), t.Version, tags, map[string]any{
		"desired":  withVersion(t.Desired, t.DesiredVersion),
		"reported": withVersion(t.Reported, t.ReportedVersion),
	}})
}

// Patch is a service-side change: tags and desired properties, each a JSON
// merge patch; nil leaves that part alone.
type Patch struct {
	Tags    json.RawMessage
	Desired json.RawMessage
}

// decodeObject parses a patch that must be a JSON object.
func decodeObject(what string, raw []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %s is not valid JSON: %v", ErrInvalid, what, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: %s has data after the JSON object", ErrInvalid, what)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s must be a JSON object such as {\"setpoint\": 72}", ErrInvalid, what)
	}
	return m, nil
}

// checkKeys refuses keys IoT Hub refuses: empty, starting with '$', or
// holding '.' or ' ', and nesting deeper than MaxDepth.
func checkKeys(what string, m map[string]any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: %s nests deeper than %d levels", ErrInvalid, what, MaxDepth)
	}
	for k, v := range m {
		switch {
		case k == "":
			return fmt.Errorf("%w: %s has an empty property name", ErrInvalid, what)
		case len(k) > maxKeyBytes:
			return fmt.Errorf("%w: %s has a property name longer than %d bytes", ErrInvalid, what, maxKeyBytes)
		case k[0] == '$':
			return fmt.Errorf("%w: %s: property %q: names starting with $ are reserved", ErrInvalid, what, clip(k))
		case strings.ContainsAny(k, ". "):
			return fmt.Errorf("%w: %s: property %q: names may not contain '.' or spaces", ErrInvalid, what, clip(k))
		}
		if sub, ok := v.(map[string]any); ok {
			if err := checkKeys(what, sub, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// merge applies an RFC 7386 merge patch to doc in place.
func merge(doc, patch map[string]any) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			cur, ok := doc[k].(map[string]any)
			if !ok {
				cur = map[string]any{}
			}
			merge(cur, pv)
			doc[k] = cur
		default:
			doc[k] = v
		}
	}
}

// applyPatch validates patch and merges it into a copy of doc, checking
// the size of the result against limit.
func applyPatch(what string, doc map[string]any, raw []byte, limit int) (map[string]any, map[string]any, error) {
	if len(raw) > limit {
		return nil, nil, fmt.Errorf("%w: the %s patch is %d bytes; the limit is %d bytes", ErrTooLarge, what, len(raw), limit)
	}
	p, err := decodeObject("the "+what+" patch", raw)
	if err != nil {
		return nil, nil, err
	}
	if err := checkKeys("the "+what+" patch", p, 1); err != nil {
		return nil, nil, err
	}
	out := deepCopy(doc)
	merge(out, p)
	b, err := json.Marshal(out)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", what, err)
	}
	if len(b) > limit {
		return nil, nil, fmt.Errorf("%w: the %s would be %d bytes after this patch; the limit is %d bytes (remove properties with null)", ErrTooLarge, what, len(b), limit)
	}
	return out, p, nil
}

func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = deepCopy(sub)
		}
		out[k] = v
	}
	return out
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
