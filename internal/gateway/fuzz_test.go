package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// The fuzz targets below feed raw bytes to a real gateway listener on
// loopback, so every packet goes through mochi's decoder and the gateway's
// hooks (CONNECT authentication, admission, PUBLISH ingest, $iothub
// requests) exactly as a device's bytes would.

// fuzzKey is the fixed primary key of the fuzz device, so that seed
// CONNECT packets stored in testdata carry a SAS token that still verifies.
const fuzzKey = "ZnV6ei1kZXZpY2Uta2V5LTAxMjM0NTY3ODlhYmNkZWY="

// fuzzCloud is an in-memory Cloud: twins and method responses are served
// from maps, so fuzzed $iothub publishes reach the gateway's request
// parsing and response writing.
type fuzzCloud struct {
	mu       sync.Mutex
	reported map[string]int64
}

func (c *fuzzCloud) Twin(_ context.Context, org, device string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return []byte(`{"desired":{"$version":1},"reported":{"$version":` + itoa(c.reported[org+"/"+device]) + `}}`), nil
}

func (c *fuzzCloud) PatchReported(_ context.Context, org, device string, patch []byte) (int64, error) {
	var v map[string]any
	if err := json.Unmarshal(patch, &v); err != nil {
		return 0, errors.Join(ErrRequest, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reported[org+"/"+device]++
	return c.reported[org+"/"+device], nil
}

func (c *fuzzCloud) MethodResponse(string, string, int, []byte) bool { return false }
func (c *fuzzCloud) Connected(string, string, bool)                  {}
func (c *fuzzCloud) PendingC2D(context.Context, string, string) ([]C2D, error) {
	return []C2D{{ID: "c2d-1", Body: []byte(`{"cmd":"stop"}`), Props: map[string]string{"k": "v"}}}, nil
}
func (c *fuzzCloud) AttemptC2D(context.Context, string, string, string) (bool, error) {
	return true, nil
}
func (c *fuzzCloud) CompleteC2D(context.Context, string, string, string) error { return nil }

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// fuzzGateway starts a gateway with one SAS device of organization acme
// (fuzz-dev, key fuzzKey) and one of globex whose key no input knows.
func fuzzGateway(t testing.TB) *fixture {
	f := start(t, Config{ConnectTimeout: 2 * time.Second, PublishTimeout: 2 * time.Second, Cloud: &fuzzCloud{reported: map[string]int64{}}})
	f.devs.put(registry.Device{ID: "fuzz-dev", Org: "acme", Site: "plant-1", Template: "press", PrimaryKey: fuzzKey, SecondaryKey: newKey()})
	f.devs.put(registry.Device{ID: "other-dev", Org: "globex", Site: "plant-9", PrimaryKey: newKey(), SecondaryKey: newKey()})
	return f
}

func encode(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzConnect is a CONNECT of fuzz-dev with a SAS token valid until
// expiry, in MQTT 3.1.1 (version 4) or 5.
func fuzzConnect(t testing.TB, version byte, expiry time.Time) []byte {
	t.Helper()
	name := "MQTT"
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{
			ProtocolName: []byte(name), Clean: true, Keepalive: 30, ClientIdentifier: "fuzz-dev",
			UsernameFlag: true, Username: []byte(username("fuzz-dev")),
			PasswordFlag: true, Password: []byte(token(t, "fuzz-dev", fuzzKey, expiry)),
		},
	}
	return encode(t, pk)
}

// fuzzSession is what follows a CONNECT in the seeds: the publishes a real
// device sends (telemetry with and without a property bag and user
// properties, twin requests, a method response, a subscription, a C2D
// acknowledgement).
func fuzzSession(t testing.TB, version byte) []byte {
	t.Helper()
	var out []byte
	pub := func(topic string, qos byte, id uint16, payload string, user ...packets.UserProperty) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: version,
			TopicName: topic, PacketID: id, Payload: []byte(payload)}
		pk.Properties.User = user
		out = append(out, encode(t, pk)...)
	}
	ts := time.Now().Add(-time.Minute).UnixMilli()
	pub("devices/fuzz-dev/messages/events/", 1, 1, `{"temperature":21.5,"pressure":1013.2,"running":true,"state":"producing","ts":`+itoa(ts)+`}`)
	pub("devices/fuzz-dev/messages/events/$.ct=application%2Fjson&$.ce=utf-8&line=3/", 1, 2, `{"axis":{"x":1.5,"y":-2},"vibration":[0.01,0.02]}`)
	pub("devices/fuzz-dev/messages/events/", 0, 0, `{"rpm":1450}`, packets.UserProperty{Key: "iothub-creation-time-utc", Val: time.Now().UTC().Format(time.RFC3339Nano)})
	pub("devices/fuzz-dev/messages/events/", 1, 4, `{"temperature":`)
	out = append(out, encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: version, PacketID: 5,
		Filters: packets.Subscriptions{{Filter: "$iothub/twin/res/#", Qos: 0}, {Filter: "devices/fuzz-dev/messages/devicebound/#", Qos: 1}, {Filter: "$iothub/methods/POST/#"}}})...)
	pub("$iothub/twin/GET/?$rid=1", 0, 0, "")
	pub("$iothub/twin/PATCH/properties/reported/?$rid=2&$version=3", 0, 0, `{"firmware":"1.2.3","speed":3}`)
	pub("$iothub/methods/res/200/?$rid=7", 0, 0, `{"ok":true}`)
	out = append(out, encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: version, PacketID: 1})...)
	out = append(out, encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}, ProtocolVersion: version})...)
	// Another device's topic last: 3.1.1 closes the connection on it.
	pub("devices/other-dev/messages/events/", 1, 3, `{"temperature":99}`)
	out = append(out, encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: version})...)
	return out
}

// exchange writes in to a new connection, half-closes it and reads until
// the gateway closes its side. A gateway that keeps a connection open after
// the client finished sending fails the input.
func exchange(t *testing.T, addr string, in []byte) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The gateway may close early (a refused CONNECT); a failed write is
	// then expected and what it read so far is what counts.
	_, _ = conn.Write(in)
	_ = conn.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, conn); err != nil && !isReset(err) {
		t.Fatalf("the gateway did not close the connection after the client finished: %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// checkAttribution fails if any stored message is attributed to a device
// other than fuzz-dev: only its key is known to the inputs, so a message of
// another device or organization means a publish escaped its session.
func checkAttribution(t *testing.T, f *fixture) {
	for _, m := range f.pub.messages() {
		if m.Device != "fuzz-dev" || m.Org != "acme" || m.Site != "plant-1" {
			t.Fatalf("a message was stored as device %q of %q (site %q); only fuzz-dev of acme authenticated", m.Device, m.Org, m.Site)
		}
	}
}

// FuzzGatewayConnect sends fuzzed bytes as the whole connection: the
// CONNECT packet and whatever follows. The seeds are valid sessions of
// both protocol versions (with a token valid for the next hour, so that
// mutations of them made during a fuzzing run still pass authentication
// and reach the PUBLISH handling) and damaged ones.
func FuzzGatewayConnect(f *testing.F) {
	far := time.Now().Add(time.Hour)
	for _, v := range []byte{4, 5} {
		f.Add(append(fuzzConnect(f, v, far), fuzzSession(f, v)...))
		f.Add(fuzzConnect(f, v, far))
		f.Add(fuzzConnect(f, v, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)))
	}
	f.Add([]byte{0x10, 0x00})
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	g := fuzzGateway(f)
	addr := g.g.Addr().String()
	f.Fuzz(func(t *testing.T, in []byte) {
		exchange(t, addr, in)
		checkAttribution(t, g)
	})
}

// FuzzGatewayPublish connects fuzz-dev with a fresh valid CONNECT of the
// chosen protocol version and then sends the fuzzed bytes as the session:
// every input reaches the authenticated PUBLISH, SUBSCRIBE and $iothub
// handling rather than stopping at the CONNECT.
func FuzzGatewayPublish(f *testing.F) {
	for _, v := range []byte{4, 5} {
		f.Add(v == 5, fuzzSession(f, v))
	}
	f.Add(true, []byte{0x32, 0x00})
	f.Add(false, []byte{0x30, 0x05, 0x00, 0x01, 'x', '{', '}'})
	g := fuzzGateway(f)
	addr := g.g.Addr().String()
	f.Fuzz(func(t *testing.T, v5 bool, session []byte) {
		version := byte(4)
		if v5 {
			version = 5
		}
		exchange(t, addr, append(fuzzConnect(t, version, time.Now().Add(time.Hour)), session...))
		checkAttribution(t, g)
	})
}
