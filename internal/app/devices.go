package app

import (
	"context"
	"fmt"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// apiRegistry is the registry as the REST API and console see it: deleting
// a device also deletes its twin, pending messages and template violation
// counts, so a device later created with the same id starts clean, and
// drops its live connection.
type apiRegistry struct {
	*registry.Service
	h *Hub
}

func (r apiRegistry) DeleteDevice(ctx context.Context, org, id string) error {
	if err := r.Service.DeleteDevice(ctx, org, id); err != nil {
		return err
	}
	if r.h.twins != nil {
		if err := r.h.twins.svc.Delete(ctx, org, id); err != nil {
			return fmt.Errorf("device %q deleted, but its twin was not: %w", id, err)
		}
	}
	if r.h.tmpl != nil {
		if err := r.h.tmpl.svc.DeleteViolations(ctx, org, id); err != nil {
			return fmt.Errorf("device %q deleted, but its template violations were not: %w", id, err)
		}
	}
	if r.h.Gateway != nil {
		r.h.Gateway.Disconnect(id)
	}
	return nil
}
