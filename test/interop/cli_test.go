package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/cli"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// shopfloor runs the command line against h and returns stdout.
func shopfloor(t *testing.T, h *testutil.Hub, args ...string) (string, error) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	root := cli.NewRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append(args, "--url", h.URL, "--token", h.Token))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestCLI(t *testing.T) {
	h := testutil.StartHub(t, testutil.Options{})
	d := h.API().CreateDevice(t, "press-9", nil)

	out, err := shopfloor(t, h, "twin", "patch", "press-9", "--desired", `{"setpoint":70}`, "--tags", `{"line":"2"}`, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tw twinBody
	if err := json.Unmarshal([]byte(out), &tw); err != nil || tw.Properties.Desired["setpoint"] != 70.0 || tw.Tags["line"] != "2" {
		t.Fatalf("twin patch: %v %s", err, out)
	}
	if _, err := shopfloor(t, h, "twin", "patch", "press-9", "--desired", `{"setpoint":71}`, "--etag", `"1"`); err == nil || !strings.Contains(err.Error(), "etag") {
		t.Fatalf("stale --etag: %v", err)
	}
	if out, err = shopfloor(t, h, "twin", "get", "press-9"); err != nil || !strings.Contains(out, `"setpoint":70`) || !strings.Contains(out, `"2"`) {
		t.Fatalf("twin get: %v %s", err, out)
	}
	if _, err := shopfloor(t, h, "method", "invoke", "press-9", "reboot", "--payload", `{}`, "--timeout", "2s"); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Fatalf("method to an offline device: %v", err)
	}
	if _, err := shopfloor(t, h, "c2d", "send", "press-9", "hello", "--prop", "priority=high", "--ttl", "2h"); err != nil {
		t.Fatal(err)
	}
	if out, err = shopfloor(t, h, "c2d", "list", "press-9"); err != nil || !strings.Contains(out, "hello") || !strings.Contains(out, "priority=high") {
		t.Fatalf("c2d list: %v %s", err, out)
	}
	// The device connects, answers a method and takes the message.
	c := h.MustConnect(t, d, testutil.DeviceOptions{})
	in := listen(t, c, d.ID)
	in.wait(t, "devices/press-9/messages/devicebound/")
	go func() {
		m := in.wait(t, "$iothub/methods/POST/reboot/")
		_, rid, _ := strings.Cut(m.Topic(), "?$rid=")
		publish(t, c, "$iothub/methods/res/200/?$rid="+rid, `{"ok":1}`)
	}()
	if out, err = shopfloor(t, h, "method", "invoke", "press-9", "reboot", "--payload", `{"delay":1}`, "-o", "json"); err != nil || !strings.Contains(out, `"status": 200`) {
		t.Fatalf("method invoke: %v %s", err, out)
	}
	c.Disconnect(100)
	shopfloor(t, h, "c2d", "send", "press-9", "later")
	if out, err = shopfloor(t, h, "c2d", "purge", "press-9"); err != nil || !strings.Contains(out, "1") {
		t.Fatalf("c2d purge: %v %s", err, out)
	}
}
