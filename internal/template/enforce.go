package template

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"time"
)

// Consumer is the name of the durable bus consumer the hub feeds
// CheckTelemetry from, apart from ingest so it never slows the writes.
const Consumer = "templates"

// Message is what the enforcer reads of one telemetry message.
type Message struct {
	Org, Device, Template string
	Num                   map[string]float64
	Str                   map[string]string
}

// Devices is what the enforcer needs of the registry.
type Devices interface {
	// TemplateOf returns the template a device of org names ("" for none),
	// or the registry's error when there is no such device in org.
	TemplateOf(ctx context.Context, org, device string) (string, error)
	// RecordDeviceErrors shows a violation as the device's last error.
	RecordDeviceErrors(ctx context.Context, device, msg string, n int, at time.Time) error
}

// Enforcer checks what devices send and what is sent to them against their
// template, as IoT Central does: telemetry and reported properties that
// break it are stored all the same and counted as violations; desired
// properties that break it are refused; command payloads that break it are
// counted and sent all the same (the device has the last word).
type Enforcer struct {
	svc     *Service
	devices Devices
	log     *slog.Logger
}

// NewEnforcer returns an enforcer over svc's templates.
func NewEnforcer(svc *Service, devices Devices, logger *slog.Logger) *Enforcer {
	return &Enforcer{svc: svc, devices: devices, log: logger}
}

// CheckTelemetry flags messages that break their device's template; a
// device's violations in one batch are counted with one write. The hub
// calls it from a durable bus consumer; a redelivered batch may count its
// violations again, never lose one.
func (e *Enforcer) CheckTelemetry(ctx context.Context, batch iter.Seq[Message]) error {
	type key struct{ org, device, tmpl string }
	type flagged struct {
		n   int
		msg string
	}
	var bad map[key]*flagged
	for m := range batch {
		if m.Template == "" {
			continue
		}
		t, ok, err := e.svc.Lookup(ctx, m.Org, m.Template)
		if err != nil {
			return err
		}
		if !ok {
			continue // a template deleted after its devices were created checks nothing
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
		f.msg = "telemetry " + Summary(m.Template, vs)
	}
	for k, f := range bad {
		if err := e.flag(ctx, k.org, k.device, k.tmpl, "telemetry", f.msg, f.n); err != nil {
			return err
		}
	}
	return nil
}

// flag counts a violation and shows it as the device's last error. A
// device deleted meanwhile has no last error to show.
func (e *Enforcer) flag(ctx context.Context, org, device, tmpl, kind, msg string, n int) error {
	if err := e.svc.Flag(ctx, org, device, tmpl, kind, msg, n); err != nil {
		return err
	}
	if err := e.devices.RecordDeviceErrors(ctx, device, msg, n, time.Time{}); err != nil {
		e.log.Debug("template violation not recorded as the device's last error", "device", device, "error", err)
	}
	return nil
}

// CheckDesired refuses (ErrInvalid) a desired-properties patch that breaks
// template tmpl of org: only writable properties it declares may be set,
// with values of their schema and range; the error names each offending
// property. No template (""), or one that does not exist, takes any patch,
// as on IoT Hub.
func (e *Enforcer) CheckDesired(ctx context.Context, org, device, tmpl string, patch []byte) error {
	if tmpl == "" || patch == nil {
		return nil
	}
	t, m, ok, err := e.templatePatch(ctx, org, tmpl, patch)
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
		ErrInvalid, tmpl, device, strings.Join(parts, "; "))
}

// CheckDesiredOf is CheckDesired for a device by its id; an organization
// without templates costs no device read.
func (e *Enforcer) CheckDesiredOf(ctx context.Context, org, device string, patch []byte) error {
	if patch == nil {
		return nil
	}
	tmpl, err := e.templateOf(ctx, org, device)
	if err != nil || tmpl == "" {
		return err
	}
	return e.CheckDesired(ctx, org, device, tmpl, patch)
}

// CheckReported counts reported properties that break the device's
// template (they are stored all the same).
func (e *Enforcer) CheckReported(ctx context.Context, org, device string, patch []byte) error {
	tmpl, err := e.templateOf(ctx, org, device)
	if err != nil || tmpl == "" {
		return err
	}
	t, m, ok, err := e.templatePatch(ctx, org, tmpl, patch)
	if !ok {
		return err
	}
	vs := t.CheckReported(m)
	if len(vs) == 0 {
		return nil
	}
	return e.flag(ctx, org, device, tmpl, "reported", "reported properties "+Summary(tmpl, vs), 1)
}

// CheckCommand counts a method payload that breaks the device's template;
// the caller sends it all the same.
func (e *Enforcer) CheckCommand(ctx context.Context, org, device, method string, payload []byte) error {
	tmpl, err := e.templateOf(ctx, org, device)
	if err != nil || tmpl == "" {
		return err
	}
	t, ok, err := e.svc.Lookup(ctx, org, tmpl)
	if err != nil || !ok {
		return err
	}
	vs := t.CheckCommand(method, payload)
	if len(vs) == 0 {
		return nil
	}
	return e.flag(ctx, org, device, tmpl, "command", "command "+Summary(tmpl, vs), 1)
}

// templateOf is the device's template, read only when org has templates.
func (e *Enforcer) templateOf(ctx context.Context, org, device string) (string, error) {
	if has, err := e.svc.HasTemplates(ctx, org); err != nil || !has {
		return "", err
	}
	return e.devices.TemplateOf(ctx, org, device)
}

// templatePatch looks up a template and decodes a twin patch for checking
// against it; ok is false when there is no such template or the patch is
// not a JSON object.
func (e *Enforcer) templatePatch(ctx context.Context, org, name string, patch []byte) (*Template, map[string]any, bool, error) {
	t, ok, err := e.svc.Lookup(ctx, org, name)
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
