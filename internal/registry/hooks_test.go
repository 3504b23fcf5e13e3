package registry_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Every change to a device record is announced after it is stored, so the
// hub can end connections whose credential no longer holds.
func TestOnDeviceChanged(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		var (
			mu  sync.Mutex
			got []string
		)
		e.OnDeviceChanged(func(org, device string) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, org+"/"+device)
		})
		ctx := t.Context()
		_, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "press-1"})
		must(t, err)
		_, err = e.RegenerateKey(ctx, "acme", "press-1", "primary")
		must(t, err)
		off := true
		_, err = e.UpdateDevice(ctx, "acme", "press-1", registry.DevicePatch{Disabled: &off})
		must(t, err)
		must(t, e.DeleteDevice(ctx, "acme", "press-1"))
		// Refused changes announce nothing.
		if _, err := e.RegenerateKey(ctx, "acme", "press-1", "primary"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("regenerate on a deleted device: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"acme/press-1", "acme/press-1", "acme/press-1"}; !slices.Equal(got, want) {
			t.Fatalf("announced %v, want %v", got, want)
		}
	})
}

// With a template checker set, a device, an update, an enrollment group
// and an imported row may name only an existing template.
func TestTemplatesMustExist(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		calls := 0
		e.CheckTemplatesWith(func(_ context.Context, org, name string) (bool, error) {
			calls++
			return org == "acme" && name == "press", nil
		})
		ctx := t.Context()
		if _, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "p1", Template: "pres"}); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), `template "pres" does not exist`) {
			t.Fatalf("missing template: %v", err)
		}
		if _, err := e.CreateDevice(ctx, "globex", registry.Device{ID: "g1", Template: "press"}); !errors.Is(err, registry.ErrInvalid) {
			t.Fatalf("another organization's template: %v", err)
		}
		_, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "p1", Template: "press"})
		must(t, err)
		_, err = e.CreateDevice(ctx, "acme", registry.Device{ID: "p2"})
		must(t, err)
		bad := "pres"
		if _, err := e.UpdateDevice(ctx, "acme", "p1", registry.DevicePatch{Template: &bad}); !errors.Is(err, registry.ErrInvalid) {
			t.Fatalf("update to a missing template: %v", err)
		}
		none := ""
		_, err = e.UpdateDevice(ctx, "acme", "p1", registry.DevicePatch{Template: &none})
		must(t, err)
		if _, err := e.CreateEnrollmentGroup(ctx, "acme", registry.EnrollmentGroup{ID: "eg-1", Template: "pres"}); !errors.Is(err, registry.ErrInvalid) {
			t.Fatalf("enrollment group with a missing template: %v", err)
		}
		calls = 0
		rep, err := e.ImportCSV(ctx, "acme", strings.NewReader("id,template\nr1,press\nr2,pres\nr3,press\nr4,pres\n"), nil)
		must(t, err)
		if rep.Created != 2 || rep.Failed != 2 || !strings.Contains(rep.Rows[1].Error, `template "pres" does not exist`) {
			t.Fatalf("import report %+v", rep)
		}
		if calls != 2 {
			t.Fatalf("the import asked about templates %d times for 2 distinct names", calls)
		}
		// A failing lookup is no verdict on the row: the import stops.
		e.CheckTemplatesWith(func(context.Context, string, string) (bool, error) { return false, errors.New("database gone") })
		if _, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "p3", Template: "press"}); err == nil || errors.Is(err, registry.ErrInvalid) {
			t.Fatalf("lookup failure: %v", err)
		}
	})
}
