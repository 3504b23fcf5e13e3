package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

type alertView struct {
	ID       string `json:"id"`
	Rule     string `json:"rule"`
	Device   string `json:"device"`
	Severity string `json:"severity"`
	State    string `json:"state"`
	Count    int64  `json:"count"`
}

// A rule created over the API raises an alert from real MQTT telemetry,
// which is acknowledged and resolved over the API, and its webhook arrives
// signed with the rule's secret.
func TestRuleAlertWebhookEndToEnd(t *testing.T) {
	const secret = "webhook-secret"
	var (
		mu     sync.Mutex
		bodies [][]byte
		sigs   []string
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		sigs = append(sigs, r.Header.Get("X-Shopfloor-Signature"))
		mu.Unlock()
	}))
	defer recv.Close()

	hub := testutil.StartHub(t, testutil.Options{})
	acme := hub.API().CreateOrgToken(t, "acme", "operator")
	viewer := hub.API().CreateOrgToken(t, "acme", "viewer")
	globex := hub.API().CreateOrgToken(t, "globex", "admin")
	acme.MustDo(t, 201, "POST", "/api/v1/sites", map[string]any{"id": "plant-north", "name": "Plant North"}, nil)
	dev := acme.CreateDevice(t, "press-7", map[string]any{"site": "plant-north"})

	// A condition that does not compile is refused with its position.
	var errBody struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if st := acme.Do(t, "POST", "/api/v1/rules", map[string]any{"name": "bad", "condition": "temperature >> 80"}, &errBody); st != 400 {
		t.Fatalf("bad condition: status %d", st)
	}
	if !strings.Contains(errBody.Error.Message, "line 1, column") {
		t.Fatalf("compile error does not name the position: %q", errBody.Error.Message)
	}

	rule := map[string]any{
		"name": "press overheating", "condition": "temperature > 80", "severity": "major",
		"scope":   map[string]any{"site": "plant-north"},
		"actions": []map[string]any{{"type": "webhook", "url": recv.URL + "/hook", "secret": secret}},
	}
	if st := viewer.Do(t, "POST", "/api/v1/rules", rule, nil); st != 403 {
		t.Fatalf("viewer created a rule: status %d", st)
	}
	var created struct {
		ID      string `json:"id"`
		Actions []struct {
			Secret string `json:"secret"`
		} `json:"actions"`
	}
	acme.MustDo(t, 201, "POST", "/api/v1/rules", rule, &created)
	if len(created.Actions) != 1 || created.Actions[0].Secret == secret {
		t.Fatalf("the secret is not redacted: %+v", created.Actions)
	}
	if st := globex.Do(t, "GET", "/api/v1/rules/"+created.ID, nil, nil); st != 404 {
		t.Fatalf("another org reads the rule: %d", st)
	}

	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	var alert alertView
	testutil.Eventually(t, 20*time.Second, "the alert", func() bool {
		testutil.Publish(t, c, dev.ID, map[string]any{"temperature": 91.5})
		var page struct {
			Items []alertView `json:"items"`
		}
		viewer.MustDo(t, 200, "GET", "/api/v1/alerts?state=open&device=press-7", nil, &page)
		if len(page.Items) == 0 {
			return false
		}
		alert = page.Items[0]
		return true
	})
	if alert.Rule != created.ID || alert.Severity != "major" || alert.Device != "press-7" || alert.Count < 1 {
		t.Fatalf("alert: %+v", alert)
	}
	if st := globex.Do(t, "GET", "/api/v1/alerts/"+alert.ID, nil, nil); st != 404 {
		t.Fatalf("another org reads the alert: %d", st)
	}
	if st := globex.Do(t, "POST", "/api/v1/alerts/"+alert.ID+"/ack", nil, nil); st != 404 {
		t.Fatalf("another org acks the alert: %d", st)
	}
	if st := viewer.Do(t, "POST", "/api/v1/alerts/"+alert.ID+"/ack", nil, nil); st != 403 {
		t.Fatalf("viewer acks: %d", st)
	}

	// The webhook arrives signed.
	testutil.Eventually(t, 20*time.Second, "the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(bodies) > 0
	})
	mu.Lock()
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(bodies[0])
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if sigs[0] != want {
		t.Fatalf("signature %q, want %q", sigs[0], want)
	}
	var ev struct {
		Event string    `json:"event"`
		Alert alertView `json:"alert"`
	}
	if err := json.Unmarshal(bodies[0], &ev); err != nil || ev.Event != "opened" || ev.Alert.ID != alert.ID {
		t.Fatalf("webhook body %s (%v)", bodies[0], err)
	}
	mu.Unlock()

	var acked alertView
	acme.MustDo(t, 200, "POST", "/api/v1/alerts/"+alert.ID+"/ack", map[string]string{"note": "pump restarted"}, &acked)
	if acked.State != "acknowledged" {
		t.Fatalf("after ack: %+v", acked)
	}
	acme.MustDo(t, 200, "POST", "/api/v1/alerts/"+alert.ID+"/notes", map[string]string{"text": "checked oil"}, nil)
	var detail struct {
		alertView
		Notes []struct{ Text string } `json:"notes"`
	}
	viewer.MustDo(t, 200, "GET", "/api/v1/alerts/"+alert.ID, nil, &detail)
	if len(detail.Notes) < 1 {
		t.Fatalf("notes: %+v", detail.Notes)
	}
	var resolved alertView
	acme.MustDo(t, 200, "POST", "/api/v1/alerts/"+alert.ID+"/resolve", nil, &resolved)
	if resolved.State != "resolved" {
		t.Fatalf("after resolve: %+v", resolved)
	}
	var rp struct {
		Items []alertView `json:"items"`
	}
	viewer.MustDo(t, 200, "GET", "/api/v1/alerts?state=resolved", nil, &rp)
	if len(rp.Items) != 1 || rp.Items[0].ID != alert.ID {
		t.Fatalf("resolved list: %+v", rp.Items)
	}

	// Dry run over the stored history finds the hot readings.
	var dry struct {
		Firings int `json:"firings"`
		Devices int `json:"devices"`
	}
	viewer.MustDo(t, 200, "POST", "/api/v1/rules/"+created.ID+"/dry-run", map[string]any{}, &dry)
	if dry.Firings < 1 || dry.Devices != 1 {
		t.Fatalf("dry run: %+v", dry)
	}
	// Disable and delete.
	acme.MustDo(t, 200, "POST", "/api/v1/rules/"+created.ID+"/disable", nil, nil)
	acme.MustDo(t, 204, "DELETE", "/api/v1/rules/"+created.ID, nil, nil)
}

// A rule's device action reaches the device: here a cloud-to-device message
// queued for the alerting device.
func TestRuleDeviceActionQueuesC2D(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	dev := a.CreateDevice(t, "chiller-2", nil)
	a.MustDo(t, 201, "POST", "/api/v1/rules", map[string]any{
		"name": "chiller too warm", "condition": "outlet_temp > 12", "severity": "minor",
		"actions": []map[string]any{{"type": "device", "op": "c2d", "payload": map[string]any{"command": "boost"}}},
	}, nil)
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	// The rules engine picks up new rules within seconds; keep sending.
	var msgs []map[string]any
	testutil.Eventually(t, 30*time.Second, "a C2D message queued by the rule", func() bool {
		testutil.Publish(t, c, dev.ID, map[string]any{"outlet_temp": 14.5})
		var raw any
		a.MustDo(t, 200, "GET", "/api/v1/devices/chiller-2/messages", nil, &raw)
		msgs = nil
		switch v := raw.(type) {
		case []any:
			for _, x := range v {
				msgs = append(msgs, x.(map[string]any))
			}
		case map[string]any:
			if items, ok := v["items"].([]any); ok {
				for _, x := range items {
					msgs = append(msgs, x.(map[string]any))
				}
			}
		}
		return len(msgs) > 0
	})
	if len(msgs) != 1 {
		t.Fatalf("the rule queued %d messages, want 1 (one alert, one action): %v", len(msgs), msgs)
	}
}
