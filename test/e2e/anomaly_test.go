package e2e

import (
	"math"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// The hub scores every device update: after warm-up the score is stored as
// the series anomaly.score beside the signals, and a rule on anomaly()
// raises an alert when a sensor jumps.
func TestAnomalyScoreAndRule(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	dev := a.CreateDevice(t, "pump-3", nil)
	a.MustDo(t, 201, "POST", "/api/v1/rules", map[string]any{
		"name": "pump anomaly", "condition": "anomaly() > 0.9", "severity": "major",
	}, nil)
	if st := a.Do(t, "POST", "/api/v1/rules", map[string]any{"name": "bad", "condition": "anomaly(\"vibration\") >"}, nil); st != 400 {
		t.Fatalf("a broken anomaly condition: %d, want 400", st)
	}
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	base := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	type status struct {
		Seen            bool `json:"seen"`
		Warm            bool `json:"warm"`
		WarmupRemaining int  `json:"warmupRemaining"`
		Contributions   []struct {
			Field string `json:"field"`
		} `json:"contributions"`
	}
	// Normal operation for warm-up: a smooth signal with a little ripple.
	i := 0
	for ; i < 600; i++ {
		if i == 100 {
			// The warm-up shows in the API.
			var st status
			testutil.Eventually(t, 10*time.Second, "the detector has seen the device", func() bool {
				a.MustDo(t, 200, "GET", "/api/v1/devices/pump-3/anomaly", nil, &st)
				return st.Seen
			})
			if st.Warm || st.WarmupRemaining <= 0 {
				t.Fatalf("after %d updates the detector says %+v, want warming up", i, st)
			}
		}
		v := 2.0 + 0.05*math.Sin(float64(i)/7) + 0.01*math.Sin(float64(i)*1.3)
		testutil.Publish(t, c, dev.ID, map[string]any{"ts": base.Add(time.Duration(i) * time.Second).UnixMilli(), "vibration": v})
	}
	testutil.Eventually(t, 15*time.Second, "anomaly score stored", func() bool {
		_, ok := latest(t, a, dev.ID)["anomaly.score"]
		return ok
	})
	// The bearing lets go.
	for j := 0; j < 30; j++ {
		testutil.Publish(t, c, dev.ID, map[string]any{"ts": base.Add(time.Duration(i+j) * time.Second).UnixMilli(), "vibration": 9.0})
	}
	testutil.Eventually(t, 20*time.Second, "an alert from anomaly()", func() bool {
		var page struct {
			Items []struct {
				Device string `json:"device"`
			} `json:"items"`
		}
		a.MustDo(t, 200, "GET", "/api/v1/alerts?device=pump-3", nil, &page)
		return len(page.Items) == 1
	})
	if s, _ := latest(t, a, dev.ID)["anomaly.score"].(float64); s < 0.9 {
		t.Fatalf("latest anomaly score %v after the jump, want > 0.9", s)
	}
	var st status
	a.MustDo(t, 200, "GET", "/api/v1/devices/pump-3/anomaly", nil, &st)
	if !st.Warm || len(st.Contributions) == 0 || st.Contributions[0].Field != "vibration" {
		t.Fatalf("anomaly state after the jump: %+v", st)
	}

	// A dry run replays the scores stored with each update: the jump fires,
	// the calm before it does not.
	dry := func(cond string) (firings int) {
		var res struct {
			Firings int `json:"firings"`
		}
		a.MustDo(t, 200, "POST", "/api/v1/rules/dry-run", map[string]any{
			"rule": map[string]any{"name": "try", "condition": cond, "severity": "minor"},
			"from": base.Add(-time.Minute).Format(time.RFC3339), "to": time.Now().Format(time.RFC3339),
		}, &res)
		return res.Firings
	}
	if n := dry("anomaly() > 0.9"); n != 1 {
		t.Errorf("dry run of anomaly() > 0.9: %d firings, want the jump's one", n)
	}
	if n := dry("anomaly() > 0.9 && vibration < 5"); n != 0 {
		t.Errorf("dry run with the calm readings only: %d firings, want none", n)
	}
}
