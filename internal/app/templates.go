package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/jobs"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/template"
	"github.com/shopfloor/shopfloor/internal/twin"
)

// templateSet is the hub's device templates, their enforcer and jobs.
type templateSet struct {
	svc     *template.Service
	enforce *template.Enforcer
	jobs    *jobs.Service
}

// openTemplates opens the template and job tables. Call it after
// openTwins (jobs reach devices through the twins) and before the gateway
// (whose Cloud checks reported properties: templateCloud).
func (h *Hub) openTemplates(ctx context.Context) error {
	driver := "sqlite"
	if h.cfg.Postgres != "" {
		driver = "pgx"
	}
	svc, err := template.New(ctx, template.Config{DB: h.store.DB(), Driver: driver})
	if err != nil {
		return fmt.Errorf("open the template store: %w", err)
	}
	js, err := jobs.New(ctx, jobs.Config{DB: h.store.DB(), Driver: driver, Exec: jobExec{h}, Logger: h.log.With("module", "jobs")})
	if err != nil {
		return fmt.Errorf("open the job store: %w", err)
	}
	h.tmpl = &templateSet{svc: svc, jobs: js,
		enforce: template.NewEnforcer(svc, deviceTemplates{h.Registry}, h.log.With("module", "templates"))}
	return nil
}

// runTemplates feeds the enforcer telemetry from its bus consumer and runs
// (and resumes) jobs.
func (h *Hub) runTemplates(ctx context.Context, g *errgroup.Group) {
	ts := h.tmpl
	g.Go(func() error { return ts.jobs.Run(ctx) })
	g.Go(func() error {
		err := h.Bus.Consume(ctx, template.Consumer, bus.ConsumeOptions{FromNow: true}, func(ctx context.Context, batch []*bus.Telemetry) error {
			return ts.enforce.CheckTelemetry(ctx, func(yield func(template.Message) bool) {
				for _, m := range batch {
					if !yield(template.Message{Org: m.Org, Device: m.Device, Template: m.Template, Num: m.Num, Str: m.Str}) {
						return
					}
				}
			})
		})
		if ctx.Err() != nil {
			return nil
		}
		return err
	})
}

// deviceTemplates is the registry as the enforcer sees it.
type deviceTemplates struct{ *registry.Service }

func (r deviceTemplates) TemplateOf(ctx context.Context, org, id string) (string, error) {
	d, err := r.LookupDevice(ctx, id)
	if err == nil && d.Org != org {
		err = fmt.Errorf("device %q does not exist in organization %q: %w", id, org, registry.ErrNotFound)
	}
	return d.Template, err
}

// templateCloud is the gateway's Cloud with reported properties checked
// against the device's template after they are stored.
type templateCloud struct {
	twinCloud
	h *Hub
}

func (c templateCloud) PatchReported(ctx context.Context, org, device string, patch []byte) (int64, error) {
	v, err := c.twinCloud.PatchReported(ctx, org, device, patch)
	if err != nil {
		return v, err
	}
	if err := c.h.tmpl.enforce.CheckReported(ctx, org, device, patch); err != nil {
		c.h.log.Warn("reported properties not checked against the template", "device", device, "error", err)
	}
	return v, nil
}

// checkCommand counts a method payload that breaks the device's template;
// the call goes ahead all the same (the device has the last word).
func (h *Hub) checkCommand(ctx context.Context, org, device, method string, payload []byte) {
	if err := h.tmpl.enforce.CheckCommand(ctx, org, device, method, payload); err != nil && !errors.Is(err, registry.ErrNotFound) {
		h.log.Warn("method payload not checked against the template", "device", device, "error", err)
	}
}

// jobExec reaches devices for jobs: the registry selects them, the twins
// patch them and the command router invokes their methods.
type jobExec struct{ h *Hub }

func (e jobExec) Devices(ctx context.Context, org string, q jobs.Query) ([]string, error) {
	var out []string
	f := registry.DeviceFilter{Site: q.Site, Template: q.Template, Tag: q.Tags, Limit: registry.MaxPageSize}
	for {
		items, next, err := e.h.Registry.ListDevices(ctx, org, f)
		if err != nil {
			return nil, err
		}
		for _, d := range items {
			out = append(out, d.ID)
		}
		if next == "" || len(out) > jobs.MaxDevices {
			return out, nil
		}
		f.After = next
	}
}

func (e jobExec) Desired(ctx context.Context, org, device string, patch json.RawMessage) error {
	// A device deleted since the job started must not get an orphan twin.
	tmpl, err := deviceTemplates{e.h.Registry}.TemplateOf(ctx, org, device)
	if err != nil {
		return err
	}
	if err := e.h.tmpl.enforce.CheckDesired(ctx, org, device, tmpl, patch); err != nil {
		return err
	}
	_, err = e.h.twins.svc.Change(ctx, org, device, twin.Patch{Desired: patch}, "")
	return err
}

func (e jobExec) Method(ctx context.Context, org, device string, m jobs.Method) (int, []byte, error) {
	return e.h.twins.router.Invoke(ctx, org, device, m.Name, m.Payload, time.Duration(m.TimeoutSeconds)*time.Second)
}

// tmplErr maps template errors onto the registry's sentinels, which the
// console renders.
func tmplErr(err error) error {
	return mapTwinErr(err,
		template.ErrInvalid, registry.ErrInvalid,
		template.ErrNotFound, registry.ErrNotFound,
		template.ErrExists, registry.ErrConflict)
}

// templateExists tells the registry whether org has a device template, so
// a device or enrollment group cannot name one that does not exist. It
// reads the database, not the telemetry checker's cache: a template created
// a moment ago on another hub process counts.
func (h *Hub) templateExists(ctx context.Context, org, name string) (bool, error) {
	_, err := h.tmpl.svc.Get(ctx, org, name)
	switch {
	case errors.Is(err, template.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}
