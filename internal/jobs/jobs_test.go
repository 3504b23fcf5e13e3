package jobs_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/jobs"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

// fleet is an Executor over n in-memory devices; dev-13 answers methods
// with 500 and refuses desired patches.
type fleet struct {
	block   string // this device's calls wait until their context ends
	mu      sync.Mutex
	devices []string
	calls   map[string]int
	desired map[string]string
}

func newFleet(n int) *fleet {
	f := &fleet{calls: map[string]int{}, desired: map[string]string{}}
	for i := range n {
		f.devices = append(f.devices, fmt.Sprintf("dev-%02d", i))
	}
	return f
}

func (f *fleet) Devices(_ context.Context, org string, q jobs.Query) ([]string, error) {
	if org != "acme" {
		return nil, nil
	}
	if q.Site == "empty" {
		return nil, nil
	}
	return append([]string(nil), f.devices...), nil
}

func (f *fleet) Desired(ctx context.Context, _, device string, patch json.RawMessage) error {
	if device == f.block {
		<-ctx.Done()
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[device]++
	if device == "dev-13" {
		return errors.New("desired properties too large")
	}
	f.desired[device] = string(patch)
	return nil
}

func (f *fleet) Method(_ context.Context, _, device string, m jobs.Method) (int, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[device]++
	if device == "dev-13" {
		return 500, []byte(`{"error":"busy"}`), nil
	}
	return 200, []byte(`{"ok":true,"method":"` + m.Name + `"}`), nil
}

func (f *fleet) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func openDB(t *testing.T, driver string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if driver == "sqlite" {
		db, err = sql.Open("sqlite", filepath.Join(t.TempDir(), "t.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	} else {
		db, err = sql.Open("pgx", storetest.PostgresDSN(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// start runs a service until the returned stop is called.
func start(t *testing.T, db *sql.DB, driver string, f *fleet) (*jobs.Service, func()) {
	t.Helper()
	s, err := jobs.New(context.Background(), jobs.Config{DB: db, Driver: driver, Exec: f})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func drivers() []string { return []string{"sqlite", "pgx"} }

func TestJobCompletes(t *testing.T) {
	for _, driver := range drivers() {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			db := openDB(t, driver)
			f := newFleet(50)
			s, _ := start(t, db, driver, f)
			j, err := s.Create(ctx, "acme", jobs.Spec{Type: jobs.TypeMethod, Method: &jobs.Method{Name: "reboot", Payload: json.RawMessage(`{"delay":1}`)}, Rate: 200})
			if err != nil {
				t.Fatal(err)
			}
			if j.State != jobs.StateRunning || j.Progress.Total != 50 || j.Method.TimeoutSeconds != jobs.DefaultTimeout {
				t.Fatalf("created %+v", j)
			}
			if _, err := s.Get(ctx, "globex", j.ID); !errors.Is(err, jobs.ErrNotFound) {
				t.Fatalf("another org reads the job: %v", err)
			}
			waitFor(t, "the job to complete", func() bool {
				got, err := s.Get(ctx, "acme", j.ID)
				return err == nil && got.State == jobs.StateCompleted
			})
			got, _ := s.Get(ctx, "acme", j.ID)
			if got.Progress != (jobs.Progress{Total: 50, Succeeded: 49, Failed: 1}) || got.EndedAt == nil {
				t.Fatalf("progress %+v ended %v", got.Progress, got.EndedAt)
			}
			// The rate is a limit: 50 devices at 200 per second take at
			// least 49 intervals of 5 ms (a lower bound, not a timing).
			if took := got.EndedAt.Sub(got.CreatedAt); took < 49*5*time.Millisecond-10*time.Millisecond {
				t.Fatalf("50 devices at 200/s took only %s", took)
			}
			res, err := s.Devices(ctx, "acme", j.ID, "")
			if err != nil || len(res) != 50 {
				t.Fatalf("results %d %v", len(res), err)
			}
			for _, r := range res {
				switch {
				case r.Device == "dev-13":
					if r.State != jobs.DeviceFailed || r.Status != 500 || r.Error == "" {
						t.Errorf("dev-13: %+v", r)
					}
				case r.State != jobs.DeviceSucceeded || r.Status != 200 || string(r.Response) != `{"ok":true,"method":"reboot"}` || r.At == nil:
					t.Errorf("%s: %+v", r.Device, r)
				}
			}
			if f.total() != 50 {
				t.Fatalf("%d invocations, want 50", f.total())
			}
			failed, _ := s.Devices(ctx, "acme", j.ID, jobs.DeviceFailed)
			if len(failed) != 1 {
				t.Fatalf("failed filter: %+v", failed)
			}
			if _, err := s.Cancel(ctx, "acme", j.ID); !errors.Is(err, jobs.ErrFinished) {
				t.Fatalf("cancel a finished job: %v", err)
			}

			d, err := s.Create(ctx, "acme", jobs.Spec{Type: jobs.TypeDesired, Desired: json.RawMessage(`{"setpoint":72}`), Rate: 500})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the desired job to complete", func() bool {
				got, err := s.Get(ctx, "acme", d.ID)
				return err == nil && got.State == jobs.StateCompleted
			})
			f.mu.Lock()
			if f.desired["dev-49"] != `{"setpoint":72}` {
				t.Errorf("dev-49 desired %q", f.desired["dev-49"])
			}
			f.mu.Unlock()
			list, err := s.List(ctx, "acme")
			if err != nil || len(list) != 2 || list[0].ID != d.ID || list[0].Progress.Failed != 1 {
				t.Fatalf("list %+v %v", list, err)
			}
			if e, err := s.Create(ctx, "acme", jobs.Spec{Type: jobs.TypeDesired, Query: jobs.Query{Site: "empty"}, Desired: json.RawMessage(`{"a":1}`)}); err != nil || e.State != jobs.StateCompleted {
				t.Fatalf("empty job %+v %v", e, err)
			}
		})
	}
}

func TestJobSpecRefused(t *testing.T) {
	db := openDB(t, "sqlite")
	s, _ := start(t, db, "sqlite", newFleet(1))
	for name, sp := range map[string]jobs.Spec{
		"no type":           {},
		"desired not obj":   {Type: jobs.TypeDesired, Desired: json.RawMessage(`3`)},
		"desired empty":     {Type: jobs.TypeDesired, Desired: json.RawMessage(`{}`)},
		"method no name":    {Type: jobs.TypeMethod, Method: &jobs.Method{}},
		"method bad json":   {Type: jobs.TypeMethod, Method: &jobs.Method{Name: "x", Payload: json.RawMessage(`{`)}},
		"rate too high":     {Type: jobs.TypeMethod, Method: &jobs.Method{Name: "x"}, Rate: 1e6},
		"timeout too large": {Type: jobs.TypeMethod, Method: &jobs.Method{Name: "x", TimeoutSeconds: 1000}},
	} {
		if _, err := s.Create(context.Background(), "acme", sp); !errors.Is(err, jobs.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestJobCancel(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "sqlite")
	f := newFleet(50)
	s, _ := start(t, db, "sqlite", f)
	j, err := s.Create(ctx, "acme", jobs.Spec{Type: jobs.TypeDesired, Desired: json.RawMessage(`{"mode":"eco"}`), Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a few devices done", func() bool { return f.total() >= 3 })
	got, err := s.Cancel(ctx, "acme", j.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Progress
	if got.State != jobs.StateCancelled || p.Pending != 0 || p.Cancelled == 0 || p.Succeeded+p.Failed+p.Cancelled != 50 {
		t.Fatalf("after cancel: %+v", got)
	}
	calls := f.total()
	// A call that finished as the job was cancelled is not recorded.
	if done := p.Succeeded + p.Failed; calls < done || calls > done+1 {
		t.Fatalf("%d calls but %d results", calls, done)
	}
	// Nothing more is sent once cancelled: wait three rate intervals.
	time.Sleep(150 * time.Millisecond)
	if f.total() != calls {
		t.Fatalf("devices reached after cancel: %d then %d", calls, f.total())
	}
	if _, err := s.Cancel(ctx, "globex", j.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("another org cancels: %v", err)
	}
}

func TestJobResumesAfterRestart(t *testing.T) {
	for _, driver := range drivers() {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			db := openDB(t, driver)
			f := newFleet(50)
			s, stop := start(t, db, driver, f)
			j, err := s.Create(ctx, "acme", jobs.Spec{Type: jobs.TypeMethod, Method: &jobs.Method{Name: "calibrate"}, Rate: 25})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "some devices done", func() bool { return f.total() >= 5 })
			stop()
			mid, err := s.Get(ctx, "acme", j.ID)
			if err != nil {
				t.Fatal(err)
			}
			if mid.State != jobs.StateRunning || mid.Progress.Pending == 0 || mid.Progress.Pending == 50 {
				t.Fatalf("after stop: %+v", mid)
			}
			s2, _ := start(t, db, driver, f)
			waitFor(t, "the resumed job to complete", func() bool {
				got, err := s2.Get(ctx, "acme", j.ID)
				return err == nil && got.State == jobs.StateCompleted
			})
			got, _ := s2.Get(ctx, "acme", j.ID)
			if got.Progress != (jobs.Progress{Total: 50, Succeeded: 49, Failed: 1}) {
				t.Fatalf("progress %+v", got.Progress)
			}
			// A device in flight at the stop may be invoked again, no more.
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, d := range f.devices {
				if c := f.calls[d]; c < 1 || c > 2 {
					t.Errorf("%s invoked %d times", d, c)
				}
			}
		})
	}
}

// A device that does not answer does not hold up the others; cancelling
// the job ends its call.
func TestJobSlowDevice(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "sqlite")
	f := newFleet(50)
	f.block = "dev-05"
	s, _ := start(t, db, "sqlite", f)
	j, err := s.Create(ctx, "acme", jobs.Spec{Type: jobs.TypeDesired, Desired: json.RawMessage(`{"mode":"eco"}`), Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every other device done", func() bool {
		got, err := s.Get(ctx, "acme", j.ID)
		return err == nil && got.Progress.Succeeded+got.Progress.Failed == 49
	})
	got, err := s.Get(ctx, "acme", j.ID)
	if err != nil || got.State != jobs.StateRunning || got.Progress.Pending != 1 {
		t.Fatalf("with one device hanging: %+v %v", got, err)
	}
	got, err = s.Cancel(ctx, "acme", j.ID)
	if err != nil || got.Progress.Cancelled != 1 || got.State != jobs.StateCancelled {
		t.Fatalf("after cancel: %+v %v", got, err)
	}
	res, err := s.Devices(ctx, "acme", j.ID, jobs.DeviceCancelled)
	if err != nil || len(res) != 1 || res[0].Device != "dev-05" {
		t.Fatalf("cancelled devices %+v %v", res, err)
	}
}

// A job starts its devices no faster than its rate (up to a short
// catch-up after waking late), and every result is stored in its batches.
func TestJobKeepsItsRate(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "sqlite")
	f := newFleet(100)
	s, _ := start(t, db, "sqlite", f)
	begin := time.Now()
	j, err := s.Create(ctx, "acme", jobs.Spec{Type: jobs.TypeDesired, Desired: json.RawMessage(`{"mode":"eco"}`), Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to complete", func() bool {
		got, err := s.Get(ctx, "acme", j.ID)
		return err == nil && got.State == jobs.StateCompleted
	})
	// 100 devices at 50/s: the last starts 99/50 s after the first, less
	// at most the 250 ms catch-up.
	if took, least := time.Since(begin), 99*time.Second/50-250*time.Millisecond; took < least {
		t.Fatalf("100 devices at 50/s took %v; a job must not run faster than its rate (at least %v)", took, least)
	}
	got, err := s.Get(ctx, "acme", j.ID)
	if err != nil || got.Progress.Succeeded+got.Progress.Failed != 100 || got.Progress.Pending != 0 {
		t.Fatalf("progress %+v %v", got.Progress, err)
	}
}
