package interop

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// benchDevices is how many devices stay connected during the benchmarks.
const benchDevices = 300

// benchFleet starts a hub with benchDevices paho devices that answer every
// method with 200 and report each desired notification on a channel.
func benchFleet(b *testing.B) (*testutil.Hub, []string, chan string) {
	b.Helper()
	h := testutil.StartHub(b, testutil.Options{})
	a := h.API()
	desired := make(chan string, 1024)
	ids := make([]string, benchDevices)
	for i := range ids {
		id := fmt.Sprintf("bench-%04d", i)
		ids[i] = id
		d := a.CreateDevice(b, id, nil)
		c := h.MustConnect(b, d, testutil.DeviceOptions{})
		answer := func(c mqtt.Client, m mqtt.Message) {
			_, rid, _ := strings.Cut(m.Topic(), "?$rid=")
			c.Publish("$iothub/methods/res/200/?$rid="+rid, 0, false, `{"ok":true}`)
		}
		for f, cb := range map[string]mqtt.MessageHandler{
			"$iothub/methods/POST/#": answer,
			"$iothub/twin/PATCH/properties/desired/#": func(_ mqtt.Client, m mqtt.Message) {
				desired <- id
			},
		} {
			if tk := c.Subscribe(f, 0, cb); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
				b.Fatalf("subscribe: %v", tk.Error())
			}
		}
	}
	return h, ids, desired
}

// BenchmarkMethodRoundTrip: REST call -> bus -> gateway -> device -> back,
// with benchDevices devices connected.
func BenchmarkMethodRoundTrip(b *testing.B) {
	h, ids, _ := benchFleet(b)
	a := h.API()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var r methodBody
		a.MustDo(b, 200, "POST", "/api/v1/devices/"+ids[i%len(ids)]+"/methods/ping?timeout=10", `{}`, &r)
		if r.Status != 200 {
			b.Fatalf("status %d", r.Status)
		}
	}
}

// BenchmarkDesiredNotification: from the REST PATCH until the device has
// the desired-properties notification, with benchDevices devices connected.
func BenchmarkDesiredNotification(b *testing.B) {
	h, ids, desired := benchFleet(b)
	a := h.API()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[i%len(ids)]
		a.MustDo(b, 200, "PATCH", "/api/v1/devices/"+id+"/twin", fmt.Sprintf(`{"properties":{"desired":{"setpoint":%d}}}`, i), nil)
		select {
		case got := <-desired:
			if got != id {
				b.Fatalf("notification went to %s, not %s", got, id)
			}
		case <-time.After(10 * time.Second):
			b.Fatal("no desired notification within 10s")
		}
	}
}
