package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

type apiErr struct {
	Error struct{ Code, Message string } `json:"error"`
}

// A rule's bus action publishes only in its organization's subject space:
// the hub's own subjects, another organization's, $JS.API and $SYS are
// refused when the rule is saved (issue 12, item 8), and a subject in the
// space carries the alert to an integrator.
func TestBusActionSubjectWall(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	acme := hub.API().CreateOrgToken(t, "acme", "admin")
	hub.API().CreateOrgToken(t, "globex", "admin")
	subjects := hub.Bus.Subjects()
	space := subjects.OrgSpace("acme") + "."
	rule := func(name, subject string) map[string]any {
		return map[string]any{"name": name, "condition": "temperature > 80",
			"actions": []map[string]any{{"type": "bus", "subject": subject}}}
	}
	for i, bad := range []string{
		"$SYS.x",
		"$SYS.REQ.SERVER.PING",
		"$JS.API.STREAM.DELETE." + hub.Bus.StreamName(),
		hub.Bus.TelemetrySubject(),
		subjects.Prefix() + ".alerts.globex",
		subjects.OrgSpace("globex") + ".feed",
		subjects.Prefix() + ".dev.globex.press-7.method",
		"factory.alerts.{device}",
	} {
		var e apiErr
		if st := acme.Do(t, "POST", "/api/v1/rules", rule("r"+string(rune('a'+i)), bad), &e); st != 400 {
			t.Errorf("bus subject %q: status %d, want 400", bad, st)
			continue
		}
		if !strings.Contains(e.Error.Message, "outside the organization's subject space") || !strings.Contains(e.Error.Message, space) {
			t.Errorf("bus subject %q: the message does not say where to publish: %q", bad, e.Error.Message)
		}
	}

	var created struct {
		ID string `json:"id"`
	}
	acme.MustDo(t, 201, "POST", "/api/v1/rules", rule("to integrators", subjects.Prefix()+".exports.{org}.alerts.{device}"), &created)
	if st := acme.Do(t, "PUT", "/api/v1/rules/"+created.ID, rule("to integrators", "$SYS.x"), nil); st != 400 {
		t.Errorf("update to $SYS.x: status %d, want 400", st)
	}

	// The subject in the space works end to end.
	sub, err := hub.Bus.Conn().SubscribeSync(space + "alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	dev := acme.CreateDevice(t, "press-7", nil)
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	var got string
	testutil.Eventually(t, 20*time.Second, "the alert on the organization's subject", func() bool {
		testutil.Publish(t, c, dev.ID, map[string]any{"temperature": 91.5})
		m, err := sub.NextMsg(200 * time.Millisecond)
		if err != nil {
			return false
		}
		got = m.Subject
		return true
	})
	if got != space+"alerts.press-7" {
		t.Fatalf("published on %s", got)
	}
}

// Without an allow-list, webhooks and exports never reach internal
// addresses: an internal IP is refused when saved, a name that resolves to
// one is refused on connection, and the tenant's last error names neither
// the resolved address nor the dial (issue 12, item 9).
func TestEgressWall(t *testing.T) {
	var hits atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer recv.Close()
	port := recv.URL[strings.LastIndexByte(recv.URL, ':')+1:]

	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.EgressAllow = "" }})
	acme := hub.API().CreateOrgToken(t, "acme", "admin")
	const refusal = "target address not allowed by the hub's egress policy"
	for i, target := range []struct{ typ, url string }{
		{"webhook", recv.URL + "/ingest"},
		{"webhook", "http://[::ffff:127.0.0.1]:" + port + "/ingest"},
		{"remote_write", "http://169.254.169.254/api/v1/write"},
		{"remote_write", "http://192.168.1.20:9090/api/v1/write"},
	} {
		var e apiErr
		st := acme.Do(t, "POST", "/api/v1/exports", map[string]any{"name": "x" + string(rune('a'+i)), "type": target.typ, "url": target.url}, &e)
		if st != 400 || !strings.Contains(e.Error.Message, refusal) {
			t.Errorf("export to %s: status %d, message %q", target.url, st, e.Error.Message)
		}
	}
	for _, u := range []string{recv.URL + "/hook", "http://169.254.169.254/latest/meta-data/"} {
		var e apiErr
		st := acme.Do(t, "POST", "/api/v1/rules", map[string]any{"name": "hot", "condition": "temperature > 80",
			"actions": []map[string]any{{"type": "webhook", "url": u}}}, &e)
		if st != 400 || !strings.Contains(e.Error.Message, refusal) {
			t.Errorf("rule webhook to %s: status %d, message %q", u, st, e.Error.Message)
		}
	}

	// A name is checked after resolution, on every connection.
	var exp struct {
		ID string `json:"id"`
	}
	acme.MustDo(t, 201, "POST", "/api/v1/exports", map[string]any{"name": "named", "type": "webhook", "url": "http://localhost:" + port + "/ingest"}, &exp)
	dev := acme.CreateDevice(t, "press-7", nil)
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	var last string
	testutil.Eventually(t, 20*time.Second, "the export's last error", func() bool {
		testutil.Publish(t, c, dev.ID, map[string]any{"temperature": 20})
		var st struct {
			LastError string `json:"lastError"`
		}
		acme.MustDo(t, 200, "GET", "/api/v1/exports/"+exp.ID, nil, &st)
		last = st.LastError
		return last != ""
	})
	if !strings.Contains(last, refusal) {
		t.Errorf("last error %q", last)
	}
	for _, leak := range []string{"127.0.0.1", "[::1]", "dial", "connect:"} {
		if strings.Contains(last, leak) {
			t.Errorf("the tenant's last error %q shows %q", last, leak)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
	u, _ := url.Parse(recv.URL)
	raw, _ := json.Marshal(last)
	if strings.Contains(string(raw), u.Hostname()) {
		t.Errorf("last error names the receiver's address: %s", raw)
	}
}
