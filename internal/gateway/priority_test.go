package gateway

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestIngestGateOrder(t *testing.T) {
	q := newIngestGate(1)
	ctx := context.Background()
	if err := q.acquire(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	// Queue 15, 9, 1, 9 in that order; they must run 1, 9, 9, 15.
	for i, p := range []int{15, 9, 1, 9} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.acquire(ctx, func() int { return p }); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, p*10+i)
			mu.Unlock()
			q.release()
		}()
		eventually(t, "the waiter to queue", func() bool { return q.queued() == i+1 })
	}
	q.release()
	wg.Wait()
	if want := []int{12, 91, 93, 150}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v (priority*10+arrival)", order, want)
	}
	// A waiter whose time runs out leaves the queue and holds nothing.
	if err := q.acquire(ctx, nil); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.acquire(short, func() int { return 3 }); err == nil {
		t.Fatal("acquired a full gate")
	}
	if q.queued() != 0 {
		t.Fatalf("%d still queued", q.queued())
	}
	q.release()
	if err := q.acquire(ctx, nil); err != nil || q.busy != 1 {
		t.Fatalf("busy %d after release and acquire: %v", q.busy, err)
	}
}

// TestPriorityUnderOverload saturates a gateway whose store takes a few
// milliseconds per message and admits one at a time with many low-priority
// publishers, then measures a high-priority device's publish→PUBACK
// latency in the same run. The high-priority device waits for at most the
// message being stored; the low-priority ones wait for each other. A run
// without priorities is logged for comparison.
func TestPriorityUnderOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("overload run")
	}
	const lowDevices, storeTime = 12, 3 * time.Millisecond
	run := func(t *testing.T, prio func(string) int) (high, low time.Duration) {
		f := start(t, Config{MaxInflight: 1, Priority: prio})
		f.pub.set(func(p *fakePublisher) {
			p.stored = func() {
				time.Sleep(storeTime)
				p.mu.Lock()
				p.got = p.got[:0]
				p.mu.Unlock()
			}
		})
		payload := `{"temperature":21.5,"rpm":1450}`
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var mu sync.Mutex
		var lows []time.Duration
		for i := range lowDevices {
			id := fmt.Sprintf("bulk-%02d", i)
			c := mustV5(t, f, id, f.device(id))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					t0 := time.Now()
					if _, err := c.publish(t, "devices/"+id+"/messages/events/", 1, payload); err != nil {
						if ctx.Err() == nil {
							t.Errorf("%s: %v", id, err)
						}
						return
					}
					mu.Lock()
					lows = append(lows, time.Since(t0))
					mu.Unlock()
				}
			}()
		}
		vip := mustV5(t, f, "agv-vip", f.device("agv-vip"))
		eventually(t, "the hub to be saturated", func() bool { return f.g.Stats().Queued >= lowDevices/2 })
		var highs []time.Duration
		for range 25 {
			t0 := time.Now()
			if _, err := vip.publish(t, "devices/agv-vip/messages/events/", 1, payload); err != nil {
				t.Fatal(err)
			}
			highs = append(highs, time.Since(t0))
		}
		stop()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return median(highs), median(lows)
	}
	t.Run("by ARP", func(t *testing.T) {
		high, low := run(t, func(id string) int {
			if id == "agv-vip" {
				return 1
			}
			return 15
		})
		t.Logf("median publish→PUBACK under overload: high priority %s, low priority %s", high, low)
		// Expected about 1–2 store times against about lowDevices; a factor
		// of 3 leaves room for a loaded machine.
		if high*3 > low {
			t.Fatalf("high priority median %s is not well below low priority median %s", high, low)
		}
	})
	t.Run("without priority", func(t *testing.T) {
		high, low := run(t, nil)
		t.Logf("median publish→PUBACK without priority (for comparison): agv-vip %s, others %s", high, low)
	})
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
