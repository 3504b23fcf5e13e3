package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const pubTimeout = 10 * time.Second

// Handler processes a batch of telemetry. Returning nil acknowledges the
// batch; an error makes the consumer retry the same batch with backoff, so a
// handler must be idempotent.
type Handler func(ctx context.Context, batch []*Telemetry) error

// ConsumeOptions tune a durable consumer.
type ConsumeOptions struct {
	// MaxBatch bounds how many telemetry records one handler call gets.
	MaxBatch int
	// FromNow makes a consumer that does not exist yet start with messages
	// published after it was created, instead of the whole stream: a new
	// rule or export should not replay a week of history. A consumer that
	// exists resumes where it stopped either way.
	FromNow bool
}

// Consume runs a durable consumer named name until ctx ends. A restart with
// the same name resumes after the last acknowledged message.
func (b *Bus) Consume(ctx context.Context, name string, opts ConsumeOptions, h Handler) error {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 4096
	}
	durable := b.cfg.Prefix + "_" + name
	cons, err := b.js.Consumer(ctx, b.StreamName(), durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		policy := jetstream.DeliverAllPolicy
		if opts.FromNow {
			policy = jetstream.DeliverNewPolicy
		}
		cons, err = b.js.CreateOrUpdateConsumer(ctx, b.StreamName(), jetstream.ConsumerConfig{
			Durable:       durable,
			AckPolicy:     jetstream.AckAllPolicy,
			AckWait:       60 * time.Second,
			MaxAckPending: 4096,
			DeliverPolicy: policy,
		})
	}
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", durable, err)
	}
	msgs := make(chan jetstream.Msg, 1024)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
			_ = m.Nak() // hand it back now rather than after AckWait
		}
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("start consumer %s: %w", durable, err)
	}
	defer func() {
		cc.Stop()
		// Messages pulled but not handled go back to the stream at once, so
		// a restart does not wait AckWait for them.
		for {
			select {
			case m := <-msgs:
				_ = m.Nak()
			default:
				return
			}
		}
	}()

	var batch []*Telemetry
	for {
		var last jetstream.Msg
		select {
		case <-ctx.Done():
			return nil
		case last = <-msgs:
		}
		batch = batch[:0]
		batch, err = b.decodeInto(batch, last)
	drain:
		for len(batch) < opts.MaxBatch {
			select {
			case m := <-msgs:
				last = m
				batch, err = b.decodeInto(batch, m)
			default:
				break drain
			}
		}
		_ = err // undecodable messages were logged and skipped
		if err := b.handleWithRetry(ctx, durable, batch, h); err != nil {
			return nil // ctx ended; unacked messages are redelivered on restart
		}
		if err := last.Ack(); err != nil && !errors.Is(err, context.Canceled) {
			b.log.Warn("acknowledge telemetry batch", "consumer", durable, "err", err)
		}
	}
}

func (b *Bus) decodeInto(batch []*Telemetry, m jetstream.Msg) ([]*Telemetry, error) {
	out, err := DecodeBatch(m.Data(), batch)
	if err != nil {
		md, _ := m.Metadata()
		var seq uint64
		if md != nil {
			seq = md.Sequence.Stream
		}
		b.log.Error("skipping undecodable telemetry message", "seq", seq, "err", err)
		return batch, err
	}
	return out, nil
}

func (b *Bus) handleWithRetry(ctx context.Context, name string, batch []*Telemetry, h Handler) error {
	backoff := 50 * time.Millisecond
	for {
		err := h(ctx, batch)
		if err == nil {
			return nil
		}
		b.log.Error("telemetry consumer failed; retrying", "consumer", name, "records", len(batch), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}
