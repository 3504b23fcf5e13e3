package gateway

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPublishQoS1 measures one QoS 1 telemetry round trip (client
// PUBLISH to PUBACK) through a real in-process broker with an instant
// Publisher. Allocations include the paho client's.
func BenchmarkPublishQoS1(b *testing.B) {
	f := start(b, Config{})
	key := f.device("bench-1")
	c := mustV5(b, f, "bench-1", key)
	payload := fmt.Sprintf(`{"ts":%d,"temperature":21.53,"pressure":1013.2,"rpm":1450,"running":true,"state":"producing","axis":{"x":12.5,"y":-3.25}}`, recentTS())
	f.pub.set(func(p *fakePublisher) { p.stored = func() { p.got = p.got[:0] } })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.publish(b, "devices/bench-1/messages/events/", 1, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngest measures the gateway's own per-message work (flatten,
// property bag, envelope) without the network.
func BenchmarkIngest(b *testing.B) {
	g := &Gateway{cfg: Config{}.withDefaults()}
	s := &session{org: "acme", device: "press-1", site: "plant-1", template: "press"}
	payload := []byte(fmt.Sprintf(`{"ts":%d,"temperature":21.53,"pressure":1013.2,"rpm":1450,"running":true,"state":"producing","axis":{"x":12.5,"y":-3.25}}`, recentTS()))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if !canPublish("press-1", "devices/press-1/messages/events/$.ct=application%2Fjson") {
			b.Fatal("ACL")
		}
		if _, err := g.telemetry(s, "$.ct=application%2Fjson", payload, nil, now); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIdleConnectionMemory connects many idle MQTT 3.1.1 devices with raw
// sockets (no client library in the measurement) and reports the heap and
// stack the gateway spends per connection. Opt-in: GATEWAY_IDLE_CONNS=2000.
func TestIdleConnectionMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GATEWAY_IDLE_CONNS"))
	if n <= 0 {
		t.Skip("set GATEWAY_IDLE_CONNS=N to measure memory per idle connection")
	}
	f := start(t, Config{})
	ids := make([]string, n)
	keys := make([]string, n)
	for i := range ids {
		ids[i] = "idle-" + strconv.Itoa(i)
		keys[i] = f.device(ids[i])
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Tokens are made before measuring.
	pkts := make([][]byte, n)
	for i := range ids {
		pkts[i] = connectPacket(ids[i], username(ids[i]), token(t, ids[i], keys[i], hour()))
	}
	beforeHeap, beforeStack := memInUse()
	beforeG := runtime.NumGoroutine()
	for i := range ids {
		c, err := net.Dial("tcp", f.g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(pkts[i]); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		if _, err := io.ReadFull(bufio.NewReader(c), ack); err != nil || ack[3] != 0 {
			t.Fatalf("CONNACK %v %v", ack, err)
		}
	}
	eventually(t, "all connected", func() bool { return f.g.Stats().Connections == int64(n) })
	afterHeap, afterStack := memInUse()
	t.Logf("goroutines per connection: %.2f", float64(runtime.NumGoroutine()-beforeG)/float64(n))
	if p := os.Getenv("GATEWAY_IDLE_HEAPPROFILE"); p != "" {
		if fh, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(fh)
			fh.Close()
		}
	}
	t.Logf("%d idle connections: %.1f KiB heap + %.1f KiB goroutine stacks per connection (both socket ends in one process)",
		n, float64(afterHeap-beforeHeap)/float64(n)/1024, float64(afterStack-beforeStack)/float64(n)/1024)
}

// memInUse collects twice so that grown goroutine stacks are shrunk, as
// they would be in a long-running hub.
func memInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

// connectPacket encodes an MQTT 3.1.1 CONNECT with keepalive 300 s.
func connectPacket(id, user, pass string) []byte {
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	var body []byte
	body = str(body, "MQTT")
	body = append(body, 4, 0xC2) // level 4; user name, password, clean session
	body = binary.BigEndian.AppendUint16(body, 300)
	body = str(body, id)
	body = str(body, user)
	body = str(body, pass)
	pkt := []byte{0x10}
	for l := len(body); ; {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if l == 0 {
			break
		}
	}
	return append(pkt, body...)
}
