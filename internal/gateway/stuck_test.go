package gateway

import (
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawStuckDevice connects over MQTT 3.1.1 with keep-alive 0 and a tiny
// receive buffer, subscribes to desired patches and methods, and then never
// reads again: the device of issue 12, case 6.
func rawStuckDevice(t *testing.T, f *fixture, id, key string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
	}}
	c, err := d.Dial("tcp", f.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	str := func(b []byte, s string) []byte { return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...) }
	packet := func(first byte, body []byte) []byte {
		out := []byte{first}
		n := len(body)
		for {
			b := byte(n % 128)
			n /= 128
			if n > 0 {
				b |= 0x80
			}
			out = append(out, b)
			if n == 0 {
				break
			}
		}
		return append(out, body...)
	}
	body := str(nil, "MQTT")
	body = append(body, 4, 0xC2, 0, 0) // 3.1.1, user+password+clean session, keep-alive 0
	body = str(body, id)
	body = str(body, username(id))
	body = str(body, token(t, id, key, hour()))
	sub := binary.BigEndian.AppendUint16(nil, 1)
	sub = append(str(sub, "$iothub/methods/POST/#"), 0)
	sub = append(str(sub, "$iothub/twin/PATCH/properties/desired/#"), 0)
	if _, err := c.Write(append(packet(0x10, body), packet(0x82, sub)...)); err != nil {
		t.Fatal(err)
	}
	// Read CONNACK and SUBACK, then stop reading for good.
	buf := make([]byte, 4+6)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readFull(c, buf); err != nil || buf[0] != 0x20 || buf[3] != 0 || buf[4] != 0x90 {
		t.Fatalf("CONNACK/SUBACK % x: %v", buf, err)
	}
	return c
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Writes to a device that stops reading used to hang for as long as the
// device stayed connected: after 129 desired patches every further twin
// patch and method call blocked, and goroutines piled up (issue 12, case 6).
// Now each write has a deadline, nothing waits behind a stuck write, what
// waits for the device is bounded, and the device is disconnected.
func TestStuckDeviceDoesNotHangWriters(t *testing.T) {
	f := start(t, Config{WriteTimeout: 500 * time.Millisecond})
	key := f.device("press-1")
	rawStuckDevice(t, f, "press-1", key)
	eventually(t, "subscriptions seen", func() bool {
		_, s, ok := f.g.connected("press-1")
		return ok && s.subs.Load()&(subMethods|subDesired) == subMethods|subDesired
	})
	before := runtime.NumGoroutine()
	patch := []byte(`{"recipe":"` + strings.Repeat("x", 64<<10) + `"}`)
	start := time.Now()
	var slowest time.Duration
	for i := 0; i < 300; i++ {
		t0 := time.Now()
		f.g.NotifyDesired("press-1", int64(i+1), patch)
		_ = f.g.SendMethod("press-1", "r", "reboot", []byte(`{}`))
		slowest = max(slowest, time.Since(t0))
		if !f.g.Connected("press-1") {
			break
		}
	}
	if slowest > 2*time.Second {
		t.Errorf("a write to the stuck device took %s; the write timeout is 500ms", slowest)
	}
	eventually(t, "the stuck device is disconnected", func() bool { return !f.g.Connected("press-1") })
	t.Logf("disconnected %s after the first patch; slowest call %s", time.Since(start).Round(time.Millisecond), slowest)
	eventually(t, "no goroutines left behind", func() bool { return runtime.NumGoroutine() <= before+2 })
	if err := f.g.SendMethod("press-1", "r2", "reboot", nil); err == nil {
		t.Error("a method to the disconnected device was accepted")
	}
}
