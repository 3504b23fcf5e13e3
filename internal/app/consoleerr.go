package app

import (
	"errors"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/export"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/rules"
)

// The console (internal/web) still renders the registry's sentinels only:
// mapErr makes the rules, alerts, actions and export sentinels match them.
// The REST API maps every domain's sentinels itself (api/errors.go).

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
