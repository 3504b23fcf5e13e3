package twin

import (
	"context"
	"sync"
	"time"
)

// SQLite has one writer at a time and, with synchronous=FULL, one fsync per
// commit (about a millisecond on a virtual disk). Twin writes from many
// goroutines used to race for the write lock: the losers slept in SQLite's
// busy handler (1, 2, 5, 10 … ms) while the database sat idle, and under
// load the queue of desired patches grew to seconds. The batcher instead
// queues the updates and commits whatever is waiting in one transaction:
// no lock contention between twin writes, and one fsync per batch.

// maxBatch bounds one transaction, so a long queue still commits often.
const maxBatch = 256

// batchTimeout bounds one batch's transaction.
const batchTimeout = 30 * time.Second

type batcher struct {
	mu      sync.Mutex
	queue   []*twinOp
	running bool
}

type twinOp struct {
	ctx                  context.Context
	org, device, ifMatch string
	change               func(*Twin) error
	twin                 Twin
	err                  error
	done                 chan struct{}
}

// do queues an update and waits for the batch that commits it. The update
// is not abandoned when ctx ends after it was queued: the caller learns
// the outcome of a write that may already be committed.
func (b *batcher) do(ctx context.Context, s *Service, org, device, ifMatch string, change func(*Twin) error) (Twin, error) {
	op := &twinOp{ctx: ctx, org: org, device: device, ifMatch: ifMatch, change: change, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, op)
	if !b.running {
		b.running = true
		go b.drain(s)
	}
	b.mu.Unlock()
	<-op.done
	return op.twin, op.err
}

// drain commits batches until the queue is empty.
func (b *batcher) drain(s *Service) {
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxBatch)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		batch := make([]*twinOp, n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.mu.Unlock()
		s.commitBatch(batch)
	}
}

// commitBatch applies ops in order in one transaction. A change that fails
// (a bad patch, a failed If-Match) fails alone. When the database fails,
// the transaction is rolled back and each op not yet answered is retried
// on its own, so one bad write cannot fail its neighbours.
func (s *Service) commitBatch(ops []*twinOp) {
	finish := func(op *twinOp, t Twin, err error) {
		op.twin, op.err = t, err
		close(op.done)
	}
	alone := func(rest []*twinOp) {
		for _, op := range rest {
			t, err := s.updateAlone(op.ctx, op.org, op.device, op.ifMatch, op.change)
			finish(op, t, err)
		}
	}
	if len(ops) == 1 {
		alone(ops)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		alone(ops)
		return
	}
	type result struct {
		op *twinOp
		t  Twin
	}
	var applied []result
	var pending []*twinOp // answered only after a successful commit
	for i, op := range ops {
		if err := op.ctx.Err(); err != nil {
			finish(op, Twin{}, err)
			continue
		}
		t, bad, ok, err := s.apply(ctx, tx, op.org, op.device, op.ifMatch, op.change)
		switch {
		case err != nil || (!ok && bad == nil):
			// A failed statement, or a version check lost inside the
			// transaction (only another process could cause it).
			_ = tx.Rollback()
			alone(append(pending, ops[i:]...))
			return
		case bad != nil:
			finish(op, Twin{}, bad)
		default:
			applied = append(applied, result{op, t})
			pending = append(pending, op)
		}
	}
	if err := tx.Commit(); err != nil {
		alone(pending)
		return
	}
	for _, r := range applied {
		finish(r.op, r.t, nil)
	}
}
