package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// fuzzSkip are operations with a body that FuzzAPIBodies leaves out, and
// why.
var fuzzSkip = map[string]string{
	// The body is passed to the device unread; the call waits for the
	// device's answer and ends in a documented 504, a second per input.
	"invokeMethod": "opaque payload; waits for the device",
}

// FuzzAPIBodies posts fuzzed bodies to every operation of the route table
// that takes one (creates and updates of devices, rules, templates,
// exports, jobs, SIMs, network objects, …) on a real in-process hub with
// its SQLite store, as an admin of a customer organization whose objects
// the path parameters name. No input may make the API answer 5xx or drop
// the connection (a handler panic). The seeds are each operation's
// documented example and the matrix's valid body, plus malformed JSON.
func FuzzAPIBodies(f *testing.F) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "refused", http.StatusBadRequest)
	}))
	f.Cleanup(hook.Close)
	hub := testutil.StartHub(f, testutil.Options{})
	op := hub.API()
	fx := newFixture(f, hub, op, "acme", hook.URL)
	admin := op.CreateOrgToken(f, "acme", "admin")

	var ops []matrixOp
	for _, o := range loadOps(f, op) {
		if o.RequestBody != nil && o.Role != "" && fuzzSkip[o.ID] == "" {
			ops = append(ops, o)
		}
	}
	f.Logf("fuzzing the bodies of %d operations", len(ops))
	m := &matrix{t: f, base: hub.URL}
	reqs := make([]filled, len(ops))
	for i, o := range ops {
		r, ok := m.request(o, fx)
		if !ok {
			f.FailNow()
		}
		reqs[i] = r
		var example any
		for _, c := range o.RequestBody.Content {
			example = c.Example
		}
		raw, _ := json.Marshal(example)
		if s, ok := example.(string); ok {
			raw = []byte(s) // a CSV example
		}
		f.Add(uint8(i), raw)
		f.Add(uint8(i), r.body())
	}
	for _, s := range []string{"null", "{}", "[]", `{"id":`, `{"id":null,"name":1e999}`, `"x"`, "\xff\xfe", `{"a":[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}`} {
		f.Add(uint8(0), []byte(s))
	}
	client := &http.Client{Timeout: 30 * time.Second}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		i := int(which) % len(ops)
		o, r := ops[i], reqs[i]
		u := hub.URL + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		req, err := http.NewRequest(o.Method, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin.Token)
		req.Header.Set("Content-Type", r.contentType)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s (%s) with body %q: %v", o.Method, r.path, o.ID, body, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s (%s) with body %q: %d %s", o.Method, r.path, o.ID, body, resp.StatusCode, raw)
		}
	})
}
