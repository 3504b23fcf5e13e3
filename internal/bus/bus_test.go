package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func sample(i int) *Telemetry {
	return &Telemetry{
		Org: "acme", Device: fmt.Sprintf("d%d", i%7), Site: "plant-1", Template: "cnc",
		TS: 1_700_000_000_000 + int64(i), Received: 1_700_000_000_500 + int64(i),
		Num:   map[string]float64{"temp": float64(i) / 3, "spindle.rpm": 1200},
		Str:   map[string]string{"state": "RUNNING"},
		Props: map[string]string{"$.ct": "application/json"},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	var recs [][]byte
	var want []*Telemetry
	for i := 0; i < 50; i++ {
		s := sample(i)
		if i%5 == 0 {
			s.Str, s.Props, s.Num = nil, nil, nil
		}
		want = append(want, s)
		recs = append(recs, AppendTelemetry(nil, s))
	}
	got, err := DecodeBatch(EncodeBatch(nil, recs), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got[0], want[0])
	}
}

func TestDecodeRejectsCorruption(t *testing.T) {
	data := EncodeBatch(nil, [][]byte{AppendTelemetry(nil, sample(1))})
	for cut := 0; cut < len(data); cut++ {
		if _, err := DecodeBatch(data[:cut], nil); err == nil {
			t.Fatalf("truncated batch at %d of %d decoded without error", cut, len(data))
		}
	}
	bad := append([]byte{}, data...)
	bad[0] = 'X'
	if _, err := DecodeBatch(bad, nil); err == nil {
		t.Fatal("bad magic accepted")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(EncodeBatch(nil, [][]byte{AppendTelemetry(nil, sample(1)), AppendTelemetry(nil, sample(2))}))
	f.Add([]byte("SF\x01\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := DecodeBatch(data, nil)
		if err != nil {
			return
		}
		var recs [][]byte
		for _, r := range out {
			recs = append(recs, AppendTelemetry(nil, r))
		}
		again, err := DecodeBatch(EncodeBatch(nil, recs), nil)
		if err != nil || len(again) != len(out) {
			t.Fatalf("re-encoding a decoded batch failed: %v", err)
		}
	})
}

// publishAll publishes n messages from concurrent callers, as gateway
// connections would.
func publishAll(t *testing.T, b *Bus, from, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := from + w; i < from+n; i += 8 {
				if err := b.Publish(context.Background(), sample(i)); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// consumeUntil runs a consumer and returns the TS values seen once want
// distinct ones arrived.
func consumeUntil(t *testing.T, b *Bus, name string, want int) map[int64]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[int64]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Consume(ctx, name, ConsumeOptions{}, func(_ context.Context, batch []*Telemetry) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				seen[m.TS]++
			}
			if len(seen) >= want {
				cancel()
			}
			return nil
		})
	}()
	<-done
	if ctx.Err() != nil && len(seen) < want {
		t.Fatalf("consumer %s saw %d of %d messages", name, len(seen), want)
	}
	return seen
}

func TestEmbeddedDurableResume(t *testing.T) {
	dir := t.TempDir()
	b, err := New(context.Background(), Config{Dir: dir}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, b, 0, 1000)
	if got := consumeUntil(t, b, "writer", 1000); len(got) != 1000 {
		t.Fatalf("got %d distinct messages, want 1000", len(got))
	}
	b.Close()

	// After a restart the stream still holds everything, and the durable
	// consumer resumes after what it acknowledged.
	b, err = New(context.Background(), Config{Dir: dir}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publishAll(t, b, 1000, 200)
	got := consumeUntil(t, b, "writer", 200)
	for ts := range got {
		if ts < 1_700_000_000_000+1000 {
			t.Fatalf("consumer replayed acknowledged message ts=%d after restart", ts)
		}
	}
	// A new consumer name sees the whole history.
	if all := consumeUntil(t, b, "export", 1200); len(all) != 1200 {
		t.Fatalf("new consumer saw %d of 1200", len(all))
	}
}

// A consumer no longer read can be removed; removing one that does not exist
// is not an error.
func TestDeleteConsumer(t *testing.T) {
	b, err := New(context.Background(), Config{Dir: t.TempDir()}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publishAll(t, b, 0, 10)
	consumeUntil(t, b, "old", 10)
	ctx := context.Background()
	if _, err := b.JetStream().Consumer(ctx, b.StreamName(), "SHOPFLOOR_old"); err != nil {
		t.Fatalf("the consumer should exist: %v", err)
	}
	if err := b.DeleteConsumer(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().Consumer(ctx, b.StreamName(), "SHOPFLOOR_old"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := b.DeleteConsumer(ctx, "old"); err != nil {
		t.Fatalf("deleting a missing consumer: %v", err)
	}
}

func TestFromNowSkipsHistoryOnlyOnFirstStart(t *testing.T) {
	dir := t.TempDir()
	b, err := New(context.Background(), Config{Dir: dir}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, b, 0, 100) // history a new consumer must not see
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seen := make(chan int64, 1000)
	started := make(chan struct{})
	go func() {
		_ = b.Consume(ctx, "rules", ConsumeOptions{FromNow: true}, func(_ context.Context, batch []*Telemetry) error {
			for _, m := range batch {
				seen <- m.TS
			}
			return nil
		})
		close(started)
	}()
	// The consumer exists once Consume has created it; poll for it.
	for {
		if _, err := b.js.Consumer(ctx, b.StreamName(), "SHOPFLOOR_rules"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	publishAll(t, b, 1000, 10)
	for i := 0; i < 10; i++ {
		select {
		case ts := <-seen:
			if ts < 1_700_000_000_000+1000 {
				t.Fatalf("a new FromNow consumer replayed history: ts %d", ts)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of 10 new messages arrived", i)
		}
	}
	cancel()
	<-started
	b.Close()
	// After a restart an existing FromNow consumer resumes: messages
	// published while it was down are delivered.
	b, err = New(context.Background(), Config{Dir: dir}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publishAll(t, b, 2000, 5)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	got := map[int64]bool{}
	_ = b.Consume(ctx2, "rules", ConsumeOptions{FromNow: true}, func(_ context.Context, batch []*Telemetry) error {
		for _, m := range batch {
			if m.TS >= 1_700_000_000_000+2000 {
				got[m.TS] = true
			}
		}
		if len(got) == 5 {
			cancel2()
		}
		return nil
	})
	if len(got) != 5 {
		t.Fatalf("resumed consumer saw %d of the 5 messages published while it was down", len(got))
	}
}

func TestHandlerErrorRetriesSameBatch(t *testing.T) {
	b, err := New(context.Background(), Config{Dir: t.TempDir()}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publishAll(t, b, 0, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	calls := 0
	seen := map[int64]int{}
	_ = b.Consume(ctx, "flaky", ConsumeOptions{}, func(_ context.Context, batch []*Telemetry) error {
		calls++
		if calls == 1 {
			return fmt.Errorf("disk full")
		}
		for _, m := range batch {
			seen[m.TS]++
		}
		if len(seen) == 10 {
			cancel()
		}
		return nil
	})
	if len(seen) != 10 {
		t.Fatalf("after a failed handler call, %d of 10 messages were delivered", len(seen))
	}
}

// TestExternalNATS runs against the real server named by SHOPFLOOR_TEST_NATS
// (CI sets nats://127.0.0.1:4222).
func TestExternalNATS(t *testing.T) {
	url := os.Getenv("SHOPFLOOR_TEST_NATS")
	if url == "" {
		t.Skip("SHOPFLOOR_TEST_NATS not set: skipping the external NATS test (CI sets it to nats://127.0.0.1:4222)")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	prefix := "SFTEST_" + hex.EncodeToString(rnd[:])
	b, err := New(context.Background(), Config{URL: url, Prefix: prefix, MaxBytes: 64 << 20}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = b.DeleteStream(context.Background())
		b.Close()
	}()
	publishAll(t, b, 0, 500)
	if got := consumeUntil(t, b, "writer", 500); len(got) != 500 {
		t.Fatalf("got %d of 500", len(got))
	}
}

func BenchmarkEncodeDecode(b *testing.B) {
	s := sample(3)
	b.ReportAllocs()
	var buf []byte
	for i := 0; i < b.N; i++ {
		buf = AppendTelemetry(buf[:0], s)
		if _, err := DecodeTelemetry(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishEmbedded(b *testing.B) {
	bus, err := New(context.Background(), Config{Dir: b.TempDir()}, quiet())
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	s := sample(1)
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bus.Publish(context.Background(), s); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A graceful stop while a batch is being written, with more already pulled
// from the stream, must lose nothing: the consumer finishes what it holds
// before it returns. With AckAll the pulled messages were handed back at the
// stop, stayed pending until AckWait after the restart, and acknowledging a
// newer message first covered them: they were never handled.
func TestStopMidBatchLosesNothing(t *testing.T) {
	stopAndResume(t, ConsumeOptions{MaxBatch: 1}, func(ctx context.Context, stop func()) error {
		stop() // the stop arrives while this batch is written; the write completes
		return nil
	}, 15*time.Second)
}

// A handler that cannot finish by the stop leaves its batch unacknowledged;
// it must be delivered again after the restart (here after a 2 s AckWait),
// however many newer messages are acknowledged before that.
func TestUnfinishedBatchIsDeliveredAgain(t *testing.T) {
	stopAndResume(t, ConsumeOptions{MaxBatch: 1, AckWait: 2 * time.Second}, func(ctx context.Context, stop func()) error {
		stop()
		return errors.New("disk gone") // fails until the drain gives up
	}, 20*time.Second)
}

// stopAndResume publishes 20 messages, consumes them with a handler that
// calls atTen when it reaches message 10, restarts the bus, publishes 10
// more and checks that all 30 are handled within wait.
func stopAndResume(t *testing.T, opts ConsumeOptions, atTen func(ctx context.Context, stop func()) error, wait time.Duration) {
	t.Helper()
	dir := t.TempDir()
	b, err := New(context.Background(), Config{Dir: dir}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ { // separate publishes make separate stream messages
		if err := b.Publish(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	handled := map[int64]int{}
	ctx, cancel := context.WithCancel(context.Background())
	drainCtx, endDrain := context.WithTimeout(context.Background(), 30*time.Second)
	defer endDrain()
	_ = b.Consume(ctx, "writer", opts, func(hctx context.Context, batch []*Telemetry) error {
		if batch[0].TS == sample(10).TS {
			if err := atTen(hctx, cancel); err != nil {
				select { // fail until the consumer's own drain deadline
				case <-hctx.Done():
				case <-drainCtx.Done():
				}
				return err
			}
		}
		mu.Lock()
		for _, m := range batch {
			handled[m.TS]++
		}
		mu.Unlock()
		return nil
	})
	b.Close()

	b, err = New(context.Background(), Config{Dir: dir}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 20; i < 30; i++ {
		if err := b.Publish(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = b.Consume(ctx, "writer", opts, func(_ context.Context, batch []*Telemetry) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			handled[m.TS]++
		}
		if len(handled) == 30 {
			cancel()
		}
		return nil
	})
	for i := 0; i < 30; i++ {
		if handled[sample(i).TS] == 0 {
			t.Errorf("message %d was never handled after the restart", i)
		}
	}
}
