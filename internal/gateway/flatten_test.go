package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFlatten(t *testing.T) {
	in := `{"temp":21.5,"on":true,"off":false,"name":"press \"A\"","none":null,
		"pos":{"x":1,"y":{"z":-2e3}},"arr":[1,"two",{"k":3},[4]],"ts":"2024-01-02T03:04:05.123Z",
		"uni":"\u00e9\ud83d\ude00","empty":{},"list":[]}`
	f, err := Flatten([]byte(in), 0)
	if err != nil {
		t.Fatal(err)
	}
	wantNum := map[string]float64{"temp": 21.5, "on": 1, "off": 0, "pos.x": 1, "pos.y.z": -2000, "arr.0": 1, "arr.2.k": 3, "arr.3.0": 4}
	wantStr := map[string]string{"name": `press "A"`, "arr.1": "two", "uni": "é😀"}
	if !reflect.DeepEqual(f.Num, wantNum) {
		t.Errorf("Num = %v", f.Num)
	}
	if !reflect.DeepEqual(f.Str, wantStr) {
		t.Errorf("Str = %v", f.Str)
	}
	if want := time.Date(2024, 1, 2, 3, 4, 5, 123e6, time.UTC).UnixMilli(); f.TS != want {
		t.Errorf("TS = %d, want %d", f.TS, want)
	}
}

func TestFlattenTimestamps(t *testing.T) {
	cases := []struct {
		in   string
		want int64
	}{
		{`{"ts":1700000000}`, 1700000000000},
		{`{"ts":1700000000.25}`, 1700000000250},
		{`{"ts":1700000000123}`, 1700000000123},
		{`{"ts":"2024-05-01T12:00:00+02:00"}`, 1714557600000},
		{`{"ts":null,"a":1}`, 0},
		{`{"a":{"ts":5}}`, 0}, // only the top level "ts" is the timestamp
	}
	for _, c := range cases {
		f, err := Flatten([]byte(c.in), 0)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if f.TS != c.want {
			t.Errorf("%s: TS %d, want %d", c.in, f.TS, c.want)
		}
		if _, ok := f.Num["ts"]; ok {
			t.Errorf("%s: ts stored as a field", c.in)
		}
	}
	if f, _ := Flatten([]byte(`{"a":{"ts":5}}`), 0); f.Num["a.ts"] != 5 {
		t.Errorf("nested ts not kept as a field: %v", f.Num)
	}
	for _, bad := range []string{`{"ts":"yesterday"}`, `{"ts":-1}`, `{"ts":0}`, `{"ts":1e300}`, `{"ts":true}`, `{"ts":{}}`} {
		if _, err := Flatten([]byte(bad), 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestFlattenMalformed(t *testing.T) {
	bad := []string{
		``, `   `, `[]`, `42`, `"s"`, `null`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1}x`,
		`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12"}`,
		"{\"a\":\"tab\there\"}", `{"a":1e400}`, `{"":1}`, `{"a":{"":1}}`, `{'a':1}`, `{"a":NaN}`,
		`{"a":1}{"b":2}`, strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1),
	}
	for _, b := range bad {
		if _, err := Flatten([]byte(b), 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("Flatten(%q) = %v, want ErrMalformed", b, err)
		}
	}
	if _, err := Flatten([]byte(`{"a":1,"b":2,"c":3}`), 2); !errors.Is(err, ErrMalformed) {
		t.Errorf("field limit not enforced: %v", err)
	}
	if _, err := Flatten([]byte(`{"a":1,"b":2}`), 2); err != nil {
		t.Errorf("field limit off by one: %v", err)
	}
}

func TestFlattenLastValueWins(t *testing.T) {
	f, err := Flatten([]byte(`{"a":1,"a":"x","b":"y","b":2,"c.d":1,"c":{"d":3}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Num, map[string]float64{"b": 2, "c.d": 3}) || !reflect.DeepEqual(f.Str, map[string]string{"a": "x"}) {
		t.Fatalf("%v %v", f.Num, f.Str)
	}
}

// referenceFlatten is an independent implementation on top of
// encoding/json's tokenizer, used as the oracle for fuzzing.
func referenceFlatten(payload []byte, maxFields int) (Fields, error) {
	var out Fields
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	fields := 0
	var walk func(path string, tok json.Token, depth int, top bool) error
	set := func(path string, v any) error {
		fields++
		if maxFields > 0 && fields > maxFields {
			return ErrMalformed
		}
		switch v := v.(type) {
		case float64:
			if out.Num == nil {
				out.Num = map[string]float64{}
			}
			out.Num[path] = v
			delete(out.Str, path)
		case string:
			if out.Str == nil {
				out.Str = map[string]string{}
			}
			out.Str[path] = v
			delete(out.Num, path)
		}
		return nil
	}
	join := func(a, b string) string {
		if a == "" {
			return b
		}
		return a + "." + b
	}
	walk = func(path string, tok json.Token, depth int, top bool) error {
		switch v := tok.(type) {
		case json.Delim:
			if depth+1 > MaxDepth {
				return ErrMalformed
			}
			if v == '{' {
				for dec.More() {
					kt, err := dec.Token()
					if err != nil {
						return err
					}
					k := kt.(string)
					if k == "" {
						return ErrMalformed
					}
					vt, err := dec.Token()
					if err != nil {
						return err
					}
					if top && k == "ts" {
						switch tv := vt.(type) {
						case nil:
						case string:
							ms, err := parseTimeString(tv)
							if err != nil {
								return ErrMalformed
							}
							out.TS = ms
						case json.Number:
							f, err := strconv.ParseFloat(string(tv), 64)
							if err != nil {
								return ErrMalformed
							}
							ms, err := unixNumberToMillis(f)
							if err != nil {
								return ErrMalformed
							}
							out.TS = ms
						default:
							return ErrMalformed
						}
						continue
					}
					if err := walk(join(path, k), vt, depth+1, false); err != nil {
						return err
					}
				}
			} else {
				for i := 0; dec.More(); i++ {
					vt, err := dec.Token()
					if err != nil {
						return err
					}
					if err := walk(path+"."+strconv.Itoa(i), vt, depth+1, false); err != nil {
						return err
					}
				}
			}
			_, err := dec.Token() // closing delimiter
			return err
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return ErrMalformed
			}
			return set(path, f)
		case bool:
			if v {
				return set(path, 1.0)
			}
			return set(path, 0.0)
		case string:
			return set(path, v)
		case nil:
			return nil
		}
		return fmt.Errorf("unexpected token %v", tok)
	}
	tok, err := dec.Token()
	if err != nil {
		return out, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return out, ErrMalformed
	}
	if err := walk("", tok, 0, true); err != nil {
		return out, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return out, ErrMalformed
	}
	return out, nil
}

func FuzzFlatten(f *testing.F) {
	for _, s := range []string{
		`{"temp":21.5,"on":true,"name":"x","pos":{"x":1},"arr":[1,[2,{"b":null}]],"ts":1700000000}`,
		`{"ts":"2024-01-02T03:04:05Z","a":"\u00e9\ud83d\ude00\ud800x","b":-0.0e+1}`,
		`{"a":1,"a":"x","a.b":2,"a":{"b":"y"}}`,
		`{"k":"` + "\xff\xfe" + `"}`,
		`{"a":[]  , "b" : { } }`,
		`{"a":1e400}`,
		`[1]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := Flatten(in, 50)
		want, wantErr := referenceFlatten(in, 50)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("Flatten(%q): error %v, reference error %v", in, err, wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if got.TS != want.TS || !numEqual(got.Num, want.Num) || !reflect.DeepEqual(got.Str, want.Str) && (len(got.Str)+len(want.Str) > 0) {
			t.Fatalf("Flatten(%q):\n got %+v\nwant %+v", in, got, want)
		}
	})
}

func numEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v != w && !(math.IsNaN(v) && math.IsNaN(w)) {
			return false
		}
	}
	return true
}

func BenchmarkFlatten(b *testing.B) {
	payload := []byte(`{"ts":1700000000123,"temperature":21.53,"pressure":1013.2,"rpm":1450,"running":true,` +
		`"state":"producing","axis":{"x":12.5,"y":-3.25,"z":0.5},"vibration":[0.01,0.02,0.015]}`)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Flatten(payload, 1000); err != nil {
			b.Fatal(err)
		}
	}
}
