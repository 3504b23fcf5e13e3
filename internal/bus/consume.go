package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const pubTimeout = 10 * time.Second

// ackWait is how long a delivered message may stay unacknowledged before
// JetStream delivers it again: after a crash, what was in a consumer's hands
// is handled again this long after the restart.
const ackWait = 30 * time.Second

// drainTimeout bounds how long a stopping consumer goes on handling what it
// had already pulled. What is left after it is handed back and delivered
// again after a restart (after AckWait at the latest).
const drainTimeout = 10 * time.Second

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
	// AckWait is how long a delivered, unacknowledged message waits before
	// it is delivered again; zero means 30 s. Set when the consumer is
	// created.
	AckWait time.Duration
}

// Consume runs a durable consumer named name until ctx ends. A restart with
// the same name resumes after the last acknowledged message.
//
// Every stream message is acknowledged on its own (AckExplicit), once the
// handler returned nil for the batch that held it. An earlier version used
// AckAll: after a graceful stop the messages the stop interrupted stayed
// pending until AckWait, acknowledging a newer message first covered them,
// and they were never handled (issue 12, case 1).
//
// When ctx ends, the consumer stops pulling and handles what it already
// holds (for up to drainTimeout) before it returns: the handler's context
// is not cancelled with ctx but only when that time is up, so a write in
// progress completes and is acknowledged.
func (b *Bus) Consume(ctx context.Context, name string, opts ConsumeOptions, h Handler) error {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 4096
	}
	durable := b.cfg.Prefix + "_" + name
	cons, err := b.consumer(ctx, durable, opts)
	if err != nil {
		return err
	}
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(drainTimeout, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stopDrain()

	c := &consumerRun{b: b, durable: durable, max: opts.MaxBatch, h: h, msgs: make(chan jetstream.Msg, 1024)}
	c.idle = sync.NewCond(&c.leftMu)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		c.leftMu.Lock()
		if c.drained {
			// The drain has taken stock; nothing is pulling any more, so
			// the message handed back is delivered after a restart.
			c.leftMu.Unlock()
			_ = m.Nak()
			return
		}
		c.delivering++
		c.leftMu.Unlock()
		select {
		case c.msgs <- m:
		case <-ctx.Done():
			c.leftMu.Lock()
			c.left = append(c.left, m)
			c.leftMu.Unlock()
		}
		c.leftMu.Lock()
		c.delivering--
		c.idle.Broadcast()
		c.leftMu.Unlock()
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("start consumer %s: %w", durable, err)
	}
	for {
		var first jetstream.Msg
		select {
		case <-ctx.Done():
			c.drain(hctx, cc)
			return nil
		case first = <-c.msgs:
		}
		if !c.handle(hctx, first) {
			c.drain(hctx, cc)
			return nil
		}
	}
}

// consumerRun is one Consume call's state.
type consumerRun struct {
	b       *Bus
	durable string
	max     int
	h       Handler
	msgs    chan jetstream.Msg
	// leftMu guards left, drained and delivering: the callback may still
	// run after the subscription reports itself closed.
	leftMu     sync.Mutex
	idle       *sync.Cond      // signalled when delivering drops
	left       []jetstream.Msg // delivered after ctx ended
	drained    bool
	delivering int
	inHand     []jetstream.Msg
	batch      []*Telemetry
}

// handle takes first and whatever else is queued (up to the batch size)
// and handles them as one batch. It returns false, holding the batch in
// c.inHand, when hctx ended first.
func (c *consumerRun) handle(hctx context.Context, first jetstream.Msg) bool {
	c.inHand = append(c.inHand[:0], first)
	c.batch = c.b.decodeInto(c.batch[:0], first)
fill:
	for len(c.batch) < c.max {
		select {
		case m := <-c.msgs:
			c.inHand = append(c.inHand, m)
			c.batch = c.b.decodeInto(c.batch, m)
		default:
			break fill
		}
	}
	return c.commit(hctx)
}

// commit runs the handler on c.batch until it succeeds and acknowledges
// every message in c.inHand; false when hctx ended first.
func (c *consumerRun) commit(hctx context.Context) bool {
	if err := c.b.handleWithRetry(hctx, c.durable, c.batch, c.h); err != nil {
		return false
	}
	for _, m := range c.inHand {
		if err := m.Ack(); err != nil && !errors.Is(err, context.Canceled) {
			c.b.log.Warn("acknowledge telemetry message", "consumer", c.durable, "err", err)
		}
	}
	c.inHand = c.inHand[:0]
	return true
}

// drain stops pulling, handles what was already delivered while hctx
// lasts, and hands the rest back.
func (c *consumerRun) drain(hctx context.Context, cc jetstream.ConsumeContext) {
	// Drain, not Stop: Stop discards what the client library has already
	// pulled, which would then wait AckWait after a restart.
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-hctx.Done():
		// Out of time: a message delivered from now on is handed back, and
		// if the subscription is still open it may come back to it and then
		// wait AckWait after a restart. Late, never lost.
	}
	rest := append([]jetstream.Msg(nil), c.inHand...)
	c.inHand = c.inHand[:0]
	for len(c.msgs) > 0 {
		rest = append(rest, <-c.msgs)
	}
	c.leftMu.Lock()
	c.drained = true
	for c.delivering > 0 {
		c.idle.Wait()
	}
	rest = append(rest, c.left...)
	c.left = nil
	c.leftMu.Unlock()
	for len(c.msgs) > 0 {
		rest = append(rest, <-c.msgs)
	}

	i := 0
	for i < len(rest) && hctx.Err() == nil {
		c.inHand, c.batch = c.inHand[:0], c.batch[:0]
		for i < len(rest) && (len(c.batch) < c.max || len(c.inHand) == 0) {
			c.inHand = append(c.inHand, rest[i])
			c.batch = c.b.decodeInto(c.batch, rest[i])
			i++
		}
		if !c.commit(hctx) {
			break
		}
	}
	// Hand back what is left, only now that the pull subscription is gone:
	// a message handed back while it is open is delivered to it again at
	// once, and then stays pending until AckWait.
	for _, m := range c.inHand {
		_ = m.Nak()
	}
	for _, m := range rest[i:] {
		_ = m.Nak()
	}
	// Acks and naks are sent asynchronously; make sure they leave before
	// the connection closes. Lost ones are delivered again after AckWait.
	_ = c.b.nc.FlushTimeout(time.Second)
}

// consumer opens the durable consumer, creating it on first use. A consumer
// made by an earlier version with AckAll is replaced by one with explicit
// acknowledgements that starts after the old one's acknowledged floor:
// messages it had delivered but not acknowledged are handled again, which
// handlers tolerate (they are idempotent), and none is skipped.
func (b *Bus) consumer(ctx context.Context, durable string, opts ConsumeOptions) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cmp.Or(opts.AckWait, ackWait),
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	cons, err := b.js.Consumer(ctx, b.StreamName(), durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if opts.FromNow {
			cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		}
	case err != nil:
		return nil, fmt.Errorf("open consumer %s: %w", durable, err)
	case cons.CachedInfo().Config.AckPolicy == jetstream.AckExplicitPolicy:
		return cons, nil
	default:
		floor := cons.CachedInfo().AckFloor.Stream
		b.log.Info("upgrading telemetry consumer to explicit acknowledgements", "consumer", durable, "resume_after", floor)
		if err := b.js.DeleteConsumer(ctx, b.StreamName(), durable); err != nil {
			return nil, fmt.Errorf("replace consumer %s: %w", durable, err)
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = floor + 1
	}
	cons, err = b.js.CreateOrUpdateConsumer(ctx, b.StreamName(), cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", durable, err)
	}
	return cons, nil
}

func (b *Bus) decodeInto(batch []*Telemetry, m jetstream.Msg) []*Telemetry {
	out, err := DecodeBatch(m.Data(), batch)
	if err != nil {
		// An undecodable message is logged and skipped (acknowledged with
		// its batch): delivering it again cannot make it readable.
		md, _ := m.Metadata()
		var seq uint64
		if md != nil {
			seq = md.Sequence.Stream
		}
		b.log.Error("skipping undecodable telemetry message", "seq", seq, "err", err)
		return batch
	}
	return out
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
