package bus

import (
	"context"
	"fmt"
	"sync"
)

const (
	maxBatchRecords = 1024
	maxBatchBytes   = 4 << 20
)

type pubReq struct {
	rec  []byte
	done chan error
}

// publisher group-commits: a few workers each take whatever requests are
// queued, publish them as one JetStream message and wait for the stream's
// ack. Under load batches grow by themselves; when idle a message goes
// alone, so latency stays low.
type publisher struct {
	b      *Bus
	reqs   chan *pubReq
	quit   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
	pool   sync.Pool
}

func newPublisher(b *Bus, workers int) *publisher {
	p := &publisher{b: b, reqs: make(chan *pubReq, 8192), quit: make(chan struct{})}
	p.pool.New = func() any { return &pubReq{done: make(chan error, 1)} }
	for i := 0; i < workers; i++ {
		p.wg.Add(1)
		go p.worker()
	}
	return p
}

func (p *publisher) publish(ctx context.Context, t *Telemetry) error {
	r := p.pool.Get().(*pubReq)
	r.rec = AppendTelemetry(r.rec[:0], t)
	select {
	case p.reqs <- r:
	case <-p.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Wait for the worker even if ctx ends: it owns r until it answers.
	err := <-r.done
	p.pool.Put(r)
	return err
}

func (p *publisher) worker() {
	defer p.wg.Done()
	batch := make([]*pubReq, 0, maxBatchRecords)
	recs := make([][]byte, 0, maxBatchRecords)
	var buf []byte
	for {
		var first *pubReq
		select {
		case first = <-p.reqs:
		case <-p.quit:
			return
		}
		batch = append(batch[:0], first)
		size := len(first.rec)
	drain:
		for len(batch) < maxBatchRecords && size < maxBatchBytes {
			select {
			case r := <-p.reqs:
				batch = append(batch, r)
				size += len(r.rec)
			default:
				break drain
			}
		}
		recs = recs[:0]
		for _, r := range batch {
			recs = append(recs, r.rec)
		}
		buf = EncodeBatch(buf[:0], recs)
		// Not tied to a caller's ctx: the batch belongs to many callers.
		ctx, cancel := context.WithTimeout(context.Background(), pubTimeout)
		_, err := p.b.js.Publish(ctx, p.b.TelemetrySubject(), buf)
		cancel()
		if err != nil {
			err = fmt.Errorf("store telemetry in stream %s: %w", p.b.StreamName(), err)
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

func (p *publisher) close() {
	p.closed.Do(func() { close(p.quit) })
	p.wg.Wait()
	// Answer anyone still queued so no caller waits forever.
	for {
		select {
		case r := <-p.reqs:
			r.done <- ErrClosed
		default:
			return
		}
	}
}
