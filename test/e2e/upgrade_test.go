package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// fixtureBase is the first sample time in testdata/data-eeb9544, a data
// directory written by the release before this one (commit eeb9544): a
// site, a template, a device with a desired twin patch, a rule, and 100
// telemetry messages one second apart, stopped with SIGTERM.
const fixtureBase = 1796640000000

// A hub opens a data directory the previous release wrote and migrates it:
// registry, templates, rules, twins and telemetry are all there, and the
// bus consumers it made (acknowledging with AckAll) are replaced without
// losing or repeating anything, so new telemetry is stored as before.
func TestOpensPreviousReleaseData(t *testing.T) {
	data := t.TempDir()
	if err := os.CopyFS(data, os.DirFS(filepath.Join("testdata", "data-eeb9544"))); err != nil {
		t.Fatal(err)
	}
	hub := testutil.StartHub(t, testutil.Options{Data: data, Token: "sft_fixture-admin-token-000000000000000",
		Mutate: func(c *config.Config) { c.Retention = 100 * 365 * 24 * time.Hour }})
	a := hub.API()
	var dev struct {
		Site, Template string
		Tags           map[string]string
	}
	a.MustDo(t, 200, "GET", "/api/v1/devices/press-1", nil, &dev)
	if dev.Site != "plant-1" || dev.Template != "press" || dev.Tags["line"] != "A" {
		t.Fatalf("device after the upgrade: %+v", dev)
	}
	a.MustDo(t, 200, "GET", "/api/v1/templates/press", nil, nil)
	var rules struct {
		Items []struct{ Name, Condition string }
	}
	a.MustDo(t, 200, "GET", "/api/v1/rules", nil, &rules)
	if len(rules.Items) != 1 || rules.Items[0].Condition != "temperature > 100" {
		t.Fatalf("rules after the upgrade: %+v", rules)
	}
	var tw struct {
		Properties struct{ Desired map[string]any }
	}
	a.MustDo(t, 200, "GET", "/api/v1/devices/press-1/twin", nil, &tw)
	if tw.Properties.Desired["setpoint"] != 70.0 {
		t.Fatalf("twin after the upgrade: %+v", tw)
	}
	from, to := time.UnixMilli(fixtureBase), time.UnixMilli(fixtureBase+200_000)
	pts := rawPoints(t, a, "press-1", "temperature", from, to)
	if len(pts) != 100 {
		t.Fatalf("%d of 100 stored samples after the upgrade", len(pts))
	}
	// The upgraded consumers store new telemetry, once.
	d := testutil.Device{ID: "press-1", PrimaryKey: fixtureKey}
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	ts := time.Now().Add(-time.Minute).UnixMilli()
	if tok := c.Publish("devices/press-1/messages/events/", 1, false, `{"ts":`+strconv.FormatInt(ts, 10)+`,"temperature":42}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish after the upgrade: %v", tok.Error())
	}
	testutil.Eventually(t, 20*time.Second, "new telemetry stored", func() bool {
		return len(rawPoints(t, a, "press-1", "temperature", time.UnixMilli(ts-1), time.UnixMilli(ts+1))) == 1
	})
	if n := len(rawPoints(t, a, "press-1", "temperature", from, to)); n != 100 {
		t.Fatalf("%d samples in the old range after the upgrade, want 100 (replayed twice?)", n)
	}
}

// fixtureKey is press-1's primary key in the fixture.
const fixtureKey = "FJ5oZL0ZHlr8CXegCM9QvP+WsKxPUmvlmENcWwLTW3o="
