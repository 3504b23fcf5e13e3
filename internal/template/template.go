package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Sentinel errors; the API maps them to HTTP statuses.
var (
	ErrInvalid  = errors.New("invalid template")
	ErrNotFound = errors.New("template not found")
	ErrExists   = errors.New("template already exists")
	ErrConfig   = errors.New("invalid template store configuration")
)

// Schemas a telemetry value, property or command payload may have (the DTDL
// primitive schemas plus object for structured payloads).
const (
	SchemaDouble  = "double"
	SchemaFloat   = "float"
	SchemaInteger = "integer"
	SchemaLong    = "long"
	SchemaBoolean = "boolean"
	SchemaString  = "string"
	SchemaObject  = "object"
)

var schemas = map[string]bool{SchemaDouble: true, SchemaFloat: true, SchemaInteger: true, SchemaLong: true,
	SchemaBoolean: true, SchemaString: true, SchemaObject: true}

// Template describes what devices of one kind send and accept.
type Template struct {
	ID          string      `json:"id"`
	Org         string      `json:"org,omitempty"`
	Name        string      `json:"name,omitempty"`
	Description string      `json:"description,omitempty"`
	Telemetry   []Telemetry `json:"telemetry"`
	Properties  []Property  `json:"properties"`
	Commands    []Command   `json:"commands"`
	Anomaly     *Anomaly    `json:"anomaly,omitempty"` // nil: the hub's default detection
	CreatedAt   time.Time   `json:"createdAt,omitzero"`
	UpdatedAt   time.Time   `json:"updatedAt,omitzero"`
}

// Anomaly is a template's anomaly detection setting (internal/anomaly
// reads it; zero values take that package's defaults).
type Anomaly struct {
	// Fields lists the numeric telemetry modelled; empty means all.
	Fields []string `json:"fields,omitempty"`
	// Kind is "univariate" (one model per field), "pca" (one model over
	// the fields together) or "rcf" (a random cut forest over the fields;
	// 0.4–2 MB per device).
	Kind string `json:"kind,omitempty"`
	// Sensitivity in (0,1), default 0.5: higher alerts sooner.
	Sensitivity float64 `json:"sensitivity,omitempty"`
	// Warmup is the learning period in updates, default 400.
	Warmup int `json:"warmup,omitempty"`
}

// Telemetry is one telemetry field a device sends.
type Telemetry struct {
	Name   string   `json:"name"`
	Schema string   `json:"schema"`
	Unit   string   `json:"unit,omitempty"`
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
}

// Property is a twin property: read-only ones are reported by the device,
// writable ones are set in desired and acknowledged in reported.
type Property struct {
	Name     string   `json:"name"`
	Schema   string   `json:"schema"`
	Unit     string   `json:"unit,omitempty"`
	Writable bool     `json:"writable"`
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
}

// Command is a direct method; an empty schema accepts any payload.
type Command struct {
	Name     string `json:"name"`
	Request  string `json:"request,omitempty"`
	Response string `json:"response,omitempty"`
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$`)

// Validate checks a template as a plant engineer would write it.
func (t Template) Validate() error {
	if !idRE.MatchString(t.ID) {
		return fmt.Errorf("%w: id %q must be 1 to 128 letters, digits and . _ : - starting with a letter or digit", ErrInvalid, t.ID)
	}
	check := func(kind, name, schema string, lo, hi *float64, seen map[string]bool) error {
		switch {
		case !nameRE.MatchString(name):
			return fmt.Errorf("%w: %s name %q must be 1 to 128 letters, digits and . _ : -", ErrInvalid, kind, name)
		case seen[name]:
			return fmt.Errorf("%w: %s %q is declared twice", ErrInvalid, kind, name)
		case schema != "" && !schemas[schema]:
			return fmt.Errorf("%w: %s %q has schema %q; use double, float, integer, long, boolean, string or object", ErrInvalid, kind, name, schema)
		case (lo != nil || hi != nil) && !numeric(schema):
			return fmt.Errorf("%w: %s %q: min and max apply only to numeric schemas", ErrInvalid, kind, name)
		case lo != nil && hi != nil && *lo > *hi:
			return fmt.Errorf("%w: %s %q: min %g is above max %g", ErrInvalid, kind, name, *lo, *hi)
		}
		seen[name] = true
		return nil
	}
	seen := map[string]bool{}
	for _, x := range t.Telemetry {
		if x.Schema == "" || x.Schema == SchemaObject {
			return fmt.Errorf("%w: telemetry %q needs a primitive schema (double, float, integer, long, boolean or string)", ErrInvalid, x.Name)
		}
		if err := check("telemetry", x.Name, x.Schema, x.Min, x.Max, seen); err != nil {
			return err
		}
	}
	seen = map[string]bool{}
	for _, p := range t.Properties {
		if p.Schema == "" {
			return fmt.Errorf("%w: property %q needs a schema", ErrInvalid, p.Name)
		}
		if err := check("property", p.Name, p.Schema, p.Min, p.Max, seen); err != nil {
			return err
		}
	}
	seen = map[string]bool{}
	for _, c := range t.Commands {
		if err := check("command", c.Name, c.Request, nil, nil, seen); err != nil {
			return err
		}
		if c.Response != "" && !schemas[c.Response] {
			return fmt.Errorf("%w: command %q has response schema %q; use double, float, integer, long, boolean, string or object", ErrInvalid, c.Name, c.Response)
		}
	}
	return t.Anomaly.validate(t.Telemetry)
}

func (a *Anomaly) validate(tel []Telemetry) error {
	if a == nil {
		return nil
	}
	switch {
	case a.Kind != "" && a.Kind != "univariate" && a.Kind != "pca" && a.Kind != "rcf":
		return fmt.Errorf("%w: anomaly kind %q; use univariate, pca or rcf", ErrInvalid, a.Kind)
	case !(a.Sensitivity >= 0 && a.Sensitivity < 1):
		return fmt.Errorf("%w: anomaly sensitivity %v must be between 0 and 1 (0.5 is the default)", ErrInvalid, a.Sensitivity)
	case a.Warmup != 0 && a.Warmup < 8:
		return fmt.Errorf("%w: anomaly warm-up of %d updates is too short; use at least 8 (400 is the default)", ErrInvalid, a.Warmup)
	}
	seen := map[string]bool{}
	for _, f := range a.Fields {
		ok := false
		for _, x := range tel {
			ok = ok || (x.Name == f && numeric(x.Schema))
		}
		if !ok || seen[f] {
			return fmt.Errorf("%w: anomaly field %q must be a numeric telemetry field of the template, named once", ErrInvalid, f)
		}
		seen[f] = true
	}
	return nil
}

func numeric(schema string) bool {
	switch schema {
	case SchemaDouble, SchemaFloat, SchemaInteger, SchemaLong:
		return true
	}
	return false
}

// checkValue says what is wrong with v for schema and range, or "".
func checkValue(schema string, lo, hi *float64, v any) string {
	switch schema {
	case "":
		return ""
	case SchemaBoolean:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("is %s, expected a boolean", describe(v))
		}
		return ""
	case SchemaString:
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("is %s, expected a string", describe(v))
		}
		return ""
	case SchemaObject:
		if _, ok := v.(map[string]any); !ok {
			return fmt.Sprintf("is %s, expected an object", describe(v))
		}
		return ""
	}
	f, ok := toFloat(v)
	if !ok {
		return fmt.Sprintf("is %s, expected a number (%s)", describe(v), schema)
	}
	return checkNumber(schema, lo, hi, f)
}

func checkNumber(schema string, lo, hi *float64, f float64) string {
	if (schema == SchemaInteger || schema == SchemaLong) && f != math.Trunc(f) {
		return fmt.Sprintf("is %g, expected a whole number (%s)", f, schema)
	}
	if lo != nil && f < *lo {
		return fmt.Sprintf("is %g, below the minimum %g", f, *lo)
	}
	if hi != nil && f > *hi {
		return fmt.Sprintf("is %g, above the maximum %g", f, *hi)
	}
	return ""
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case string:
		return fmt.Sprintf("the string %q", clip(x))
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	if f, ok := toFloat(v); ok {
		return fmt.Sprintf("the number %g", f)
	}
	return fmt.Sprintf("%T", v)
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Violation is one way a message broke its device's template.
type Violation struct {
	Kind    string `json:"kind"` // telemetry, reported or command
	Name    string `json:"name"`
	Problem string `json:"problem"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %q %s", v.Kind, v.Name, v.Problem)
}

// Summary joins violations into one message for the device's error record.
func Summary(tmplID string, vs []Violation) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return fmt.Sprintf("breaks template %s: %s; fix the device or the template", tmplID, strings.Join(parts, "; "))
}

// CheckTelemetry validates one telemetry message as the bus carries it:
// numeric and boolean (1/0) fields in num, string fields in str. Fields the
// template does not declare are violations; declared fields that are absent
// are not (devices send partial messages).
func (t Template) CheckTelemetry(num map[string]float64, str map[string]string) []Violation {
	defs := make(map[string]Telemetry, len(t.Telemetry))
	for _, d := range t.Telemetry {
		defs[d.Name] = d
	}
	var out []Violation
	for _, name := range sortedKeys(num) {
		f := num[name]
		d, ok := defs[name]
		switch {
		case !ok:
			out = append(out, Violation{"telemetry", name, "is not declared in the template"})
		case d.Schema == SchemaString:
			out = append(out, Violation{"telemetry", name, fmt.Sprintf("is the number %g, expected a string", f)})
		case d.Schema == SchemaBoolean:
			if f != 0 && f != 1 {
				out = append(out, Violation{"telemetry", name, fmt.Sprintf("is the number %g, expected a boolean", f)})
			}
		default:
			if p := checkNumber(d.Schema, d.Min, d.Max, f); p != "" {
				out = append(out, Violation{"telemetry", name, p})
			}
		}
	}
	for _, name := range sortedKeys(str) {
		d, ok := defs[name]
		switch {
		case !ok:
			out = append(out, Violation{"telemetry", name, "is not declared in the template"})
		case d.Schema != SchemaString:
			out = append(out, Violation{"telemetry", name, fmt.Sprintf("is the string %q, expected %s", clip(str[name]), d.Schema)})
		}
	}
	return out
}

// CheckReported validates a reported-properties patch. A writable
// property may be reported as its Plug and Play acknowledgement
// {"value":…,"ac":…,"av":…}; the value inside is checked. null (removal)
// is always allowed.
func (t Template) CheckReported(patch map[string]any) []Violation {
	defs := make(map[string]Property, len(t.Properties))
	for _, p := range t.Properties {
		defs[p.Name] = p
	}
	var out []Violation
	for _, name := range sortedKeys(patch) {
		v := patch[name]
		if v == nil {
			continue
		}
		d, ok := defs[name]
		if !ok {
			out = append(out, Violation{"reported", name, "is not declared in the template"})
			continue
		}
		if d.Writable {
			if m, ok := v.(map[string]any); ok && (d.Schema != SchemaObject || isAck(m)) {
				_, hasAC := m["ac"]
				_, hasAV := m["av"]
				if !hasAC || !hasAV {
					out = append(out, Violation{"reported", name, `is writable: report it as {"value":…,"ac":200,"av":<desired $version>}`})
					continue
				}
				v = m["value"]
			}
		}
		if p := checkValue(d.Schema, d.Min, d.Max, v); p != "" {
			out = append(out, Violation{"reported", name, p})
		}
	}
	return out
}

func isAck(m map[string]any) bool {
	_, hasValue := m["value"]
	_, hasAC := m["ac"]
	return hasValue && hasAC
}

// CheckDesired validates a desired-properties patch: only writable
// properties may be set, with values of their schema. null (removal) is
// always allowed, so a property left over from an older template can be
// cleared.
func (t Template) CheckDesired(patch map[string]any) []Violation {
	defs := make(map[string]Property, len(t.Properties))
	for _, p := range t.Properties {
		defs[p.Name] = p
	}
	var out []Violation
	for _, name := range sortedKeys(patch) {
		v := patch[name]
		if v == nil {
			continue
		}
		d, ok := defs[name]
		switch {
		case !ok:
			out = append(out, Violation{"desired", name, "is not declared in the template"})
		case !d.Writable:
			out = append(out, Violation{"desired", name, "is read-only: only the device reports it"})
		default:
			if p := checkValue(d.Schema, d.Min, d.Max, v); p != "" {
				out = append(out, Violation{"desired", name, p})
			}
		}
	}
	return out
}

// CheckCommand validates a command's request payload (JSON; empty means
// null).
func (t Template) CheckCommand(name string, payload []byte) []Violation {
	for _, c := range t.Commands {
		if c.Name != name {
			continue
		}
		if c.Request == "" {
			return nil
		}
		var v any
		if len(strings.TrimSpace(string(payload))) > 0 {
			if err := json.Unmarshal(payload, &v); err != nil {
				return []Violation{{"command", name, "payload is not valid JSON"}}
			}
		}
		if p := checkValue(c.Request, nil, nil, v); p != "" {
			return []Violation{{"command", name, "payload " + p}}
		}
		return nil
	}
	return []Violation{{"command", name, "is not declared in the template"}}
}

// Ack is the Plug and Play acknowledgement of a writable property, what a
// device reports after applying desired version av: {"value":v,"ac":200,"av":av}.
func Ack(value any, status int, version int64, description string) map[string]any {
	m := map[string]any{"value": value, "ac": status, "av": version}
	if description != "" {
		m["ad"] = description
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
