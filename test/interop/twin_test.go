package interop

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// inbox collects what the hub sends a paho device.
type inbox struct {
	mu   sync.Mutex
	msgs []mqtt.Message
}

func (b *inbox) add(_ mqtt.Client, m mqtt.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, m)
}

// wait returns the first message whose topic starts with prefix, removing it.
func (b *inbox) wait(t *testing.T, prefix string) mqtt.Message {
	t.Helper()
	var got mqtt.Message
	testutil.Eventually(t, 10*time.Second, "a message on "+prefix, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, m := range b.msgs {
			if strings.HasPrefix(m.Topic(), prefix) {
				got = m
				b.msgs = append(b.msgs[:i], b.msgs[i+1:]...)
				return true
			}
		}
		return false
	})
	return got
}

func (b *inbox) count(prefix string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.msgs {
		if strings.HasPrefix(m.Topic(), prefix) {
			n++
		}
	}
	return n
}

// listen subscribes a device to everything the cloud sends it.
func listen(t *testing.T, c mqtt.Client, device string) *inbox {
	t.Helper()
	b := &inbox{}
	for _, f := range []string{"$iothub/twin/res/#", "$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#", "devices/" + device + "/messages/devicebound/#"} {
		tk := c.Subscribe(f, 1, b.add)
		if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tk.Error())
		}
	}
	return b
}

func publish(t *testing.T, c mqtt.Client, topic string, payload string) {
	t.Helper()
	tk := c.Publish(topic, 0, false, payload)
	if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tk.Error())
	}
}

type twinBody struct {
	DeviceID   string         `json:"deviceId"`
	ETag       string         `json:"etag"`
	Version    int64          `json:"version"`
	Tags       map[string]any `json:"tags"`
	Properties struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"properties"`
}

type methodBody struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// TestTwinMethodsMessages drives the device protocol with paho against a
// real hub: twin GET, reported and desired patches, a method call through
// the REST API, cloud-to-device messages across a reconnect, and bad input.
func TestTwinMethodsMessages(t *testing.T) {
	h := testutil.StartHub(t, testutil.Options{})
	a := h.API()
	d := a.CreateDevice(t, "press.7", nil)
	other := a.CreateDevice(t, "press-8", nil)
	c := h.MustConnect(t, d, testutil.DeviceOptions{})
	in := listen(t, c, d.ID)
	oc := h.MustConnect(t, other, testutil.DeviceOptions{})
	oin := listen(t, oc, other.ID)

	// Twin GET of a fresh twin.
	publish(t, c, "$iothub/twin/GET/?$rid=1", "")
	m := in.wait(t, "$iothub/twin/res/")
	if m.Topic() != "$iothub/twin/res/200/?$rid=1" || string(m.Payload()) != `{"desired":{"$version":1},"reported":{"$version":1}}` {
		t.Fatalf("twin GET: %s %s", m.Topic(), m.Payload())
	}
	// Reported patch.
	publish(t, c, "$iothub/twin/PATCH/properties/reported/?$rid=2", `{"temperature":71.5,"firmware":"2.4.1"}`)
	if m = in.wait(t, "$iothub/twin/res/"); m.Topic() != "$iothub/twin/res/204/?$rid=2&$version=2" {
		t.Fatalf("reported patch: %s", m.Topic())
	}
	// Bad patches: not JSON, too large, reserved name, bad $version.
	publish(t, c, "$iothub/twin/PATCH/properties/reported/?$rid=3", `not json`)
	if m = in.wait(t, "$iothub/twin/res/"); m.Topic() != "$iothub/twin/res/400/?$rid=3" {
		t.Fatalf("non-JSON patch: %s", m.Topic())
	}
	publish(t, c, "$iothub/twin/PATCH/properties/reported/?$rid=4", `{"blob":"`+strings.Repeat("x", 33*1024)+`"}`)
	if m = in.wait(t, "$iothub/twin/res/"); m.Topic() != "$iothub/twin/res/413/?$rid=4" {
		t.Fatalf("oversize patch: %s", m.Topic())
	}
	publish(t, c, "$iothub/twin/PATCH/properties/reported/?$rid=5&$version=abc", `{"a":1}`)
	if m = in.wait(t, "$iothub/twin/res/"); m.Topic() != "$iothub/twin/res/400/?$rid=5" {
		t.Fatalf("bad $version: %s", m.Topic())
	}
	// Refused without an answer: no $rid, unknown $iothub topics, a
	// method response nobody waits for, a hub-to-device topic. The
	// connection stays up and the next request is answered.
	publish(t, c, "$iothub/twin/GET/", "")
	publish(t, c, "$iothub/twin/DELETE/?$rid=6", "")
	publish(t, c, "$iothub/methods/res/200/?$rid=ffff", `{}`)
	publish(t, c, "$iothub/twin/PATCH/properties/desired/?$version=9", `{"a":1}`)
	publish(t, c, "$iothub/twin/GET/?$rid="+strings.Repeat("r", 200), "")
	publish(t, c, "$iothub/twin/GET/?$rid=7", "")
	if m = in.wait(t, "$iothub/twin/res/"); m.Topic() != "$iothub/twin/res/200/?$rid=7" ||
		string(m.Payload()) != `{"desired":{"$version":1},"reported":{"$version":2,"firmware":"2.4.1","temperature":71.5}}` {
		t.Fatalf("twin GET after bad requests: %s %s", m.Topic(), m.Payload())
	}
	if !c.IsConnectionOpen() {
		t.Fatal("bad requests closed the connection")
	}

	// Service side: GET with ETag, conditional PATCH, 412 on a stale etag.
	var tw twinBody
	a.MustDo(t, 200, "GET", "/api/v1/devices/press.7/twin", nil, &tw)
	if tw.ETag != `"2"` || tw.Properties.Reported["temperature"] != 71.5 || tw.Properties.Desired["$version"] != 1.0 {
		t.Fatalf("twin via the API: %+v", tw)
	}
	st, _ := doRaw(t, a, "PATCH", "/api/v1/devices/press.7/twin", `{"tags":{"line":"3"},"properties":{"desired":{"setpoint":72.5}}}`, map[string]string{"If-Match": tw.ETag})
	if st != 200 {
		t.Fatalf("conditional patch: %d", st)
	}
	m = in.wait(t, "$iothub/twin/PATCH/properties/desired/")
	if m.Topic() != "$iothub/twin/PATCH/properties/desired/?$version=2" || string(m.Payload()) != `{"$version":2,"setpoint":72.5}` {
		t.Fatalf("desired notification: %s %s", m.Topic(), m.Payload())
	}
	if st, body := doRaw(t, a, "PATCH", "/api/v1/devices/press.7/twin", `{"tags":{"line":"4"}}`, map[string]string{"If-Match": tw.ETag}); st != 412 {
		t.Fatalf("stale If-Match: %d %s", st, body)
	}
	if st, body := doRaw(t, a, "PATCH", "/api/v1/devices/press.7/twin", `{"properties":{"desired":{"big":"`+strings.Repeat("x", 33*1024)+`"}}}`, nil); st != 413 {
		t.Fatalf("oversize desired patch: %d %s", st, body)
	}
	if st, body := doRaw(t, a, "PATCH", "/api/v1/devices/press.7/twin", `{"properties":{"desired":{"$version":3}}}`, nil); st != 400 {
		t.Fatalf("reserved desired name: %d %s", st, body)
	}
	if oin.count("$iothub/") != 0 {
		t.Fatal("another device received press.7's traffic")
	}

	// Direct method through the REST API, answered by the device.
	go func() {
		m := in.wait(t, "$iothub/methods/POST/")
		var rid string
		if _, q, ok := strings.Cut(m.Topic(), "?$rid="); ok {
			rid = q
		}
		if !strings.HasPrefix(m.Topic(), "$iothub/methods/POST/start/") || string(m.Payload()) != `{"speed":3}` {
			publish(t, c, "$iothub/methods/res/500/?$rid="+rid, fmt.Sprintf(`{"unexpected":%q}`, m.Topic()))
			return
		}
		publish(t, c, "$iothub/methods/res/201/?$rid="+rid, `{"started":true}`)
	}()
	var mr methodBody
	a.MustDo(t, 200, "POST", "/api/v1/devices/press.7/methods/start?timeout=10", `{"speed":3}`, &mr)
	if mr.Status != 201 || string(mr.Payload) != `{"started":true}` {
		t.Fatalf("method result: %+v %s", mr, mr.Payload)
	}
	if st, body := doRaw(t, a, "POST", "/api/v1/devices/press.7/methods/slow?timeout=1", `{}`, nil); st != 504 {
		t.Fatalf("unanswered method: %d %s", st, body)
	}
	in.wait(t, "$iothub/methods/POST/slow/")

	// Cloud-to-device: delivered live with properties, then queued while
	// offline and delivered after the device reconnects.
	var sent struct {
		ID string `json:"id"`
	}
	a.MustDo(t, 201, "POST", "/api/v1/devices/press.7/messages?prio=high&ttl=60", `{"cmd":"stop"}`, &sent)
	m = in.wait(t, "devices/press.7/messages/devicebound/")
	if !strings.Contains(m.Topic(), "prio=high") || !strings.Contains(m.Topic(), "$.mid="+sent.ID) || string(m.Payload()) != `{"cmd":"stop"}` || m.Qos() != 1 {
		t.Fatalf("c2d: %s %s qos %d", m.Topic(), m.Payload(), m.Qos())
	}
	waitState(t, a, "press.7", "delivered", 1)

	c.Disconnect(100)
	a.MustDo(t, 201, "POST", "/api/v1/devices/press.7/messages", `offline one`, nil)
	var list struct {
		Items []struct {
			ID   string `json:"id"`
			Body string `json:"body"`
		} `json:"items"`
	}
	a.MustDo(t, 200, "GET", "/api/v1/devices/press.7/messages", nil, &list)
	if len(list.Items) != 1 || list.Items[0].Body != "offline one" {
		t.Fatalf("pending while offline: %+v", list)
	}
	if st, body := doRaw(t, a, "POST", "/api/v1/devices/press.7/methods/start", `{}`, nil); st != 404 {
		t.Fatalf("method to an offline device: %d %s", st, body)
	}
	c = h.MustConnect(t, d, testutil.DeviceOptions{})
	in = listen(t, c, d.ID)
	if m = in.wait(t, "devices/press.7/messages/devicebound/"); string(m.Payload()) != "offline one" {
		t.Fatalf("queued message after reconnect: %s", m.Payload())
	}
	waitState(t, a, "press.7", "delivered", 2)

	// Purge and the queue limit (50).
	for i := 0; i < 50; i++ {
		a.MustDo(t, 201, "POST", "/api/v1/devices/press-8/messages?ttl=1h", fmt.Sprintf("m%d", i), nil)
		oin.wait(t, "devices/press-8/messages/devicebound/")
	}
	// Received is not yet completed: the PUBACK is recorded a moment later,
	// and until then the message still counts against the limit.
	waitState(t, a, "press-8", "delivered", 50)
	oc.Disconnect(100)
	for i := 0; i < 50; i++ {
		a.MustDo(t, 201, "POST", "/api/v1/devices/press-8/messages", "queued", nil)
	}
	if st, body := doRaw(t, a, "POST", "/api/v1/devices/press-8/messages", "one too many", nil); st != 409 {
		t.Fatalf("51st message: %d %s", st, body)
	}
	var purged struct {
		Purged int `json:"purged"`
	}
	a.MustDo(t, 200, "DELETE", "/api/v1/devices/press-8/messages", nil, &purged)
	if purged.Purged != 50 {
		t.Fatalf("purged %d", purged.Purged)
	}
}

func waitState(t *testing.T, a *testutil.API, device, state string, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d %s messages", n, state), func() bool {
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		a.MustDo(t, 200, "GET", "/api/v1/devices/"+device+"/messages?state="+state, nil, &list)
		return len(list.Items) == n
	})
}

// doRaw sends a request with extra headers and returns status and body.
func doRaw(t *testing.T, a *testutil.API, method, path, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.Base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}

// TestTwoHubs shows routing over the bus: the device is connected to hub
// A; the method call and the desired patch go through hub B's API.
func TestTwoHubs(t *testing.T) {
	natsURL := os.Getenv("SHOPFLOOR_TEST_NATS")
	if natsURL == "" || os.Getenv("SHOPFLOOR_TEST_POSTGRES") == "" {
		t.Skip("SKIPPED: the two-hub test needs SHOPFLOOR_TEST_NATS (a NATS with JetStream) and SHOPFLOOR_TEST_POSTGRES")
	}
	dsn := testutil.PostgresDSN(t)
	prefix := testutil.SharedPrefix(t, natsURL)
	ha := testutil.StartHub(t, testutil.Options{Postgres: dsn, NATS: natsURL, Prefix: prefix})
	hb := testutil.StartHub(t, testutil.Options{Postgres: dsn, NATS: natsURL, Prefix: prefix})
	d := ha.API().CreateDevice(t, "cell.4:robot", nil)
	c := ha.MustConnect(t, d, testutil.DeviceOptions{})
	in := listen(t, c, d.ID)
	b := hb.API()

	go func() {
		m := in.wait(t, "$iothub/methods/POST/home/")
		_, rid, _ := strings.Cut(m.Topic(), "?$rid=")
		publish(t, c, "$iothub/methods/res/200/?$rid="+rid, `{"at":"home"}`)
	}()
	var mr methodBody
	b.MustDo(t, 200, "POST", "/api/v1/devices/cell.4:robot/methods/home", `{}`, &mr)
	if mr.Status != 200 || string(mr.Payload) != `{"at":"home"}` {
		t.Fatalf("method through hub B: %+v %s", mr, mr.Payload)
	}
	b.MustDo(t, 200, "PATCH", "/api/v1/devices/cell.4:robot/twin", `{"properties":{"desired":{"speed":2}}}`, nil)
	if m := in.wait(t, "$iothub/twin/PATCH/properties/desired/"); string(m.Payload()) != `{"$version":2,"speed":2}` {
		t.Fatalf("desired through hub B: %s", m.Payload())
	}
	b.MustDo(t, 201, "POST", "/api/v1/devices/cell.4:robot/messages", "via B", nil)
	if m := in.wait(t, "devices/cell.4:robot/messages/devicebound/"); string(m.Payload()) != "via B" {
		t.Fatalf("c2d through hub B: %s", m.Payload())
	}
}

// TestDesiredChecksTemplate: on a device with a template, a desired patch
// may set only the template's writable properties, within schema and range
// (as IoT Central allows); the 400 names each offending property and
// changes nothing. A desired job records the same refusal per device.
// Deleting a device forgets its template violations.
func TestDesiredChecksTemplate(t *testing.T) {
	h := testutil.StartHub(t, testutil.Options{})
	a := h.API()
	a.MustDo(t, http.StatusCreated, "POST", "/api/v1/templates", map[string]any{
		"id": "oven",
		"properties": []any{
			map[string]any{"name": "firmware", "schema": "string"},
			map[string]any{"name": "setpoint", "schema": "double", "writable": true, "min": 0, "max": 120},
		},
		"commands": []any{map[string]any{"name": "reboot", "request": "object"}},
	}, nil)
	a.CreateDevice(t, "oven-1", map[string]any{"template": "oven"})
	a.CreateDevice(t, "free-1", nil)

	patch := func(dev, desired string) (int, string) {
		var body json.RawMessage
		st := a.Do(t, "PATCH", "/api/v1/devices/"+dev+"/twin", `{"properties":{"desired":`+desired+`}}`, &body)
		return st, string(body)
	}
	for _, c := range []struct{ desired, want string }{
		{`{"color":"red"}`, `property \"color\" is not declared in the template`},
		{`{"firmware":"9.9"}`, `property \"firmware\" is read-only`},
		{`{"setpoint":500}`, `property \"setpoint\" is 500, above the maximum 120`},
		{`{"setpoint":"hot","color":1}`, `property \"color\"`},
	} {
		st, body := patch("oven-1", c.desired)
		if st != http.StatusBadRequest || !strings.Contains(body, c.want) || !strings.Contains(body, "template oven") {
			t.Errorf("desired %s: status %d body %s; want 400 naming %s", c.desired, st, body, c.want)
		}
	}
	var tw struct {
		Version int64 `json:"version"`
	}
	a.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/oven-1/twin", nil, &tw)
	if tw.Version != 1 {
		t.Fatalf("refused patches changed the twin: version %d", tw.Version)
	}
	if st, body := patch("oven-1", `{"setpoint":72.5,"color":null}`); st != http.StatusOK {
		t.Fatalf("a writable property in range and a removal: %d %s", st, body)
	}
	if st, body := patch("free-1", `{"anything":{"goes":true}}`); st != http.StatusOK {
		t.Fatalf("a device without a template takes any patch: %d %s", st, body)
	}

	var j struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	a.MustDo(t, http.StatusAccepted, "POST", "/api/v1/jobs", map[string]any{"type": "desired",
		"query": map[string]any{"template": "oven"}, "desired": map[string]any{"color": "blue"}, "rate": 50}, &j)
	testutil.Eventually(t, 20*time.Second, "the job to finish", func() bool {
		a.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID, nil, &j)
		return j.State == "completed"
	})
	var devs struct {
		Items []struct {
			Device string `json:"deviceId"`
			State  string `json:"state"`
			Error  string `json:"error"`
		} `json:"items"`
	}
	a.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID+"/devices", nil, &devs)
	if len(devs.Items) != 1 || devs.Items[0].State != "failed" || !strings.Contains(devs.Items[0].Error, `property "color" is not declared`) {
		t.Fatalf("job over the template's devices: %+v", devs.Items)
	}

	// A method payload that breaks the template is counted even though the
	// device is offline; deleting the device forgets the count.
	a.Do(t, "POST", "/api/v1/devices/oven-1/methods/reboot?timeout=1", "3", nil)
	var v struct {
		Command int64 `json:"command"`
	}
	a.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/oven-1/template-violations", nil, &v)
	if v.Command != 1 {
		t.Fatalf("violations before delete: %+v", v)
	}
	a.MustDo(t, http.StatusNoContent, "DELETE", "/api/v1/devices/oven-1", nil, nil)
	a.CreateDevice(t, "oven-1", map[string]any{"template": "oven"})
	a.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/oven-1/template-violations", nil, &v)
	if v.Command != 0 {
		t.Fatalf("a re-created device inherited the deleted one's violations: %+v", v)
	}
}
