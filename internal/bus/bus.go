package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors.
var (
	ErrClosed  = errors.New("bus closed")
	ErrConnect = errors.New("cannot reach the message bus")
	ErrDecode  = errors.New("undecodable bus message")
)

// Config selects an embedded or an external NATS.
type Config struct {
	// URL of an external NATS server or cluster; empty runs one embedded.
	URL string
	// Dir holds the embedded server's JetStream files.
	Dir string
	// Prefix namespaces stream, consumer and subject names so that several
	// hubs (or tests) can share one external NATS. Default "SHOPFLOOR".
	Prefix string
	// MaxAge bounds how long telemetry is kept in the stream. Default 7 days.
	MaxAge time.Duration
	// MaxBytes bounds the stream size; the oldest messages go first. Default 10 GiB.
	MaxBytes int64
	// Replicas for the stream on an external cluster. Default 1.
	Replicas int
	// Fsync makes the embedded server flush every write to disk before it
	// acknowledges it, so acknowledged telemetry also survives a power cut.
	// Without it JetStream flushes every two minutes: acknowledged telemetry
	// survives a crash of the process. An external server has its own
	// setting (sync_interval: always).
	Fsync bool
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 10 << 30
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
}

// Bus is a connection to JetStream with the telemetry stream set up.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	ns     *server.Server // nil when external
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	pub    *publisher
}

// StreamName is the telemetry stream's name.
func (b *Bus) StreamName() string { return b.cfg.Prefix + "_TELEMETRY" }

// TelemetrySubject is where telemetry batches are published.
func (b *Bus) TelemetrySubject() string { return b.Subjects().Telemetry() }

// Conn is the underlying NATS connection, for request/reply subjects.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream returns the JetStream context.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// New starts (or connects to) NATS and creates the telemetry stream.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Bus, error) {
	cfg.defaults()
	b := &Bus{cfg: cfg, log: logger}
	if cfg.URL == "" {
		if err := b.startEmbedded(); err != nil {
			return nil, err
		}
	} else {
		nc, err := nats.Connect(cfg.URL, nats.Name("shopfloor"), nats.MaxReconnects(-1),
			nats.ReconnectWait(250*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w: %v", cfg.URL, ErrConnect, err)
		}
		b.nc = nc
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        b.StreamName(),
		Description: "Shopfloor device telemetry, batched by the gateway",
		Subjects:    []string{b.TelemetrySubject()},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		Replicas:    cfg.Replicas,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("create stream %s: %w", b.StreamName(), err)
	}
	b.stream = st
	b.pub = newPublisher(b, 4)
	return b, nil
}

func (b *Bus) startEmbedded() error {
	dir := b.cfg.Dir
	if dir == "" {
		return fmt.Errorf("embedded NATS needs a data directory: %w", ErrConnect)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create bus directory %s: %w", dir, err)
	}
	opts := &server.Options{
		ServerName:             "shopfloor-embedded",
		DontListen:             true,
		JetStream:              true,
		StoreDir:               filepath.Clean(dir),
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		MaxPayload:             8 << 20,
		SyncAlways:             b.cfg.Fsync,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("embedded NATS did not start within 30s: %w", ErrConnect)
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("shopfloor"))
	if err != nil {
		ns.Shutdown()
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	b.ns, b.nc = ns, nc
	return nil
}

// Publish stores one telemetry message durably, batched with concurrent
// callers. It returns once the stream has acknowledged the batch.
func (b *Bus) Publish(ctx context.Context, t *Telemetry) error {
	return b.pub.publish(ctx, t)
}

// Close stops publishing, drains the connection and stops an embedded server.
func (b *Bus) Close() error {
	if b.pub != nil {
		b.pub.close()
	}
	if b.nc != nil {
		_ = b.nc.Drain()
		b.nc.Close()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
	return nil
}

// DeleteConsumer removes a durable consumer that Consume created under
// name, if there is one: a consumer no longer read would otherwise stay on
// the server and count ever more pending messages.
func (b *Bus) DeleteConsumer(ctx context.Context, name string) error {
	err := b.js.DeleteConsumer(ctx, b.StreamName(), b.cfg.Prefix+"_"+name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}

// DeleteStream removes the telemetry stream; tests on a shared NATS use it
// to clean up after themselves.
func (b *Bus) DeleteStream(ctx context.Context) error {
	return b.js.DeleteStream(ctx, b.StreamName())
}

// Notifier publishes plain NATS messages: live feeds and rule actions,
// which need no stream (what they report is kept elsewhere).
type Notifier struct{ nc *nats.Conn }

// Notifier returns the bus's plain publisher.
func (b *Bus) Notifier() Notifier { return Notifier{b.nc} }

// Publish sends data on subject and waits until the server has it.
func (n Notifier) Publish(ctx context.Context, subject string, data []byte) error {
	if err := n.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish on %s: %w", subject, err)
	}
	// FlushWithContext needs a deadline.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return n.nc.FlushWithContext(fctx)
}
