package gateway

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrMalformed is returned for telemetry that cannot be stored.
var ErrMalformed = errors.New("telemetry is not a valid JSON object")

// ErrTimestamp marks a message whose "ts" is too old or too far ahead to be
// stored; ErrTooFast one that cannot be given a millisecond of its own.
var (
	ErrTimestamp = errors.New("timestamp out of range")
	ErrTooFast   = errors.New("too many messages without a timestamp")
)

// MaxDepth is the deepest nesting of objects and arrays Flatten accepts.
const MaxDepth = 32

// Fields is a flattened telemetry payload.
type Fields struct {
	Num map[string]float64 // numbers, and booleans as 1/0
	Str map[string]string  // strings
	TS  int64              // unix ms from the top-level "ts" field; 0 when absent
}

// Flatten parses a JSON object into fields:
//
//   - numbers go to Num; true/false go to Num as 1/0; strings go to Str;
//     null is skipped;
//   - nested objects are flattened with '.': {"a":{"b":1}} gives "a.b";
//   - arrays are flattened by index: {"a":[5,6]} gives "a.0" and "a.1";
//   - a top-level "ts" is the device timestamp, not a field: an RFC 3339
//     string, or a unix time number read as milliseconds when it is at least
//     1e11 (1973-03-03 in ms) and as seconds (fractions allowed) below;
//   - when a name repeats, the last value wins.
//
// It refuses (ErrMalformed, with a message for the device owner) anything
// that is not one JSON object, empty field names, nesting deeper than
// MaxDepth, more than maxFields values (0: no limit), and numbers beyond
// float64 range.
func Flatten(payload []byte, maxFields int) (Fields, error) {
	f := flattener{data: payload, maxFields: maxFields}
	err := f.run()
	return f.out, err
}

type flattener struct {
	data      []byte
	pos       int
	path      []byte
	key       []byte // scratch for decoding keys
	sbuf      []byte // scratch for decoding string values
	out       Fields
	fields    int
	maxFields int
	depth     int
}

func (f *flattener) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s (at byte %d)", ErrMalformed, fmt.Sprintf(format, args...), f.pos)
}

func (f *flattener) run() error {
	f.ws()
	if f.pos >= len(f.data) {
		return fmt.Errorf("%w: empty payload; send a JSON object such as {\"temp\":21.5}", ErrMalformed)
	}
	if f.data[f.pos] != '{' {
		return fmt.Errorf("%w: payload is not a JSON object; send a JSON object such as {\"temp\":21.5}", ErrMalformed)
	}
	if err := f.object(true); err != nil {
		return err
	}
	f.ws()
	if f.pos != len(f.data) {
		return f.errorf("unexpected data after the JSON object")
	}
	return nil
}

func (f *flattener) ws() {
	for f.pos < len(f.data) {
		switch f.data[f.pos] {
		case ' ', '\t', '\n', '\r':
			f.pos++
		default:
			return
		}
	}
}

// object parses an object at f.pos; f.path holds its name.
func (f *flattener) object(top bool) error {
	f.pos++ // '{'
	if f.depth++; f.depth > MaxDepth {
		return f.errorf("nested deeper than %d levels", MaxDepth)
	}
	base := len(f.path)
	f.ws()
	if f.pos < len(f.data) && f.data[f.pos] == '}' {
		f.pos++
		f.depth--
		return nil
	}
	for {
		f.ws()
		if f.pos >= len(f.data) || f.data[f.pos] != '"' {
			return f.errorf("expected a quoted field name")
		}
		k, err := f.str(f.key[:0])
		if err != nil {
			return err
		}
		f.key = k
		if len(k) == 0 {
			return f.errorf("field names must not be empty")
		}
		f.ws()
		if f.pos >= len(f.data) || f.data[f.pos] != ':' {
			return f.errorf("expected ':' after field name %q", k)
		}
		f.pos++
		f.ws()
		if top && string(k) == "ts" {
			if err := f.timestamp(); err != nil {
				return err
			}
		} else {
			if base > 0 {
				f.path = append(f.path, '.')
			}
			f.path = append(f.path, k...)
			if err := f.value(); err != nil {
				return err
			}
			f.path = f.path[:base]
		}
		f.ws()
		if f.pos >= len(f.data) {
			return f.errorf("unterminated object")
		}
		switch f.data[f.pos] {
		case ',':
			f.pos++
		case '}':
			f.pos++
			f.depth--
			return nil
		default:
			return f.errorf("expected ',' or '}'")
		}
	}
}

func (f *flattener) array() error {
	f.pos++ // '['
	if f.depth++; f.depth > MaxDepth {
		return f.errorf("nested deeper than %d levels", MaxDepth)
	}
	base := len(f.path)
	f.ws()
	if f.pos < len(f.data) && f.data[f.pos] == ']' {
		f.pos++
		f.depth--
		return nil
	}
	for i := 0; ; i++ {
		f.ws()
		f.path = append(f.path, '.')
		f.path = strconv.AppendInt(f.path, int64(i), 10)
		if err := f.value(); err != nil {
			return err
		}
		f.path = f.path[:base]
		f.ws()
		if f.pos >= len(f.data) {
			return f.errorf("unterminated array")
		}
		switch f.data[f.pos] {
		case ',':
			f.pos++
		case ']':
			f.pos++
			f.depth--
			return nil
		default:
			return f.errorf("expected ',' or ']'")
		}
	}
}

func (f *flattener) value() error {
	if f.pos >= len(f.data) {
		return f.errorf("unexpected end of payload")
	}
	switch c := f.data[f.pos]; {
	case c == '{':
		return f.object(false)
	case c == '[':
		return f.array()
	case c == '"':
		s, err := f.str(f.sbuf[:0])
		if err != nil {
			return err
		}
		f.sbuf = s
		return f.setStr(string(s))
	case c == 't':
		if err := f.literal("true"); err != nil {
			return err
		}
		return f.setNum(1)
	case c == 'f':
		if err := f.literal("false"); err != nil {
			return err
		}
		return f.setNum(0)
	case c == 'n':
		return f.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		v, err := f.number()
		if err != nil {
			return err
		}
		return f.setNum(v)
	}
	return f.errorf("unexpected character %q", f.data[f.pos])
}

func (f *flattener) count() error {
	f.fields++
	if f.maxFields > 0 && f.fields > f.maxFields {
		return f.errorf("more than %d values in one message; split it or send fewer fields", f.maxFields)
	}
	return nil
}

func (f *flattener) setNum(v float64) error {
	if err := f.count(); err != nil {
		return err
	}
	if f.out.Num == nil {
		f.out.Num = make(map[string]float64, 8)
	}
	k := string(f.path)
	f.out.Num[k] = v
	if f.out.Str != nil {
		delete(f.out.Str, k)
	}
	return nil
}

func (f *flattener) setStr(v string) error {
	if err := f.count(); err != nil {
		return err
	}
	if f.out.Str == nil {
		f.out.Str = make(map[string]string, 4)
	}
	k := string(f.path)
	f.out.Str[k] = v
	if f.out.Num != nil {
		delete(f.out.Num, k)
	}
	return nil
}

func (f *flattener) literal(word string) error {
	if len(f.data)-f.pos < len(word) || string(f.data[f.pos:f.pos+len(word)]) != word {
		return f.errorf("invalid literal, expected %s", word)
	}
	f.pos += len(word)
	return nil
}

// number parses a JSON number (RFC 8259 grammar).
func (f *flattener) number() (float64, error) {
	start := f.pos
	d := f.data
	i := f.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		f.pos = i
		return 0, f.errorf("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			f.pos = i
			return 0, f.errorf("invalid number: digits expected after '.'")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			f.pos = i
			return 0, f.errorf("invalid number: digits expected in exponent")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	f.pos = i
	v, err := strconv.ParseFloat(string(d[start:i]), 64)
	if err != nil {
		return 0, f.errorf("number %s is out of range", clip(string(d[start:i])))
	}
	return v, nil
}

// str parses a JSON string at f.pos, appending its decoded bytes to buf.
// Invalid UTF-8 and lone surrogates become U+FFFD, as encoding/json does.
func (f *flattener) str(buf []byte) ([]byte, error) {
	d := f.data
	i := f.pos + 1
	for {
		// Fast path: copy a run of plain ASCII.
		j := i
		for j < len(d) && d[j] >= 0x20 && d[j] < utf8.RuneSelf && d[j] != '"' && d[j] != '\\' {
			j++
		}
		buf = append(buf, d[i:j]...)
		i = j
		if i >= len(d) {
			f.pos = i
			return nil, f.errorf("unterminated string")
		}
		switch c := d[i]; {
		case c == '"':
			f.pos = i + 1
			return buf, nil
		case c == '\\':
			i++
			if i >= len(d) {
				f.pos = i
				return nil, f.errorf("unterminated string")
			}
			switch d[i] {
			case '"', '\\', '/':
				buf = append(buf, d[i])
				i++
			case 'b':
				buf = append(buf, '\b')
				i++
			case 'f':
				buf = append(buf, '\f')
				i++
			case 'n':
				buf = append(buf, '\n')
				i++
			case 'r':
				buf = append(buf, '\r')
				i++
			case 't':
				buf = append(buf, '\t')
				i++
			case 'u':
				r := hex4(d[i+1:])
				if r < 0 {
					f.pos = i
					return nil, f.errorf("invalid \\u escape")
				}
				i += 5
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
						r2 = hex4(d[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						i += 6
						r = dec
					} else {
						r = unicode.ReplacementChar
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				f.pos = i
				return nil, f.errorf("invalid escape \\%c", d[i])
			}
		case c < 0x20:
			f.pos = i
			return nil, f.errorf("control character in string")
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				buf = utf8.AppendRune(buf, unicode.ReplacementChar)
			} else {
				buf = append(buf, d[i:i+size]...)
			}
			i += size
		}
	}
}

func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// timestamp parses the top-level "ts" value.
func (f *flattener) timestamp() error {
	if f.pos >= len(f.data) {
		return f.errorf("unexpected end of payload")
	}
	switch c := f.data[f.pos]; {
	case c == '"':
		s, err := f.str(nil)
		if err != nil {
			return err
		}
		ms, err := parseTimeString(string(s))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		f.out.TS = ms
	case c == '-' || c >= '0' && c <= '9':
		v, err := f.number()
		if err != nil {
			return err
		}
		ms, err := unixNumberToMillis(v)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		f.out.TS = ms
	case c == 'n':
		return f.literal("null")
	default:
		return f.errorf(`"ts" must be an RFC 3339 time string or a unix time number`)
	}
	return nil
}

// millisBound is the upper limit of a timestamp: year 9999.
const millisBound = 253402300799999

// unixNumberToMillis reads a unix time: milliseconds at or above 1e11,
// seconds below.
func unixNumberToMillis(v float64) (int64, error) {
	if !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf(`"ts" %v is not a positive unix time`, v)
	}
	ms := v
	if v < 1e11 {
		ms = v * 1000
	}
	if ms > millisBound {
		return 0, fmt.Errorf(`"ts" %v is beyond the year 9999; send unix milliseconds or seconds`, v)
	}
	return int64(ms), nil
}

func parseTimeString(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf(`"ts" %q is not an RFC 3339 time such as 2024-05-01T12:00:00Z`, clip(s))
	}
	ms := t.UnixMilli()
	if ms <= 0 || ms > millisBound {
		return 0, fmt.Errorf(`"ts" %q is out of range`, clip(s))
	}
	return ms, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
