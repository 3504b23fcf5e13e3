package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/export"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/rules"
)

// The API sees rules, alerts and exports through its own types (it must not
// import these packages); the shapes are the same JSON, so the adapters
// convert through JSON and map the sentinels onto the registry's, which the
// API already turns into 400, 404 and 409.

// apiError keeps the service's message and matches the registry sentinel.
type apiError struct {
	err  error
	kind error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Is(target error) bool {
	return target == e.kind
}
func (e *apiError) Unwrap() error { return e.err }

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range []struct{ from, to error }{
		{rules.ErrNotFound, registry.ErrNotFound}, {rules.ErrInvalid, registry.ErrInvalid}, {rules.ErrConflict, registry.ErrConflict},
		{alerts.ErrNotFound, registry.ErrNotFound}, {alerts.ErrInvalid, registry.ErrInvalid}, {alerts.ErrConflict, registry.ErrConflict},
		{actions.ErrNotFound, registry.ErrNotFound}, {actions.ErrInvalid, registry.ErrInvalid},
		{export.ErrNotFound, registry.ErrNotFound}, {export.ErrInvalid, registry.ErrInvalid}, {export.ErrConflict, registry.ErrConflict},
	} {
		if errors.Is(err, m.from) {
			return &apiError{err: err, kind: m.to}
		}
	}
	return err
}

// convert re-decodes v as T through JSON.
func convert[T any](v any) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, &apiError{err: fmt.Errorf("%v", err), kind: registry.ErrInvalid}
	}
	return out, nil
}

type alertsAPI struct{ rs *ruleSet }

func (a alertsAPI) out(al alerts.Alert, err error) (api.Alert, error) {
	if err != nil {
		return api.Alert{}, mapErr(err)
	}
	return convert[api.Alert](al)
}

func (a alertsAPI) ListAlerts(ctx context.Context, org string, f api.AlertFilter) (api.AlertList, error) {
	p, err := a.rs.alerts.List(ctx, org, alerts.Filter{State: alerts.State(f.State), Device: f.Device, Rule: f.Rule,
		Severity: alerts.Severity(f.Severity), Limit: f.Limit, After: f.After})
	if err != nil {
		return api.AlertList{}, mapErr(err)
	}
	return convert[api.AlertList](p)
}

func (a alertsAPI) GetAlert(ctx context.Context, org, id string) (api.Alert, error) {
	return a.out(a.rs.alerts.Get(ctx, org, id))
}

func (a alertsAPI) AckAlert(ctx context.Context, org, id, by, note string) (api.Alert, error) {
	return a.out(a.rs.alerts.Ack(ctx, org, id, by, note))
}

func (a alertsAPI) ResolveAlert(ctx context.Context, org, id, by, note string) (api.Alert, error) {
	return a.out(a.rs.alerts.Resolve(ctx, org, id, by, note))
}

func (a alertsAPI) NoteAlert(ctx context.Context, org, id, by, text string) (api.Alert, error) {
	return a.out(a.rs.alerts.AddNote(ctx, org, id, by, text))
}

func (a alertsAPI) AssignAlert(ctx context.Context, org, id, by, assignee string) (api.Alert, error) {
	return a.out(a.rs.alerts.Assign(ctx, org, id, by, assignee))
}

func (a alertsAPI) DeadLetters(ctx context.Context, org string, limit int, after string) (api.DeliveryList, error) {
	p, err := a.rs.dispatch.DeadLetters(ctx, org, limit, after)
	if err != nil {
		return api.DeliveryList{}, mapErr(err)
	}
	return convert[api.DeliveryList](p)
}

func (a alertsAPI) RetryDelivery(ctx context.Context, org, id string) error {
	return mapErr(a.rs.dispatch.Retry(ctx, org, id))
}

type exportsAPI struct{ m *export.Manager }

func (a exportsAPI) out(s export.Status, err error) (api.Export, error) {
	if err != nil {
		return api.Export{}, mapErr(err)
	}
	return convert[api.Export](s)
}

func (a exportsAPI) CreateExport(ctx context.Context, org string, in api.ExportSpec) (api.Export, error) {
	d, err := convert[export.Destination](in)
	if err != nil {
		return api.Export{}, err
	}
	d.Org = org
	d, err = a.m.Create(ctx, d)
	return a.out(export.Status{Destination: d}, err)
}

func (a exportsAPI) ListExports(ctx context.Context, org string) ([]api.Export, error) {
	ss, err := a.m.List(ctx, org)
	if err != nil {
		return nil, mapErr(err)
	}
	return convert[[]api.Export](ss)
}

func (a exportsAPI) GetExport(ctx context.Context, org, id string) (api.Export, error) {
	return a.out(a.m.Get(ctx, org, id))
}

func (a exportsAPI) DeleteExport(ctx context.Context, org, id string) error {
	return mapErr(a.m.Delete(ctx, org, id))
}
