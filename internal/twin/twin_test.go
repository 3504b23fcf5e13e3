package twin

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

type testDB struct {
	name, driver string
	open         func(t testing.TB) *sql.DB
}

func databases() []testDB {
	return []testDB{
		{"sqlite", "sqlite", func(t testing.TB) *sql.DB {
			db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "t.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}},
		{"postgres", "pgx", func(t testing.TB) *sql.DB {
			db, err := sql.Open("pgx", postgresDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}},
	}
}

// postgresDSN returns a DSN for a fresh schema dropped at cleanup, or skips
// the test when SHOPFLOOR_TEST_POSTGRES is not set.
func postgresDSN(t testing.TB) string {
	return storetest.PostgresDSN(t)
}

func newService(t *testing.T, d testDB, now func() time.Time) *Service {
	t.Helper()
	db := d.open(t)
	s, err := New(context.Background(), Config{DB: db, Driver: d.driver, Now: now, MaxQueue: 3, MaxDeliveries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Config{DB: db, Driver: d.driver}); err != nil {
		t.Fatalf("second New on the same database: %v", err)
	}
	return s
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTwin(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			s := newService(t, d, nil)

			tw, err := s.Get(ctx, "acme", "press.7")
			if err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(t, tw); got != `{"deviceId":"press.7","etag":"\"1\"","version":1,"tags":{},"properties":{"desired":{"$version":1},"reported":{"$version":1}}}` {
				t.Fatalf("empty twin = %s", got)
			}

			r, err := s.Patch(ctx, "acme", "press.7", Patch{Tags: []byte(`{"line":"3"}`), Desired: []byte(`{"setpoint":72.5,"mode":{"a":1,"b":2}}`)}, `"1"`)
			if err != nil {
				t.Fatal(err)
			}
			if r.Twin.Version != 2 || r.Twin.DesiredVersion != 2 || r.Twin.ReportedVersion != 1 {
				t.Fatalf("versions after a patch: %+v", r.Twin)
			}
			if string(r.DesiredPatch) != `{"$version":2,"mode":{"a":1,"b":2},"setpoint":72.5}` {
				t.Fatalf("desired patch for devices = %s", r.DesiredPatch)
			}
			// A stale If-Match changes nothing.
			if _, err := s.Patch(ctx, "acme", "press.7", Patch{Tags: []byte(`{"x":1}`)}, `"1"`); !errors.Is(err, ErrPrecondition) {
				t.Fatalf("stale If-Match: %v", err)
			}
			// Merge patch: null removes, nested objects merge.
			r, err = s.Patch(ctx, "acme", "press.7", Patch{Desired: []byte(`{"mode":{"a":null,"c":3},"setpoint":null}`)}, "")
			if err != nil {
				t.Fatal(err)
			}
			v, err := s.PatchReported(ctx, "acme", "press.7", []byte(`{"temp":71,"fw":"1.2"}`))
			if err != nil || v != 2 {
				t.Fatalf("reported patch: %d %v", v, err)
			}
			tw, _ = s.Get(ctx, "acme", "press.7")
			want := `{"deviceId":"press.7","etag":"\"4\"","version":4,"tags":{"line":"3"},"properties":{"desired":{"$version":3,"mode":{"b":2,"c":3}},"reported":{"$version":2,"fw":"1.2","temp":71}}}`
			if got := mustJSON(t, tw); got != want {
				t.Fatalf("twin = %s\nwant %s", got, want)
			}
			doc, _ := tw.DeviceDocument()
			if string(doc) != `{"desired":{"$version":3,"mode":{"b":2,"c":3}},"reported":{"$version":2,"fw":"1.2","temp":71}}` {
				t.Fatalf("device document = %s", doc)
			}
			// Another org's device of the same id is another twin.
			if other, _ := s.Get(ctx, "globex", "press.7"); other.Version != 1 {
				t.Fatalf("twins leak across organizations: %+v", other)
			}
		})
	}
}

func TestTwinBadPatches(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			s := newService(t, d, nil)
			big := `{"blob":"` + strings.Repeat("x", MaxDesiredBytes) + `"}`
			deep := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
			for _, tc := range []struct {
				name string
				p    Patch
				want error
			}{
				{"nothing", Patch{}, ErrInvalid},
				{"not json", Patch{Desired: []byte(`{"a":`)}, ErrInvalid},
				{"array", Patch{Desired: []byte(`[1,2]`)}, ErrInvalid},
				{"two values", Patch{Desired: []byte(`{} {}`)}, ErrInvalid},
				{"reserved key", Patch{Desired: []byte(`{"$version":4}`)}, ErrInvalid},
				{"dotted key", Patch{Tags: []byte(`{"a.b":1}`)}, ErrInvalid},
				{"too deep", Patch{Desired: []byte(deep)}, ErrInvalid},
				{"too large", Patch{Desired: []byte(big)}, ErrTooLarge},
				{"tags too large", Patch{Tags: []byte(`{"t":"` + strings.Repeat("y", MaxTagsBytes) + `"}`)}, ErrTooLarge},
			} {
				if _, err := s.Patch(ctx, "acme", "d1", tc.p, ""); !errors.Is(err, tc.want) {
					t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
				}
			}
			if _, err := s.PatchReported(ctx, "acme", "d1", []byte("hello")); !errors.Is(err, ErrInvalid) {
				t.Errorf("non-JSON reported patch: %v", err)
			}
			// Growth past the limit through several small patches.
			half := strings.Repeat("z", MaxReportedBytes/2)
			if _, err := s.PatchReported(ctx, "acme", "d1", []byte(`{"a":"`+half+`"}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PatchReported(ctx, "acme", "d1", []byte(`{"b":"`+half+`"}`)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("reported twin grown past the limit: %v", err)
			}
			tw, _ := s.Get(ctx, "acme", "d1")
			if tw.Version != 2 || tw.ReportedVersion != 2 {
				t.Fatalf("refused patches changed the twin: %+v", tw)
			}
		})
	}
}

// Concurrent patches each get their own version: none is lost.
func TestTwinConcurrentPatches(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			s := newService(t, d, nil)
			const n = 8
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			for i := 0; i < n; i++ {
				wg.Add(2)
				go func(i int) {
					defer wg.Done()
					_, err := s.Patch(ctx, "acme", "d1", Patch{Desired: []byte(`{"k` + string(rune('a'+i)) + `":1}`)}, "")
					errs <- err
				}(i)
				go func(i int) {
					defer wg.Done()
					_, err := s.PatchReported(ctx, "acme", "d1", []byte(`{"r`+string(rune('a'+i))+`":1}`))
					errs <- err
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			tw, _ := s.Get(ctx, "acme", "d1")
			if tw.Version != 1+2*n || tw.DesiredVersion != 1+n || tw.ReportedVersion != 1+n || len(tw.Desired) != n || len(tw.Reported) != n {
				t.Fatalf("after %d concurrent patches of each kind: %s", n, mustJSON(t, tw))
			}
		})
	}
}

func TestCloudToDeviceQueue(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			var mu sync.Mutex
			now := time.UnixMilli(1_700_000_000_000)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
			s := newService(t, d, clock)

			m1, err := s.Send(ctx, "acme", "d1", []byte(`{"cmd":"stop"}`), map[string]string{"prio": "high"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			m2, _ := s.Send(ctx, "acme", "d1", []byte("two"), nil, 10*time.Second)
			m3, _ := s.Send(ctx, "acme", "d1", []byte("three"), nil, 0)
			if _, err := s.Send(ctx, "acme", "d1", []byte("four"), nil, 0); !errors.Is(err, ErrQueueFull) {
				t.Fatalf("fourth message with a queue of 3: %v", err)
			}
			if _, err := s.Send(ctx, "acme", "d1", nil, nil, 49*time.Hour); !errors.Is(err, ErrInvalid) {
				t.Fatalf("ttl past the maximum: %v", err)
			}
			pend, err := s.List(ctx, "acme", "d1", "")
			if err != nil || len(pend) != 3 || pend[0].ID != m1.ID || string(pend[0].Body) != `{"cmd":"stop"}` || pend[0].Properties["prio"] != "high" {
				t.Fatalf("pending = %+v, %v", pend, err)
			}
			// m1 is delivered; m2 expires; m3 is sent twice without an ack and rejected.
			if ok, err := s.Attempt(ctx, "acme", "d1", m1.ID); !ok || err != nil {
				t.Fatalf("attempt m1: %v %v", ok, err)
			}
			if err := s.Complete(ctx, "acme", "d1", m1.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.Complete(ctx, "acme", "d1", m1.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second completion: %v", err)
			}
			for i := 0; i < 2; i++ {
				if ok, err := s.Attempt(ctx, "acme", "d1", m3.ID); !ok || err != nil {
					t.Fatalf("attempt %d of m3: %v %v", i, ok, err)
				}
			}
			if ok, err := s.Attempt(ctx, "acme", "d1", m3.ID); ok || err != nil {
				t.Fatalf("third attempt of m3 with MaxDeliveries 2: %v %v", ok, err)
			}
			advance(11 * time.Second)
			if ok, _ := s.Attempt(ctx, "acme", "d1", m2.ID); ok {
				t.Fatal("an expired message may be delivered")
			}
			for state, want := range map[string]string{StatePending: "", StateDelivered: m1.ID, StateExpired: m2.ID, StateRejected: m3.ID} {
				got, err := s.List(ctx, "acme", "d1", state)
				if err != nil {
					t.Fatal(err)
				}
				ids := []string{}
				for _, m := range got {
					ids = append(ids, m.ID)
				}
				if strings.Join(ids, ",") != want {
					t.Errorf("%s: %v, want %q", state, ids, want)
				}
			}
			if _, err := s.List(ctx, "acme", "d1", "bogus"); !errors.Is(err, ErrInvalid) {
				t.Errorf("bogus state: %v", err)
			}
			s.Send(ctx, "acme", "d1", []byte("a"), nil, 0)
			s.Send(ctx, "acme", "d2", []byte("b"), nil, 0)
			if n, err := s.Purge(ctx, "acme", "d1"); n != 1 || err != nil {
				t.Fatalf("purge: %d %v", n, err)
			}
			if p, _ := s.List(ctx, "acme", "d2", ""); len(p) != 1 {
				t.Fatal("purging d1 touched d2")
			}
			advance(25 * time.Hour)
			if n, err := s.Forget(ctx, 24*time.Hour); n != 3 || err != nil {
				t.Fatalf("forget old feedback: %d %v", n, err)
			}
		})
	}
}

func BenchmarkPatchReported(b *testing.B) {
	d := databases()[0]
	s, err := New(context.Background(), Config{DB: d.open(b), Driver: d.driver})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.PatchReported(ctx, "acme", "d1", []byte(`{"temp":71.5,"fw":"1.2"}`)); err != nil {
			b.Fatal(err)
		}
	}
}

// Concurrent writers on SQLite share transactions (batch.go): a bad patch
// or a stale If-Match fails alone, and every good patch lands exactly once.
func TestTwinBatchedWritesFailAlone(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			s := newService(t, d, nil)
			const devices, per = 8, 12
			var wg sync.WaitGroup
			var mu sync.Mutex
			good := map[string]int{}
			for i := 0; i < devices*per; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					dev := "d" + string(rune('a'+i%devices))
					var err error
					switch i % 6 {
					case 1:
						_, err = s.Patch(ctx, "acme", dev, Patch{Desired: []byte(`{"broken"`)}, "")
						if !errors.Is(err, ErrInvalid) {
							t.Errorf("bad patch: %v, want ErrInvalid", err)
						}
						return
					case 2:
						_, err = s.Patch(ctx, "acme", dev, Patch{Tags: []byte(`{"x":1}`)}, `"999999"`)
						if !errors.Is(err, ErrPrecondition) {
							t.Errorf("stale If-Match: %v, want ErrPrecondition", err)
						}
						return
					case 3:
						_, err = s.PatchReported(ctx, "acme", dev, []byte(`{"r`+strconv.Itoa(i)+`":1}`))
					default:
						_, err = s.Patch(ctx, "acme", dev, Patch{Desired: []byte(`{"k` + strconv.Itoa(i) + `":1}`)}, "")
					}
					if err != nil {
						t.Errorf("patch %d: %v", i, err)
						return
					}
					mu.Lock()
					good[dev]++
					mu.Unlock()
				}(i)
			}
			wg.Wait()
			for dev, n := range good {
				tw, err := s.Get(ctx, "acme", dev)
				if err != nil {
					t.Fatal(err)
				}
				if tw.Version != int64(1+n) || len(tw.Desired)+len(tw.Reported) != n {
					t.Errorf("%s after %d good patches: version %d, %d desired and %d reported properties", dev, n, tw.Version, len(tw.Desired), len(tw.Reported))
				}
			}
		})
	}
}

// BenchmarkPatchDesiredParallel: 32 concurrent writers over 1,000 devices
// on SQLite with synchronous=FULL, as the hub opens it (one fsync per
// commit).
func BenchmarkPatchDesiredParallel(b *testing.B) {
	db, err := sql.Open("sqlite", filepath.Join(b.TempDir(), "t.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(16)
	s, err := New(context.Background(), Config{DB: db, Driver: "sqlite"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // 32 goroutines on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			dev := "d" + strconv.FormatInt(i%1000, 10)
			if _, err := s.Patch(ctx, "acme", dev, Patch{Desired: []byte(`{"seq":` + strconv.FormatInt(i, 10) + `}`)}, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
