package template_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/store/storetest"
	"github.com/shopfloor/shopfloor/internal/template"
)

var errNoDevice = errors.New("no such device")

// fakeDevices is a registry of device -> template, recording last errors.
type fakeDevices struct {
	mu   sync.Mutex
	tmpl map[string]string
	errs map[string][]string
}

func (f *fakeDevices) TemplateOf(_ context.Context, org, device string) (string, error) {
	t, ok := f.tmpl[org+"/"+device]
	if !ok {
		return "", fmt.Errorf("device %s: %w", device, errNoDevice)
	}
	return t, nil
}

func (f *fakeDevices) RecordDeviceErrors(_ context.Context, device, msg string, n int, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[device] = append(f.errs[device], fmt.Sprintf("%d×%s", n, msg))
	return nil
}

func TestEnforcer(t *testing.T) {
	for name, open := range storetest.DBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, driver := open(t)
			svc, err := template.New(ctx, template.Config{DB: db, Driver: driver})
			if err != nil {
				t.Fatal(err)
			}
			devs := &fakeDevices{tmpl: map[string]string{"acme/press-1": "press", "acme/plain": ""}, errs: map[string][]string{}}
			e := template.NewEnforcer(svc, devs, slog.New(slog.NewTextHandler(io.Discard, nil)))
			// Without templates in the organization nothing is read or refused.
			if err := e.CheckDesiredOf(ctx, "acme", "press-1", []byte(`{"anything":1}`)); err != nil {
				t.Fatalf("no templates yet: %v", err)
			}
			if _, err := svc.Create(ctx, "acme", pressTemplate()); err != nil {
				t.Fatal(err)
			}
			// Telemetry: two bad messages of one device counted in one write.
			msgs := []template.Message{
				{Org: "acme", Device: "press-1", Template: "press", Num: map[string]float64{"temperature": 500}},
				{Org: "acme", Device: "press-1", Template: "press", Num: map[string]float64{"temperature": 20}},
				{Org: "acme", Device: "press-1", Template: "press", Num: map[string]float64{"temperature": -90}},
				{Org: "acme", Device: "other", Template: "gone", Num: map[string]float64{"x": 1}},
			}
			if err := e.CheckTelemetry(ctx, slices.Values(msgs)); err != nil {
				t.Fatal(err)
			}
			c, err := svc.Violations(ctx, "acme", "press-1")
			if err != nil || c.Telemetry != 2 {
				t.Fatalf("telemetry violations %+v %v, want 2", c, err)
			}
			if got := devs.errs["press-1"]; len(got) != 1 || !strings.HasPrefix(got[0], "2×telemetry") {
				t.Fatalf("last errors %q", got)
			}
			// Desired: a read-only or out-of-range property is refused.
			err = e.CheckDesiredOf(ctx, "acme", "press-1", []byte(`{"firmware":"x","setpoint":500}`))
			if !errors.Is(err, template.ErrInvalid) || !strings.Contains(err.Error(), `"firmware"`) || !strings.Contains(err.Error(), `"setpoint"`) {
				t.Fatalf("bad desired patch: %v", err)
			}
			if err := e.CheckDesiredOf(ctx, "acme", "press-1", []byte(`{"setpoint":80}`)); err != nil {
				t.Fatalf("good desired patch: %v", err)
			}
			if err := e.CheckDesiredOf(ctx, "acme", "plain", []byte(`{"firmware":"x"}`)); err != nil {
				t.Fatalf("a device without a template: %v", err)
			}
			if err := e.CheckDesiredOf(ctx, "acme", "ghost", []byte(`{}`)); !errors.Is(err, errNoDevice) {
				t.Fatalf("unknown device: %v", err)
			}
			// Reported and command violations are counted, not refused.
			if err := e.CheckReported(ctx, "acme", "press-1", []byte(`{"setpoint":"hot"}`)); err != nil {
				t.Fatal(err)
			}
			if err := e.CheckCommand(ctx, "acme", "press-1", "reboot", []byte(`42`)); err != nil {
				t.Fatal(err)
			}
			c, _ = svc.Violations(ctx, "acme", "press-1")
			if c.Reported != 1 || c.Command != 1 {
				t.Fatalf("violations %+v, want 1 reported and 1 command", c)
			}
		})
	}
}
