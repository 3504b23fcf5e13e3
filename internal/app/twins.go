package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/command"
	"github.com/shopfloor/shopfloor/internal/gateway"
	"github.com/shopfloor/shopfloor/internal/twin"
)

// twinSet is the hub's twins, cloud-to-device queues and the command
// router that carries methods and notifications over the bus.
type twinSet struct {
	svc    *twin.Service
	router *command.Router
}

// openTwins opens the router and the twin tables. Call it after the bus and
// the templates (desired patches and method payloads are checked against
// them) and before the gateway (whose Cloud it provides); attach the
// gateway with h.twins.router.SetDevices once it exists.
func (h *Hub) openTwins(ctx context.Context) error {
	driver := "sqlite"
	if h.cfg.Postgres != "" {
		driver = "pgx"
	}
	router, err := command.New(command.Config{
		Conn:   h.Bus.Conn(),
		Prefix: h.Bus.Subjects().Prefix(),
		Logger: h.log,
		Check:  h.checkCommand,
	})
	if err != nil {
		return fmt.Errorf("start the command router: %w", err)
	}
	svc, err := twin.New(ctx, twin.Config{DB: h.store.DB(), Driver: driver, Notifier: router, Check: h.tmpl.enforce})
	if err != nil {
		return fmt.Errorf("open the twin store: %w", err)
	}
	h.twins = &twinSet{svc: svc, router: router}
	return nil
}

// runTwins dispatches routed traffic and forgets day-old message feedback.
func (h *Hub) runTwins(ctx context.Context, g *errgroup.Group) {
	ts := h.twins
	g.Go(func() error { return ts.router.Run(ctx) })
	g.Go(func() error {
		tick := time.NewTicker(time.Hour)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				if _, err := ts.svc.Forget(ctx, 24*time.Hour); err != nil && ctx.Err() == nil {
					h.log.Warn("cloud-to-device feedback not cleaned up", "error", err)
				}
			}
		}
	})
}

// mapped keeps an error's message while making it match another sentinel.
type mappedErr struct{ err, as error }

func (m mappedErr) Error() string   { return m.err.Error() }
func (m mappedErr) Unwrap() []error { return []error{m.as, m.err} }

func mapTwinErr(err error, pairs ...error) error {
	if err == nil {
		return nil
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		if errors.Is(err, pairs[i]) {
			return mappedErr{err, pairs[i+1]}
		}
	}
	return err
}

// twinCloud is the gateway's view (gateway.Cloud).
type twinCloud struct{ ts *twinSet }

func (c twinCloud) Twin(ctx context.Context, org, device string) ([]byte, error) {
	t, err := c.ts.svc.Get(ctx, org, device)
	if err != nil {
		return nil, err
	}
	return t.DeviceDocument()
}

func (c twinCloud) PatchReported(ctx context.Context, org, device string, patch []byte) (int64, error) {
	v, err := c.ts.svc.PatchReported(ctx, org, device, patch)
	return v, mapTwinErr(err, twin.ErrInvalid, gateway.ErrRequest, twin.ErrTooLarge, gateway.ErrRequestTooLarge)
}

func (c twinCloud) MethodResponse(device, rid string, status int, payload []byte) bool {
	return c.ts.router.MethodResponse(device, rid, status, payload)
}

func (c twinCloud) Connected(org, device string, up bool) {
	if up {
		c.ts.router.Attach(org, device)
	} else {
		c.ts.router.Detach(org, device)
	}
}

func (c twinCloud) PendingC2D(ctx context.Context, org, device string) ([]gateway.C2D, error) {
	ms, err := c.ts.svc.List(ctx, org, device, twin.StatePending)
	if err != nil {
		return nil, err
	}
	out := make([]gateway.C2D, len(ms))
	for i, m := range ms {
		out[i] = gateway.C2D{ID: m.ID, Body: m.Body, Props: m.Properties, Expires: m.Expires}
	}
	return out, nil
}

func (c twinCloud) AttemptC2D(ctx context.Context, org, device, id string) (bool, error) {
	return c.ts.svc.Attempt(ctx, org, device, id)
}

func (c twinCloud) CompleteC2D(ctx context.Context, org, device, id string) error {
	return c.ts.svc.Complete(ctx, org, device, id)
}

// TwinDevices is what rule actions use to reach devices (it satisfies
// actions.Devices): direct methods, desired patches and C2D messages.
type TwinDevices struct {
	ts *twinSet
	h  *Hub
}

// TwinDevices returns the device actions of this hub.
func (h *Hub) TwinDevices() TwinDevices { return TwinDevices{h.twins, h} }

// InvokeMethod calls a direct method.
func (d TwinDevices) InvokeMethod(ctx context.Context, org, device, method string, payload []byte, timeout time.Duration) (int, []byte, error) {
	return d.ts.router.Invoke(ctx, org, device, method, payload, timeout)
}

// PatchDesired merges a desired-properties patch and notifies the device;
// a patch that breaks the device's template is refused.
func (d TwinDevices) PatchDesired(ctx context.Context, org, device string, patch []byte) error {
	_, err := d.ts.svc.Change(ctx, org, device, twin.Patch{Desired: patch}, "")
	return err
}

// SendC2D queues a cloud-to-device message with the default TTL.
func (d TwinDevices) SendC2D(ctx context.Context, org, device string, payload []byte) error {
	_, err := d.ts.svc.Queue(ctx, org, device, payload, nil, 0)
	return err
}
