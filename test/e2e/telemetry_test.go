package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

type seriesResp struct {
	Device string `json:"device"`
	Series []struct {
		Field  string `json:"field"`
		Points []struct {
			T int64   `json:"t"`
			V float64 `json:"v"`
		} `json:"points"`
	} `json:"series"`
}

type latestResp struct {
	Values []struct {
		Field string `json:"field"`
		T     int64  `json:"t"`
		Value any    `json:"value"`
	} `json:"values"`
}

func latest(t *testing.T, a *testutil.API, dev string) map[string]any {
	t.Helper()
	var lr latestResp
	a.MustDo(t, 200, "GET", "/api/v1/devices/"+dev+"/latest", nil, &lr)
	m := map[string]any{}
	for _, v := range lr.Values {
		m[v.Field] = v.Value
	}
	return m
}

// rawPoints returns every stored point of one field between from and to.
func rawPoints(t *testing.T, a *testutil.API, dev, field string, from, to time.Time) map[int64][]float64 {
	t.Helper()
	var sr seriesResp
	q := url.Values{"names": {field}, "agg": {"raw"}, "from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
	a.MustDo(t, 200, "GET", "/api/v1/devices/"+dev+"/telemetry?"+q.Encode(), nil, &sr)
	out := map[int64][]float64{}
	for _, s := range sr.Series {
		if s.Field != field {
			continue
		}
		for _, p := range s.Points {
			out[p.T] = append(out[p.T], p.V)
		}
	}
	return out
}

func TestTelemetryEndToEnd(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	a.MustDo(t, 201, "POST", "/api/v1/sites", map[string]any{"id": "plant-1", "name": "Plant 1"}, nil)
	a.CreateTemplate(t, "cnc")
	d := a.CreateDevice(t, "cnc-01", map[string]any{"site": "plant-1", "template": "cnc", "tags": map[string]string{"line": "A"}})

	var lastBase time.Time
	for round, o := range []testutil.DeviceOptions{{}, {TLS: true}, {WS: true}} {
		transport := map[bool]string{true: "tls", false: "tcp"}[o.TLS]
		if o.WS {
			transport = "websocket"
		}
		c := hub.MustConnect(t, d, o)
		// Each round in its own ten minutes, so ranges don't overlap.
		base := time.Now().Add(-time.Duration(round+1) * 10 * time.Minute).Truncate(time.Millisecond)
		lastBase = base
		for i := 0; i < 10; i++ {
			testutil.Publish(t, c, d.ID, map[string]any{
				"ts":      base.Add(time.Duration(i) * time.Second).UnixMilli(),
				"spindle": map[string]any{"rpm": 1000 + i, "load-%": 40.5},
				"running": true,
				"state":   "RUNNING",
			})
		}
		c.Disconnect(100)
		testutil.Eventually(t, 10*time.Second, "10 points queryable", func() bool {
			return len(rawPoints(t, a, d.ID, "spindle.rpm", base.Add(-time.Second), base.Add(time.Minute))) == 10
		})
		pts := rawPoints(t, a, d.ID, "spindle.rpm", base.Add(-time.Second), base.Add(time.Minute))
		for i := 0; i < 10; i++ {
			ts := base.Add(time.Duration(i) * time.Second).UnixMilli()
			if v := pts[ts]; len(v) != 1 || v[0] != float64(1000+i) {
				t.Fatalf("%s: point at %d = %v, want [%d]; all points: %v", transport, ts, v, 1000+i, pts)
			}
		}
		// Aggregation over the range.
		var agg seriesResp
		q := url.Values{"names": {"spindle.rpm"}, "from": {fmt.Sprint(base.UnixMilli())}, "to": {fmt.Sprint(base.Add(10 * time.Second).UnixMilli())}, "step": {"1h"}, "agg": {"max"}}
		a.MustDo(t, 200, "GET", "/api/v1/devices/cnc-01/telemetry?"+q.Encode(), nil, &agg)
		if len(agg.Series) != 1 || len(agg.Series[0].Points) == 0 || agg.Series[0].Points[len(agg.Series[0].Points)-1].V != 1009 {
			t.Fatalf("max over the range: %+v", agg.Series)
		}
	}

	// Strings keep the latest value plus each change.
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for i, st := range []string{"IDLE", "IDLE", "SETUP", "SETUP", "RUNNING"} {
		testutil.Publish(t, c, d.ID, map[string]any{"ts": t0.Add(time.Duration(i) * time.Second).UnixMilli(), "state": st})
	}
	var ev struct {
		Events []struct {
			T     int64  `json:"t"`
			Value string `json:"value"`
		} `json:"events"`
	}
	testutil.Eventually(t, 10*time.Second, "state changes", func() bool {
		a.MustDo(t, 200, "GET", "/api/v1/devices/cnc-01/events?field=state&from="+fmt.Sprint(t0.Add(-time.Second).UnixMilli()), nil, &ev)
		return len(ev.Events) == 3
	})
	if ev.Events[0].Value != "IDLE" || ev.Events[1].Value != "SETUP" || ev.Events[2].Value != "RUNNING" || ev.Events[1].T != t0.Add(2*time.Second).UnixMilli() {
		t.Fatalf("state changes: %+v", ev.Events)
	}
	if st := a.Do(t, "GET", "/api/v1/devices/cnc-01/events", nil, nil); st != 400 {
		t.Fatalf("events without a field: %d, want 400", st)
	}

	lv := latest(t, a, d.ID)
	if lv["running"] != 1.0 || lv["state"] != "RUNNING" || lv["spindle.load-%"] != 40.5 {
		t.Fatalf("latest values: %v", lv)
	}

	// The Prometheus-compatible API: metric name sanitized, labels device,
	// site, template and field (the original path).
	var pr struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	a.MustDo(t, 200, "GET", "/prometheus/api/v1/query?query="+url.QueryEscape(`spindle_load__{device="cnc-01"}`)+"&time="+fmt.Sprint(lastBase.Add(10*time.Second).Unix()), nil, &pr)
	if len(pr.Data.Result) != 1 {
		t.Fatalf("promql result: %+v", pr)
	}
	m := pr.Data.Result[0].Metric
	if m["__name__"] != "spindle_load__" || m["device"] != "cnc-01" || m["site"] != "plant-1" || m["template"] != "cnc" || m["field"] != "spindle.load-%" {
		t.Fatalf("series labels: %v", m)
	}
	if _, leaked := m["org"]; leaked {
		t.Fatalf("org label leaked to the Prometheus API: %v", m)
	}
}

func TestDeviceTimestampsAndPropertyBag(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	d := a.CreateDevice(t, "agv-7", nil)
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	when := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	// Creation time from the property bag, when the body has no ts.
	topic := "devices/agv-7/messages/events/" + url.QueryEscape("iothub-creation-time-utc") + "=" + url.QueryEscape(when.UTC().Format(time.RFC3339Nano)) + "&line=B"
	tk := c.Publish(topic, 1, false, []byte(`{"battery": 81.5}`))
	if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("publish with property bag: %v", tk.Error())
	}
	testutil.Eventually(t, 10*time.Second, "point at the creation time", func() bool {
		p := rawPoints(t, a, d.ID, "battery", when.Add(-time.Second), when.Add(time.Second))
		return len(p[when.UnixMilli()]) == 1
	})
	// Late data from an edge that was offline for six days is accepted.
	late := time.Now().Add(-6 * 24 * time.Hour).Truncate(time.Millisecond)
	testutil.Publish(t, c, d.ID, map[string]any{"ts": late.UnixMilli(), "battery": 12.0})
	testutil.Eventually(t, 10*time.Second, "six-day-old point", func() bool {
		p := rawPoints(t, a, d.ID, "battery", late.Add(-time.Second), late.Add(time.Second))
		return len(p[late.UnixMilli()]) == 1
	})
}

func TestBadInput(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.MaxPayload = 4096 }})
	a := hub.API()
	d := a.CreateDevice(t, "press-1", nil)
	other := a.CreateDevice(t, "press-2", nil)

	// Wrong key, expired token, another device's key: not authorized.
	if _, err := hub.ConnectDevice(t, d, testutil.DeviceOptions{Key: other.PrimaryKey}); err == nil {
		t.Fatal("connected with another device's key")
	}
	if _, err := hub.ConnectDevice(t, d, testutil.DeviceOptions{Expiry: -time.Minute}); err == nil {
		t.Fatal("connected with an expired token")
	}
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})

	// Malformed JSON: not stored, counted, shown as last error; connection stays.
	var dev struct {
		LastError  string `json:"lastError"`
		ErrorCount int    `json:"errorCount"`
	}
	a.MustDo(t, 200, "GET", "/api/v1/devices/press-1", nil, &dev)
	before := dev.ErrorCount // the refused connections above count too
	tk := c.Publish("devices/press-1/messages/events/", 1, false, []byte(`{"force": 12,`))
	tk.WaitTimeout(10 * time.Second)
	testutil.Eventually(t, 10*time.Second, "malformed message counted", func() bool {
		a.MustDo(t, 200, "GET", "/api/v1/devices/press-1", nil, &dev)
		return dev.ErrorCount > before && strings.Contains(strings.ToLower(dev.LastError), "json")
	})
	if !c.IsConnectionOpen() {
		t.Fatal("malformed JSON dropped the connection")
	}
	testutil.Publish(t, c, d.ID, map[string]any{"force": 3.5})
	testutil.Eventually(t, 10*time.Second, "good message after a bad one", func() bool {
		return latest(t, a, d.ID)["force"] == 3.5
	})

	// Oversize payload: refused and not stored.
	big := fmt.Sprintf(`{"force": 99, "pad": %q}`, strings.Repeat("x", 8000))
	tk = c.Publish("devices/press-1/messages/events/", 1, false, []byte(big))
	tk.WaitTimeout(5 * time.Second)
	time.Sleep(300 * time.Millisecond) // give a wrongly accepted message time to land
	if got := latest(t, a, d.ID)["force"]; got != 3.5 {
		t.Fatalf("oversize message was stored: force=%v", got)
	}

	// Invalid API bodies: 400 with {error:{code,message}}, nothing created.
	for _, body := range []string{`{"id": 12}`, `{"id": "ok-1", "bogus": true}`, `not json`, `{"id": "has space"}`} {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if st := a.Do(t, "POST", "/api/v1/devices", body, &e); st != http.StatusBadRequest || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("body %s: status %d error %+v", body, st, e)
		}
	}
	if st := a.Do(t, "GET", "/api/v1/devices/ok-1", nil, nil); st != 404 {
		t.Errorf("a rejected body created a device: %d", st)
	}
	if st := a.Do(t, "POST", "/api/v1/devices", map[string]any{"id": "press-1"}, nil); st != http.StatusConflict {
		t.Errorf("duplicate id: %d, want 409", st)
	}
}
