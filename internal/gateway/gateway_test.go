package gateway

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/internal/registry"
)

func TestSASAuthentication(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	other := f.device("press-2")
	dev, _ := f.devs.get("press-1")
	disabledKey := f.device("old-1")
	d, _ := f.devs.get("old-1")
	d.Disabled = true
	f.devs.put(d)

	cases := []struct {
		name, id, user, pass string
		ok                   bool
	}{
		{"primary key", "press-1", username("press-1"), token(t, "press-1", key, hour()), true},
		{"secondary key", "press-1", username("press-1"), token(t, "press-1", dev.SecondaryKey, hour()), true},
		{"expired", "press-1", username("press-1"), token(t, "press-1", key, time.Now().Add(-time.Minute)), false},
		{"wrong key", "press-1", username("press-1"), token(t, "press-1", newKey(), hour()), false},
		{"other device's token", "press-1", username("press-1"), token(t, "press-2", other, hour()), false},
		{"user name of another device", "press-1", username("press-2"), token(t, "press-1", key, hour()), false},
		{"disabled", "old-1", username("old-1"), token(t, "old-1", disabledKey, hour()), false},
		{"unknown device", "ghost", username("ghost"), token(t, "ghost", newKey(), hour()), false},
		{"no password", "press-1", username("press-1"), "", false},
		{"garbage password", "press-1", username("press-1"), "hunter2", false},
	}
	for _, c := range cases {
		t.Run("v5/"+c.name, func(t *testing.T) {
			cl, ack, err := dialV5(t, f, nil, c.id, c.user, c.pass)
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				eventually(t, "Connected", func() bool { return f.g.Connected(c.id) })
				_ = cl.c.Disconnect(&paho.Disconnect{})
				eventually(t, "not Connected", func() bool { return !f.g.Connected(c.id) })
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if ack == nil || ack.ReasonCode != 0x87 {
				t.Fatalf("CONNACK %+v, want reason 0x87 not authorized (err %v)", ack, err)
			}
		})
		t.Run("v3/"+c.name, func(t *testing.T) {
			cl, code, err := dialV3(t, "tcp://"+f.g.Addr().String(), c.id, c.user, c.pass, nil)
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v (code %d)", err, code)
				}
				cl.c.Disconnect(100)
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if code != 5 {
				t.Fatalf("CONNACK return code %d, want 5 not authorized", code)
			}
		})
	}
	if got := f.devs.errors("press-1"); !containsText(got, "SAS token expired") {
		t.Errorf("expired token not recorded on the device: %q", got)
	}
	if _, ok := f.devs.get("ghost"); ok {
		t.Error("unknown device was registered")
	}
	if s := f.g.Stats(); s.AuthFailures == 0 || s.Connects < 4 {
		t.Errorf("stats %+v", s)
	}
}

func TestDisabledDeviceRefusedPromptly(t *testing.T) {
	f := start(t, Config{DeviceCacheTTL: time.Hour})
	key := f.device("lathe-1")
	c := mustV5(t, f, "lathe-1", key)
	d, _ := f.devs.get("lathe-1")
	d.Disabled = true
	f.devs.put(d)
	if !f.g.Disconnect("lathe-1") {
		t.Fatal("Disconnect found no connection")
	}
	select {
	case dis := <-c.disconnected:
		if dis.ReasonCode != 0x98 {
			t.Fatalf("DISCONNECT reason %#x, want 0x98 administrative action", dis.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client got no DISCONNECT")
	}
	eventually(t, "not Connected", func() bool { return !f.g.Connected("lathe-1") })
	// The hour-long cache was dropped by Disconnect: the reconnect is refused.
	if _, ack, err := dialV5(t, f, nil, "lathe-1", username("lathe-1"), token(t, "lathe-1", key, hour())); err == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("disabled device reconnected: %v %+v", err, ack)
	}
	if f.g.Disconnect("lathe-1") {
		t.Fatal("Disconnect of an unconnected device reported a connection")
	}
}

func TestDeviceCacheExpires(t *testing.T) {
	f := start(t, Config{DeviceCacheTTL: 100 * time.Millisecond})
	key := f.device("mill-1")
	c := mustV5(t, f, "mill-1", key)
	_ = c.c.Disconnect(&paho.Disconnect{})
	d, _ := f.devs.get("mill-1")
	d.Disabled = true
	f.devs.put(d)
	eventually(t, "refusal after the cache expired", func() bool {
		_, _, err := dialV5(t, f, nil, "mill-1", username("mill-1"), token(t, "mill-1", key, hour()))
		return err != nil
	})
}

func containsText(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestTelemetryFlattenedWithProperties(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	c := mustV5(t, f, "press-1", key)
	before := time.Now().UnixMilli()
	devTime := time.Now().Add(-time.Hour).UTC().Truncate(time.Second).Add(500 * time.Millisecond)
	_, err := c.publish(t, "devices/press-1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&line=A%201", 1,
		`{"temp":21.5,"running":true,"state":"producing","axis":{"x":1,"y":-2},"vib":[0.5,0.25],"ts":"`+devTime.Format(time.RFC3339Nano)+`"}`,
		paho.UserProperty{Key: "shift", Value: "night"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := f.pub.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages stored", len(msgs))
	}
	m := msgs[0]
	if m.Org != "acme" || m.Device != "press-1" || m.Site != "plant-1" || m.Template != "press" {
		t.Errorf("envelope %+v", m)
	}
	if want := devTime.UnixMilli(); m.TS != want {
		t.Errorf("TS %d, want %d", m.TS, want)
	}
	if m.Received < before || m.Received > time.Now().UnixMilli() {
		t.Errorf("Received %d", m.Received)
	}
	wantNum := map[string]float64{"temp": 21.5, "running": 1, "axis.x": 1, "axis.y": -2, "vib.0": 0.5, "vib.1": 0.25}
	if !reflect.DeepEqual(m.Num, wantNum) {
		t.Errorf("Num %v", m.Num)
	}
	if !reflect.DeepEqual(m.Str, map[string]string{"state": "producing"}) {
		t.Errorf("Str %v", m.Str)
	}
	wantProps := map[string]string{"$.ct": "application/json", "$.ce": "utf-8", "line": "A 1", "shift": "night"}
	if !reflect.DeepEqual(m.Props, wantProps) {
		t.Errorf("Props %v", m.Props)
	}
	if s := f.g.Stats(); s.MessagesIn != 1 || s.Stored != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestTelemetryTimestampSources(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	c := mustV3(t, f, "press-1", key)
	pub := func(topic, payload string) {
		tok := c.c.Publish(topic, 1, false, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	// Device times within the accepted 7 days (older ones are refused).
	secs := time.Now().Add(-24 * time.Hour).Unix()
	created := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	pub("devices/press-1/messages/events/", fmt.Sprintf(`{"a":1,"ts":%d}`, secs))
	pub("devices/press-1/messages/events/iothub-creation-time-utc="+url.QueryEscape(created.Format(time.RFC3339)), `{"a":2}`)
	pub("devices/press-1/messages/events", `{"a":3}`)
	msgs := f.pub.messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	if msgs[0].TS != secs*1000 {
		t.Errorf("unix seconds ts: %d", msgs[0].TS)
	}
	if msgs[1].TS != created.UnixMilli() {
		t.Errorf("iothub-creation-time-utc: %d", msgs[1].TS)
	}
	if msgs[2].TS != msgs[2].Received {
		t.Errorf("no device time: TS %d, Received %d", msgs[2].TS, msgs[2].Received)
	}
	if _, ok := msgs[0].Num["ts"]; ok {
		t.Error("ts stored as a field")
	}
}

func TestMalformedTelemetry(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	c := mustV5(t, f, "press-1", key)
	resp, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"temp": 21.5,`)
	if err == nil || resp == nil || resp.ReasonCode != 0x99 {
		t.Fatalf("malformed JSON: %+v %v, want PUBACK 0x99 payload format invalid", resp, err)
	}
	if _, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"temp": 22}`); err != nil {
		t.Fatalf("connection unusable after a malformed message: %v", err)
	}
	if n := len(f.pub.messages()); n != 1 {
		t.Fatalf("%d messages stored, want only the good one", n)
	}
	eventually(t, "device error recorded", func() bool { return containsText(f.devs.errors("press-1"), "telemetry not stored") })
	if s := f.g.Stats(); s.Malformed != 1 {
		t.Errorf("Malformed %d", s.Malformed)
	}
	if ds, ok := f.g.DeviceStats("press-1"); !ok || ds.Malformed != 1 || ds.Messages != 2 {
		t.Errorf("DeviceStats %+v %v", ds, ok)
	}

	// MQTT 3.1.1: acknowledged (nothing to retry), connection stays.
	key2 := f.device("press-2")
	c3 := mustV3(t, f, "press-2", key2)
	for _, p := range []string{"not json", `{"ok":1}`} {
		tok := c3.c.Publish("devices/press-2/messages/events/", 1, false, p)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %q: %v", p, tok.Error())
		}
	}
	if !c3.c.IsConnectionOpen() {
		t.Fatal("3.1.1 connection closed after a malformed message")
	}
	if n := len(f.pub.messages()); n != 2 {
		t.Fatalf("%d messages stored", n)
	}
}

func TestOversizePayload(t *testing.T) {
	f := start(t, Config{MaxPayload: 1024})
	key := f.device("press-1")
	c := mustV5(t, f, "press-1", key)
	big := `{"s":"` + strings.Repeat("x", 2000) + `"}`
	resp, err := c.publish(t, "devices/press-1/messages/events/", 1, big)
	if err == nil || resp == nil || resp.ReasonCode != 0x95 {
		t.Fatalf("oversize: %+v %v, want PUBACK 0x95 packet too large", resp, err)
	}
	if _, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"ok":1}`); err != nil {
		t.Fatalf("connection unusable after an oversize message: %v", err)
	}
	// Beyond the packet limit (payload + 16 KiB) mochi drops the connection.
	huge := `{"s":"` + strings.Repeat("x", 20*1024) + `"}`
	go c.publish(t, "devices/press-1/messages/events/", 1, huge)
	select {
	case <-c.failed:
	case <-c.disconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed for a packet beyond the maximum packet size")
	}

	key2 := f.device("press-2")
	c3 := mustV3(t, f, "press-2", key2)
	c3.c.Publish("devices/press-2/messages/events/", 1, false, big)
	waitLost(t, c3)

	if n := len(f.pub.messages()); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
	if s := f.g.Stats(); s.Oversize != 2 {
		t.Errorf("Oversize %d, want 2", s.Oversize)
	}
}

func TestACLv5(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	f.device("press-2")
	c := mustV5(t, f, "press-1", key)

	for _, topic := range []string{"devices/press-2/messages/events/", "devices/press-1/other", "plant/alarms", "devices/press-1/messages/devicebound/x"} {
		resp, err := c.publish(t, topic, 1, `{"a":1}`)
		if err == nil || resp == nil || resp.ReasonCode != 0x87 {
			t.Errorf("publish to %s: %+v %v, want PUBACK 0x87", topic, resp, err)
		}
	}
	for _, topic := range []string{"$iothub/twin/GET/?$rid=1", "$iothub/methods/res/200/?$rid=1"} {
		if _, err := c.publish(t, topic, 1, `{}`); err != nil {
			t.Errorf("publish to %s refused: %v", topic, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := func(filter string) byte {
		ack, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if ack == nil {
			t.Fatalf("subscribe %s: %v", filter, err)
		}
		return ack.Reasons[0]
	}
	for _, ok := range []string{"devices/press-1/messages/devicebound/#", "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#"} {
		if r := sub(ok); r != 1 {
			t.Errorf("subscribe %s: reason %#x, want 0x01 granted QoS 1", ok, r)
		}
	}
	for _, bad := range []string{"devices/press-2/messages/devicebound/#", "devices/+/messages/events/#", "#", "$SYS/#", "$share/g/devices/press-1/messages/devicebound/#", "devices/press-1/messages/events/"} {
		if r := sub(bad); r != 0x87 {
			t.Errorf("subscribe %s: reason %#x, want 0x87 not authorized", bad, r)
		}
	}
	if n := len(f.pub.messages()); n != 0 {
		t.Fatalf("%d messages stored from refused topics", n)
	}
	if !f.g.Connected("press-1") {
		t.Fatal("connection closed by ACL refusals")
	}
}

func TestACLv3(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	c := mustV3(t, f, "press-1", key)
	tok := c.c.Subscribe("devices/press-2/messages/devicebound/#", 1, nil)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("no SUBACK")
	}
	if r := tok.(interface{ Result() map[string]byte }).Result()["devices/press-2/messages/devicebound/#"]; r != 0x80 {
		t.Fatalf("SUBACK %#x, want 0x80 failure", r)
	}
	tok = c.c.Subscribe("devices/press-1/messages/devicebound/#", 1, nil)
	tok.WaitTimeout(10 * time.Second)
	if r := tok.(interface{ Result() map[string]byte }).Result()["devices/press-1/messages/devicebound/#"]; r != 1 {
		t.Fatalf("own topic SUBACK %#x, want 1", r)
	}
	// QoS 0 to a foreign topic: dropped, connection stays.
	c.c.Publish("devices/press-2/messages/events/", 0, false, `{"a":1}`).WaitTimeout(10 * time.Second)
	if tok := c.c.Publish("devices/press-1/messages/events/", 1, false, `{"a":2}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("own telemetry after a dropped QoS 0 publish: %v", tok.Error())
	}
	// QoS 1 to a foreign topic: 3.1.1 cannot refuse a PUBLISH, the connection is closed.
	c.c.Publish("devices/press-2/messages/events/", 1, false, `{"a":3}`)
	waitLost(t, c)
	msgs := f.pub.messages()
	if len(msgs) != 1 || msgs[0].Num["a"] != 2 {
		t.Fatalf("stored %v", msgs)
	}
	if s := f.g.Stats(); s.Denied != 2 {
		t.Errorf("Denied %d, want 2", s.Denied)
	}
}

// The PUBACK must not reach the client before Publish returned.
func TestPubackOnlyAfterDurable(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	var mu sync.Mutex
	var events []string
	f.pub.set(func(p *fakePublisher) {
		p.gate, p.entered = gate, entered
		p.stored = func() { mu.Lock(); events = append(events, "stored"); mu.Unlock() }
	})
	for _, proto := range []string{"v5", "v3"} {
		t.Run(proto, func(t *testing.T) {
			mu.Lock()
			events = nil
			mu.Unlock()
			acked := make(chan error, 1)
			if proto == "v5" {
				c := mustV5(t, f, "press-1", key)
				go func() { _, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"a":1}`); acked <- err }()
			} else {
				c := mustV3(t, f, "press-1", key)
				go func() {
					tok := c.c.Publish("devices/press-1/messages/events/", 1, false, `{"a":1}`)
					tok.Wait()
					acked <- tok.Error()
				}()
			}
			<-entered // Publish is running and blocked
			select {
			case err := <-acked:
				t.Fatalf("client's publish completed while the bus had not stored it (err %v)", err)
			case <-time.After(300 * time.Millisecond):
			}
			gate <- struct{}{} // release this one message
			if err := <-acked; err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			events = append(events, "acked")
			got := strings.Join(events, ",")
			mu.Unlock()
			if got != "stored,acked" {
				t.Fatalf("order %s", got)
			}
		})
	}
}

func TestPublishFailureNotAcknowledged(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	f.pub.set(func(p *fakePublisher) { p.fail = errPublish })
	c := mustV5(t, f, "press-1", key)
	resp, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"a":1}`)
	if err == nil || resp == nil || resp.ReasonCode != 0x80 {
		t.Fatalf("v5: %+v %v, want PUBACK 0x80", resp, err)
	}

	c3 := mustV3(t, f, "press-1", key)
	tok := c3.c.Publish("devices/press-1/messages/events/", 1, false, `{"a":2}`)
	waitLost(t, c3)
	if tok.WaitTimeout(time.Second) && tok.Error() == nil {
		t.Fatal("3.1.1 publish completed although the bus failed")
	}
	if s := f.g.Stats(); s.PublishFailures != 2 || s.Stored != 0 {
		t.Errorf("stats %+v", s)
	}

	// The bus is back: the same client works again.
	f.pub.set(func(p *fakePublisher) { p.fail = nil })
	c3 = mustV3(t, f, "press-1", key)
	if tok := c3.c.Publish("devices/press-1/messages/events/", 1, false, `{"a":3}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish after recovery: %v", tok.Error())
	}
}

func TestPublishTimeoutNotAcknowledged(t *testing.T) {
	f := start(t, Config{PublishTimeout: 200 * time.Millisecond})
	key := f.device("press-1")
	f.pub.set(func(p *fakePublisher) { p.gate = make(chan struct{}) }) // never released
	c := mustV5(t, f, "press-1", key)
	resp, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"a":1}`)
	if err == nil || resp == nil || resp.ReasonCode != 0x80 {
		t.Fatalf("%+v %v, want PUBACK 0x80 after the publish timeout", resp, err)
	}
}

func TestWillSentAsTelemetry(t *testing.T) {
	f := start(t, Config{})
	key := f.device("agv-1")
	conn, err := net.Dial("tcp", f.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{
		ClientID: "agv-1", KeepAlive: 30, CleanStart: true,
		Username: username("agv-1"), UsernameFlag: true, Password: []byte(token(t, "agv-1", key, hour())), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "devices/agv-1/messages/events/kind=will", Payload: []byte(`{"online":false}`), QoS: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.TerminateConnectionForTest() // no DISCONNECT: the will fires
	eventually(t, "will stored", func() bool { return len(f.pub.messages()) == 1 })
	m := f.pub.messages()[0]
	if m.Num["online"] != 0 || m.Props["kind"] != "will" {
		t.Fatalf("will %+v", m)
	}

	// A will aimed anywhere else is refused at CONNECT.
	conn2, _ := net.Dial("tcp", f.g.Addr().String())
	c2 := paho.NewClient(paho.ClientConfig{Conn: conn2})
	ack, err := c2.Connect(ctx, &paho.Connect{
		ClientID: "agv-1", KeepAlive: 30, CleanStart: true,
		Username: username("agv-1"), UsernameFlag: true, Password: []byte(token(t, "agv-1", key, hour())), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "devices/agv-2/messages/devicebound/x", Payload: []byte(`x`)},
	})
	if err == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("foreign will topic accepted: %v %+v", err, ack)
	}
}

func TestMetrics(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	c := mustV5(t, f, "press-1", key)
	if _, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"a":1}`); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := f.g.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			got[mf.GetName()] = m.Counter.GetValue()
		case m.Gauge != nil:
			got[mf.GetName()] = m.Gauge.GetValue()
		case m.Histogram != nil:
			got[mf.GetName()] = float64(m.Histogram.GetSampleCount())
		}
	}
	for name, want := range map[string]float64{
		"shopfloor_gateway_connections":             1,
		"shopfloor_gateway_messages_stored_total":   1,
		"shopfloor_gateway_messages_received_total": 1,
		"shopfloor_gateway_publish_seconds":         1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{MQTTSAddr: "127.0.0.1:0"}, newFakeDevices(), &fakePublisher{}, nil); err == nil {
		t.Fatal("TLS listener without certificate accepted")
	}
	if _, err := New(Config{}, nil, &fakePublisher{}, nil); err == nil {
		t.Fatal("nil devices accepted")
	}
	f := start(t, Config{})
	if _, err := New(Config{MQTTAddr: f.g.Addr().String()}, newFakeDevices(), &fakePublisher{}, nil); err == nil {
		t.Fatal("second gateway on a busy port accepted")
	}
	_ = registry.ErrNotFound
}
