package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/jobs"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/template"
	"github.com/shopfloor/shopfloor/internal/twin"
)

// templatesConsumer is the durable bus consumer that validates telemetry
// against device templates, apart from ingest so it never slows it.
const templatesConsumer = "templates"

// templateSet is the hub's device templates and jobs.
type templateSet struct {
	svc  *template.Service
	jobs *jobs.Service
}

// openTemplates opens the template and job tables. Call it after
// openTwins (jobs reach devices through the twins) and before the gateway
// (whose Cloud validates reported properties: templateCloud).
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
	h.tmpl = &templateSet{svc: svc, jobs: js}
	return nil
}

// runTemplates validates telemetry from the bus and runs (and resumes) jobs.
func (h *Hub) runTemplates(ctx context.Context, g *errgroup.Group) {
	ts := h.tmpl
	g.Go(func() error { return ts.jobs.Run(ctx) })
	g.Go(func() error {
		err := h.Bus.Consume(ctx, templatesConsumer, bus.ConsumeOptions{FromNow: true}, h.checkTelemetry)
		if ctx.Err() != nil {
			return nil
		}
		return err
	})
}

// checkTelemetry flags messages that break their device's template. The
// messages are stored by ingest all the same; a device's violations in one
// batch are counted with one write.
func (h *Hub) checkTelemetry(ctx context.Context, batch []*bus.Telemetry) error {
	type key struct{ org, device, tmpl string }
	type flagged struct {
		n   int
		msg string
	}
	var bad map[key]*flagged
	for _, m := range batch {
		if m.Template == "" {
			continue
		}
		t, ok, err := h.tmpl.svc.Lookup(ctx, m.Org, m.Template)
		if err != nil {
			return err
		}
		if !ok {
			continue // a template that does not exist (yet) checks nothing
		}
		vs := t.CheckTelemetry(m.Num, m.Str)
		if len(vs) == 0 {
			continue
		}
		if bad == nil {
			bad = map[key]*flagged{}
		}
		k := key{m.Org, m.Device, m.Template}
		f := bad[k]
		if f == nil {
			f = &flagged{}
			bad[k] = f
		}
		f.n++
		f.msg = "telemetry " + template.Summary(m.Template, vs)
	}
	for k, f := range bad {
		if err := h.tmpl.svc.Flag(ctx, k.org, k.device, k.tmpl, "telemetry", f.msg, f.n); err != nil {
			return err
		}
		if err := h.Registry.RecordDeviceErrors(ctx, k.device, f.msg, f.n, time.Time{}); err != nil && !errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("record the template violation of %s: %w", k.device, err)
		}
	}
	return nil
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
	if err := c.h.checkReported(ctx, org, device, patch); err != nil {
		c.h.log.Warn("reported properties not checked against the template", "device", device, "error", err)
	}
	return v, nil
}

// device reads a device of org by its id with the registry's prepared
// lookup (cheaper than GetDevice on the method and twin paths).
func (h *Hub) device(ctx context.Context, org, id string) (registry.Device, error) {
	d, err := h.Registry.LookupDevice(ctx, id)
	if err == nil && d.Org != org {
		err = fmt.Errorf("device %q does not exist in organization %q: %w", id, org, registry.ErrNotFound)
	}
	return d, err
}

// checkDesired refuses a desired-properties patch that breaks the device's
// template, as IoT Central does: only writable properties declared in the
// template may be set, with values of their schema and range. The error
// names each offending property. Devices without a template take any
// patch, as on IoT Hub.
func (h *Hub) checkDesired(ctx context.Context, d registry.Device, patch []byte) error {
	if d.Template == "" {
		return nil
	}
	t, m, ok, err := h.templatePatch(ctx, d.Org, d.Template, patch)
	if !ok {
		return err // no template, or not an object: the twin store refuses that with its own message
	}
	vs := t.CheckDesired(m)
	if len(vs) == 0 {
		return nil
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("property %q %s", v.Name, v.Problem)
	}
	return fmt.Errorf("%w: the desired patch breaks template %s of device %s: %s; set only writable properties the template declares, or change the template",
		registry.ErrInvalid, d.Template, d.ID, strings.Join(parts, "; "))
}

// checkDesiredOf is checkDesired for a device by its id; an organization
// without templates costs no device read.
func (h *Hub) checkDesiredOf(ctx context.Context, org, device string, patch []byte) error {
	if patch == nil || h.tmpl == nil {
		return nil
	}
	if has, err := h.tmpl.svc.HasTemplates(ctx, org); err != nil || !has {
		return err
	}
	d, err := h.device(ctx, org, device)
	if err != nil {
		return err
	}
	return h.checkDesired(ctx, d, patch)
}

// templatePatch looks up a device's template and decodes a twin patch for
// checking against it; ok is false when there is no such template or the
// patch is not a JSON object.
func (h *Hub) templatePatch(ctx context.Context, org, name string, patch []byte) (*template.Template, map[string]any, bool, error) {
	t, ok, err := h.tmpl.svc.Lookup(ctx, org, name)
	if err != nil || !ok {
		return nil, nil, false, err
	}
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, nil, false, nil
	}
	return t, m, true, nil
}

func (h *Hub) checkReported(ctx context.Context, org, device string, patch []byte) error {
	if has, err := h.tmpl.svc.HasTemplates(ctx, org); err != nil || !has {
		return err
	}
	d, err := h.device(ctx, org, device)
	if err != nil || d.Template == "" {
		return err
	}
	t, m, ok, err := h.templatePatch(ctx, org, d.Template, patch)
	if !ok {
		return err
	}
	vs := t.CheckReported(m)
	if len(vs) == 0 {
		return nil
	}
	msg := "reported properties " + template.Summary(d.Template, vs)
	if err := h.tmpl.svc.Flag(ctx, org, device, d.Template, "reported", msg, 1); err != nil {
		return err
	}
	return h.Registry.RecordDeviceError(ctx, device, msg, time.Time{})
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
	d, err := e.h.device(ctx, org, device)
	if err != nil {
		return err
	}
	if err := e.h.checkDesired(ctx, d, patch); err != nil {
		return err
	}
	_, err = e.h.twins.patchDesired(ctx, org, device, twin.Patch{Desired: patch}, "")
	return err
}

func (e jobExec) Method(ctx context.Context, org, device string, m jobs.Method) (int, []byte, error) {
	e.h.checkCommand(ctx, org, device, m.Name, m.Payload)
	return e.h.twins.router.Invoke(ctx, org, device, m.Name, m.Payload, time.Duration(m.TimeoutSeconds)*time.Second)
}

// templatesAPI is the REST API's view (api.Templates).
type templatesAPI struct{ ts *templateSet }

func tmplErr(err error) error {
	return mapTwinErr(err,
		template.ErrInvalid, registry.ErrInvalid,
		template.ErrNotFound, registry.ErrNotFound,
		template.ErrExists, registry.ErrConflict)
}

// reshape copies between the service's and the API's types, which share
// their JSON shape.
func reshape[T any](v any) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		return out, err
	}
	err = json.Unmarshal(b, &out)
	return out, err
}

func (a templatesAPI) CreateTemplate(ctx context.Context, org string, in api.Template) (api.Template, error) {
	t, err := reshape[template.Template](in)
	if err != nil {
		return api.Template{}, err
	}
	t, err = a.ts.svc.Create(ctx, org, t)
	if err != nil {
		return api.Template{}, tmplErr(err)
	}
	return reshape[api.Template](t)
}

func (a templatesAPI) GetTemplate(ctx context.Context, org, id string) (api.Template, error) {
	t, err := a.ts.svc.Get(ctx, org, id)
	if err != nil {
		return api.Template{}, tmplErr(err)
	}
	return reshape[api.Template](t)
}

func (a templatesAPI) ListTemplates(ctx context.Context, org string) ([]api.Template, error) {
	ts, err := a.ts.svc.List(ctx, org)
	if err != nil {
		return nil, tmplErr(err)
	}
	return reshape[[]api.Template](ts)
}

func (a templatesAPI) ReplaceTemplate(ctx context.Context, org string, in api.Template) (api.Template, error) {
	t, err := reshape[template.Template](in)
	if err != nil {
		return api.Template{}, err
	}
	t, err = a.ts.svc.Put(ctx, org, t)
	if err != nil {
		return api.Template{}, tmplErr(err)
	}
	return reshape[api.Template](t)
}

func (a templatesAPI) DeleteTemplate(ctx context.Context, org, id string) error {
	return tmplErr(a.ts.svc.Delete(ctx, org, id))
}

func (a templatesAPI) ExportTemplate(ctx context.Context, org, id string) ([]byte, error) {
	b, err := a.ts.svc.Export(ctx, org, id)
	return b, tmplErr(err)
}

func (a templatesAPI) ImportTemplate(ctx context.Context, org string, doc []byte, replace bool) (api.Template, error) {
	t, err := a.ts.svc.Import(ctx, org, doc, replace)
	if err != nil {
		return api.Template{}, tmplErr(err)
	}
	return reshape[api.Template](t)
}

func (a templatesAPI) TemplateViolations(ctx context.Context, org, device string) (api.TemplateViolations, error) {
	c, err := a.ts.svc.Violations(ctx, org, device)
	if err != nil {
		return api.TemplateViolations{}, tmplErr(err)
	}
	return reshape[api.TemplateViolations](c)
}

// jobsAPI is the REST API's view (api.Jobs).
type jobsAPI struct{ ts *templateSet }

func jobErr(err error) error {
	return mapTwinErr(err,
		jobs.ErrInvalid, registry.ErrInvalid,
		jobs.ErrNotFound, registry.ErrNotFound,
		jobs.ErrFinished, registry.ErrConflict)
}

func (a jobsAPI) CreateJob(ctx context.Context, org string, in api.JobSpec) (api.Job, error) {
	sp, err := reshape[jobs.Spec](in)
	if err != nil {
		return api.Job{}, err
	}
	j, err := a.ts.jobs.Create(ctx, org, sp)
	if err != nil {
		return api.Job{}, jobErr(err)
	}
	return reshape[api.Job](j)
}

func (a jobsAPI) GetJob(ctx context.Context, org, id string) (api.Job, error) {
	j, err := a.ts.jobs.Get(ctx, org, id)
	if err != nil {
		return api.Job{}, jobErr(err)
	}
	return reshape[api.Job](j)
}

func (a jobsAPI) ListJobs(ctx context.Context, org string) ([]api.Job, error) {
	js, err := a.ts.jobs.List(ctx, org)
	if err != nil {
		return nil, jobErr(err)
	}
	return reshape[[]api.Job](js)
}

func (a jobsAPI) JobDevices(ctx context.Context, org, id, state string) ([]api.JobDevice, error) {
	ds, err := a.ts.jobs.Devices(ctx, org, id, state)
	if err != nil {
		return nil, jobErr(err)
	}
	return reshape[[]api.JobDevice](ds)
}

func (a jobsAPI) CancelJob(ctx context.Context, org, id string) (api.Job, error) {
	j, err := a.ts.jobs.Cancel(ctx, org, id)
	if err != nil {
		return api.Job{}, jobErr(err)
	}
	return reshape[api.Job](j)
}

// checkCommand counts a method payload that breaks the device's template;
// the call goes ahead all the same (the device has the last word).
func (h *Hub) checkCommand(ctx context.Context, org, device, method string, payload []byte) {
	err := func() error {
		if has, err := h.tmpl.svc.HasTemplates(ctx, org); err != nil || !has {
			return err
		}
		d, err := h.device(ctx, org, device)
		if err != nil || d.Template == "" {
			return err
		}
		t, ok, err := h.tmpl.svc.Lookup(ctx, org, d.Template)
		if err != nil || !ok {
			return err
		}
		vs := t.CheckCommand(method, payload)
		if len(vs) == 0 {
			return nil
		}
		msg := "command " + template.Summary(d.Template, vs)
		if err := h.tmpl.svc.Flag(ctx, org, device, d.Template, "command", msg, 1); err != nil {
			return err
		}
		return h.Registry.RecordDeviceError(ctx, device, msg, time.Time{})
	}()
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		h.log.Warn("method payload not checked against the template", "device", device, "error", err)
	}
}

// templateTwins is the REST API's twins with method payloads checked
// against the device's template.
type templateTwins struct {
	twinAPI
	h *Hub
}

// PatchTwin refuses desired properties that break the device's template.
func (a templateTwins) PatchTwin(ctx context.Context, org, device string, tags, desired json.RawMessage, ifMatch string) (api.Twin, error) {
	if err := a.h.checkDesiredOf(ctx, org, device, desired); err != nil {
		return api.Twin{}, err
	}
	return a.twinAPI.PatchTwin(ctx, org, device, tags, desired, ifMatch)
}

func (a templateTwins) InvokeMethod(ctx context.Context, org, device, method string, payload []byte, timeout time.Duration) (int, []byte, error) {
	a.h.checkCommand(ctx, org, device, method, payload)
	return a.twinAPI.InvokeMethod(ctx, org, device, method, payload, timeout)
}
