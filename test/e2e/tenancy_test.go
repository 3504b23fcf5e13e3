package e2e

import (
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// One organization never sees another's devices, data or tokens.
func TestTenancyIsolation(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	op := hub.API()
	acme := op.CreateOrgToken(t, "acme", "admin")
	globex := op.CreateOrgToken(t, "globex", "admin")

	da := acme.CreateDevice(t, "acme-pump", nil)
	db := globex.CreateDevice(t, "globex-pump", nil)
	for _, d := range []testutil.Device{da, db} {
		c := hub.MustConnect(t, d, testutil.DeviceOptions{})
		testutil.Publish(t, c, d.ID, map[string]any{"pressure": 4.2})
	}
	testutil.Eventually(t, 10*time.Second, "both devices' data", func() bool {
		return latest(t, acme, "acme-pump")["pressure"] == 4.2 && latest(t, globex, "globex-pump")["pressure"] == 4.2
	})

	for _, path := range []string{
		"/api/v1/devices/globex-pump", "/api/v1/devices/globex-pump/latest",
		"/api/v1/devices/globex-pump/telemetry", "/api/v1/devices/globex-pump/token",
	} {
		if st := acme.Do(t, "GET", path, nil, nil); st != 404 {
			t.Errorf("acme GET %s: %d, want 404", path, st)
		}
	}
	for _, m := range []string{"PATCH", "DELETE"} {
		if st := acme.Do(t, m, "/api/v1/devices/globex-pump", map[string]any{"disabled": true}, nil); st != 404 {
			t.Errorf("acme %s globex-pump: %d, want 404", m, st)
		}
	}
	var list struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	acme.MustDo(t, 200, "GET", "/api/v1/devices", nil, &list)
	if len(list.Items) != 1 || list.Items[0].ID != "acme-pump" {
		t.Fatalf("acme's device list: %+v", list.Items)
	}
	// Tokens: globex's tokens are not listed to acme, and can't be deleted.
	var toks []map[string]any
	var wrapped struct {
		Items []map[string]any `json:"items"`
	}
	var raw any
	acme.MustDo(t, 200, "GET", "/api/v1/tokens", nil, &raw)
	switch v := raw.(type) {
	case []any:
		for _, x := range v {
			toks = append(toks, x.(map[string]any))
		}
	case map[string]any:
		acme.MustDo(t, 200, "GET", "/api/v1/tokens", nil, &wrapped)
		toks = wrapped.Items
	}
	for _, tk := range toks {
		if tk["org"] != "acme" {
			t.Fatalf("acme sees a token of %v", tk["org"])
		}
	}
	// PromQL sees only the caller's series.
	var pr struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	acme.MustDo(t, 200, "GET", "/prometheus/api/v1/query?query="+url.QueryEscape(`{__name__="pressure"}`), nil, &pr)
	if len(pr.Data.Result) != 1 || pr.Data.Result[0].Metric["device"] != "acme-pump" {
		t.Fatalf("acme's PromQL result: %+v", pr.Data.Result)
	}
	acme.MustDo(t, 200, "GET", "/prometheus/api/v1/query?query="+url.QueryEscape(`pressure{org="globex"}`), nil, &pr)
	if len(pr.Data.Result) != 0 {
		t.Fatalf("acme read globex's series by naming its org: %+v", pr.Data.Result)
	}
	var vals struct {
		Data []string `json:"data"`
	}
	acme.MustDo(t, 200, "GET", "/prometheus/api/v1/label/device/values", nil, &vals)
	if strings.Join(vals.Data, ",") != "acme-pump" {
		t.Fatalf("acme's device label values: %v", vals.Data)
	}

	// A viewer reads but cannot write.
	viewer := op.CreateOrgToken(t, "acme", "viewer")
	if st := viewer.Do(t, "GET", "/api/v1/devices/acme-pump", nil, nil); st != 200 {
		t.Fatalf("viewer read: %d", st)
	}
	if st := viewer.Do(t, "POST", "/api/v1/devices", map[string]any{"id": "viewer-made"}, nil); st != 403 {
		t.Fatalf("viewer write: %d, want 403", st)
	}
	// Bad token: 401.
	bad := &testutil.API{Base: hub.URL, Token: "sft_nope"}
	if st := bad.Do(t, "GET", "/api/v1/devices", nil, nil); st != 401 {
		t.Fatalf("bad token: %d, want 401", st)
	}
}

// The scale-out path: PostgreSQL registry and chunks, external NATS.
func TestPostgresAndExternalNATS(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	natsURL := os.Getenv("SHOPFLOOR_TEST_NATS")
	if natsURL == "" {
		t.Skip("SHOPFLOOR_TEST_NATS not set: skipping (CI sets it to nats://127.0.0.1:4222)")
	}
	prefix := testutil.SharedPrefix(t, natsURL)
	hub := testutil.StartHub(t, testutil.Options{Postgres: dsn, NATS: natsURL, Prefix: prefix})
	a := hub.API()
	d := a.CreateDevice(t, "comp-1", map[string]any{"tags": map[string]string{"kind": "compressor"}})
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for i := 0; i < 50; i++ {
		testutil.Publish(t, c, d.ID, map[string]any{"ts": base.Add(time.Duration(i) * time.Millisecond).UnixMilli(), "pressure": i})
	}
	testutil.Eventually(t, 15*time.Second, "50 points via PostgreSQL and external NATS", func() bool {
		return len(rawPoints(t, a, d.ID, "pressure", base, base.Add(time.Second))) == 50
	})
	c.Disconnect(50)
	data := hub.Data
	hub.Stop()
	// Restart on the same database and stream: everything is still there.
	hub2 := testutil.StartHub(t, testutil.Options{Postgres: dsn, NATS: natsURL, Prefix: prefix, Data: data})
	if n := len(rawPoints(t, hub2.API(), d.ID, "pressure", base, base.Add(time.Second))); n != 50 {
		t.Fatalf("after restart %d of 50 points", n)
	}
}

// Deleting a device deletes its twin: a device created again with the same
// id starts with an empty twin.
func TestDeleteDeviceDeletesTwin(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	a.CreateDevice(t, "robot-9", nil)
	a.MustDo(t, 200, "PATCH", "/api/v1/devices/robot-9/twin", map[string]any{"properties": map[string]any{"desired": map[string]any{"speed": 3}}}, nil)
	// The twin routes remember that robot-9 exists; another organization
	// still does not see it.
	other := a.CreateOrgToken(t, "globex", "admin")
	other.MustDo(t, 404, "GET", "/api/v1/devices/robot-9/twin", nil, nil)
	other.MustDo(t, 404, "POST", "/api/v1/devices/robot-9/methods/reboot?timeout=1", map[string]any{}, nil)
	a.MustDo(t, 204, "DELETE", "/api/v1/devices/robot-9", nil, nil)
	// Deleted: at once, not when the memory of it expires.
	a.MustDo(t, 404, "GET", "/api/v1/devices/robot-9/twin", nil, nil)
	a.CreateDevice(t, "robot-9", nil)
	var tw struct {
		Properties struct {
			Desired map[string]any `json:"desired"`
		} `json:"properties"`
	}
	a.MustDo(t, 200, "GET", "/api/v1/devices/robot-9/twin", nil, &tw)
	if _, ok := tw.Properties.Desired["speed"]; ok {
		t.Fatalf("a re-created device inherited the old twin: %v", tw.Properties.Desired)
	}
}
