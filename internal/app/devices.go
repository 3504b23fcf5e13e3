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

// credentialsChanged tells every hub process, over the bus, that a device's
// record changed: each drops its cached record, and the one holding the
// connection re-checks the credential and ends the connection if it was
// revoked. Without the bus only this process is told.
func (h *Hub) credentialsChanged(org, device string) {
	if err := h.twins.router.CredentialsChanged(org, device); err != nil {
		h.log.Warn("other hub processes were not told of a device change; a revoked connection there ends at its token's expiry", "device", device, "error", err)
		if h.Gateway != nil {
			h.Gateway.Revalidate(device)
		}
	}
}
