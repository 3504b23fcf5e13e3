package gateway

import (
	"context"
	"runtime"
	"sync"
)

// PriorityLevels is how many priority levels the ingest gate orders by:
// 0 (most important) to 15, the range of a traffic class's ARP (1–15).
const PriorityLevels = 16

// defaultMaxInflight is the default Config.MaxInflight: enough messages in
// flight to keep the bus's group commit busy (throughput × commit latency,
// with a wide margin; throughput grows with cores), few enough that a
// saturated hub queues work where the queue can be ordered.
func defaultMaxInflight() int { return max(128, 64*runtime.GOMAXPROCS(0)) }

// ingestGate bounds how many telemetry messages are being flattened and
// stored at once. While it is full, arriving messages wait in one FIFO
// queue per priority level and each freed slot goes to the oldest message
// of the most important level, so under overload a high-priority device's
// latency stays near one store round trip however many low-priority
// devices queue behind. A waiting device's connection reads nothing more
// (mochi handles one packet per connection at a time), so TCP pushes back
// on low-priority senders first.
type ingestGate struct {
	mu      sync.Mutex
	limit   int
	busy    int // slots held
	waiting int // messages in queues
	queues  [PriorityLevels][]*gateWaiter
}

type gateWaiter struct{ ready chan struct{} } // closed when handed a slot

func newIngestGate(limit int) *ingestGate { return &ingestGate{limit: limit} }

// acquire takes a slot, waiting behind more important messages while the
// gate is full. priority is asked only when the message has to wait. On
// error (ctx ended) no slot is held.
func (q *ingestGate) acquire(ctx context.Context, priority func() int) error {
	q.mu.Lock()
	if q.busy < q.limit && q.waiting == 0 {
		q.busy++
		q.mu.Unlock()
		return nil
	}
	q.mu.Unlock()
	p := 0
	if priority != nil {
		p = min(max(priority(), 0), PriorityLevels-1)
	}
	w := &gateWaiter{ready: make(chan struct{})}
	q.mu.Lock()
	if q.busy < q.limit && q.waiting == 0 {
		q.busy++
		q.mu.Unlock()
		return nil
	}
	q.queues[p] = append(q.queues[p], w)
	q.waiting++
	q.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	select {
	case <-w.ready:
		// Handed a slot as ctx ended: pass it on.
		q.mu.Unlock()
		q.release()
		return ctx.Err()
	default:
	}
	for i, x := range q.queues[p] {
		if x == w {
			q.queues[p] = append(q.queues[p][:i], q.queues[p][i+1:]...)
			q.waiting--
			break
		}
	}
	q.mu.Unlock()
	return ctx.Err()
}

// release frees a slot, handing it straight to the next waiter if any.
func (q *ingestGate) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiting > 0 {
		for p := range q.queues {
			if len(q.queues[p]) == 0 {
				continue
			}
			w := q.queues[p][0]
			q.queues[p][0] = nil
			q.queues[p] = q.queues[p][1:]
			q.waiting--
			close(w.ready)
			return
		}
	}
	q.busy--
}

// queued is how many messages wait for a slot.
func (q *ingestGate) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}
