package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/export"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// openExports builds the export manager on the registry database.
func (h *Hub) openExports(ctx context.Context) error {
	m, err := export.New(ctx, export.Config{
		DB: h.store.DB(), Driver: h.driverName(), Bus: busConsumer{h.Bus},
		NATS: h.Bus.Conn(), SubjectPrefix: h.Bus.Subjects().Prefix(), Dir: filepath.Join(h.cfg.Data, "exports"),
		Directory: exportDirectory{h.Registry}, Egress: h.egress, Logger: h.log, Registerer: h.metrics,
	})
	if err != nil {
		return fmt.Errorf("continuous export: %w", err)
	}
	h.exports = m
	return nil
}

func (h *Hub) runExports(ctx context.Context, g *errgroup.Group) {
	if h.exports != nil {
		g.Go(func() error { return h.exports.Run(ctx) })
	}
}

// busConsumer gives the export manager durable consumers on the bus.
type busConsumer struct{ b *bus.Bus }

func (c busConsumer) durable(name string) string {
	return strings.TrimSuffix(c.b.StreamName(), "_TELEMETRY") + "_" + name
}

func (c busConsumer) Consume(ctx context.Context, name string, h bus.Handler) error {
	return c.b.Consume(ctx, name, bus.ConsumeOptions{FromNow: true}, h)
}

func (c busConsumer) Pending(ctx context.Context, name string) (uint64, error) {
	cons, err := c.b.JetStream().Consumer(ctx, c.b.StreamName(), c.durable(name))
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

func (c busConsumer) Delete(ctx context.Context, name string) error {
	err := c.b.JetStream().DeleteConsumer(ctx, c.b.StreamName(), c.durable(name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}

// exportDirectory gives exports a device's site, template and tags.
type exportDirectory struct{ reg *registry.Service }

func (d exportDirectory) DeviceInfo(ctx context.Context, org, device string) (export.DeviceInfo, error) {
	dev, err := d.reg.GetDevice(ctx, org, device)
	if err != nil {
		return export.DeviceInfo{}, err
	}
	return export.DeviceInfo{Site: dev.Site, Template: dev.Template, Tags: dev.Tags}, nil
}
