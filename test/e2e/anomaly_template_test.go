package e2e

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// A template's anomaly setting chooses the model, its fields and its
// warm-up for the devices on it; a bad setting is refused with a reason and
// changes nothing; a changed setting is applied to devices already running.
func TestTemplateAnomalySetting(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	tmpl := func(anomaly map[string]any) map[string]any {
		return map[string]any{
			"id": "pump", "name": "Centrifugal pump",
			"telemetry": []any{
				map[string]any{"name": "vibration", "schema": "double"},
				map[string]any{"name": "current", "schema": "double"},
				map[string]any{"name": "state", "schema": "string"},
			},
			"anomaly": anomaly,
		}
	}
	for _, bad := range []map[string]any{
		{"kind": "forest"},
		{"fields": []any{"pressure"}},
		{"fields": []any{"state"}},
		{"sensitivity": 1.5},
		{"warmup": 3},
	} {
		if st := a.Do(t, "POST", "/api/v1/templates", tmpl(bad), nil); st != 400 {
			t.Fatalf("anomaly setting %v: status %d, want 400", bad, st)
		}
	}
	if st := a.Do(t, "GET", "/api/v1/templates/pump", nil, nil); st != 404 {
		t.Fatalf("a refused template exists afterwards: %d", st)
	}
	a.MustDo(t, 201, "POST", "/api/v1/templates", tmpl(map[string]any{"fields": []any{"vibration", "current"}, "kind": "pca", "warmup": 40}), nil)
	dev := a.CreateDevice(t, "pump-7", map[string]any{"template": "pump"})
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})

	type status struct {
		Seen            bool     `json:"seen"`
		Kind            string   `json:"kind"`
		Fields          []string `json:"fields"`
		Warm            bool     `json:"warm"`
		WarmupRemaining int      `json:"warmupRemaining"`
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	i := 0
	publish := func(n int) {
		for end := i + n; i < end; i++ {
			testutil.Publish(t, c, dev.ID, map[string]any{
				"ts":        base.Add(time.Duration(i) * time.Second).UnixMilli(),
				"vibration": 2 + 0.05*math.Sin(float64(i)/7),
				"current":   11 + 0.2*math.Cos(float64(i)/5),
				"state":     "running",
			})
		}
	}
	publish(10)
	var st status
	testutil.Eventually(t, 10*time.Second, "the template's model is used", func() bool {
		a.MustDo(t, 200, "GET", "/api/v1/devices/pump-7/anomaly", nil, &st)
		return st.Seen && st.Kind == "pca"
	})
	if !slices.Equal(st.Fields, []string{"vibration", "current"}) || st.Warm || st.WarmupRemaining <= 0 || st.WarmupRemaining > 40 {
		t.Fatalf("after 10 updates with a 40-update warm-up: %+v", st)
	}
	publish(40)
	testutil.Eventually(t, 10*time.Second, "warm after the template's warm-up", func() bool {
		a.MustDo(t, 200, "GET", "/api/v1/devices/pump-7/anomaly", nil, &st)
		return st.Warm
	})

	// Switch the template to per-field models of vibration only: the running
	// device relearns (the template cache holds a setting up to 10 s).
	a.MustDo(t, 200, "PUT", "/api/v1/templates/pump", tmpl(map[string]any{"fields": []any{"vibration"}, "kind": "univariate", "warmup": 400}), nil)
	testutil.Eventually(t, 30*time.Second, "the new setting reaches the device", func() bool {
		publish(1)
		a.MustDo(t, 200, "GET", "/api/v1/devices/pump-7/anomaly", nil, &st)
		return st.Kind == "univariate"
	})
	if !slices.Equal(st.Fields, []string{"vibration"}) || st.Warm {
		t.Fatalf("after the change: %+v, want vibration alone, learning again", st)
	}
	a.MustDo(t, 200, "PUT", "/api/v1/templates/pump", tmpl(map[string]any{"kind": "rcf", "warmup": 40}), nil)
	testutil.Eventually(t, 30*time.Second, "the forest reaches the device", func() bool {
		publish(1)
		a.MustDo(t, 200, "GET", "/api/v1/devices/pump-7/anomaly", nil, &st)
		return st.Kind == "rcf"
	})
	if !slices.Equal(st.Fields, []string{"current", "vibration"}) {
		t.Fatalf("a forest over every numeric field: %+v", st)
	}
}
