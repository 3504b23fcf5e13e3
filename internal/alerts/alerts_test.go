package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// testDB is one database the shared suite runs against.
type testDB struct {
	name, driver string
	open         func(t *testing.T) *sql.DB
}

func databases() []testDB {
	return []testDB{
		{"sqlite", "sqlite", func(t *testing.T) *sql.DB {
			dsn := "file:" + filepath.Join(t.TempDir(), "t.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
			db, err := sql.Open("sqlite", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}},
		{"postgres", "pgx", func(t *testing.T) *sql.DB {
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
func postgresDSN(t *testing.T) string {
	return storetest.PostgresDSN(t)
}

type recorder struct {
	mu     sync.Mutex
	events []AlertEvent
	fail   error
}

func (r *recorder) PublishAlert(_ context.Context, ev AlertEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return r.fail
}

func (r *recorder) types() []EventType {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []EventType
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

func forEachDB(t *testing.T, fn func(t *testing.T, svc *Service, pub *recorder, db *sql.DB)) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			pub := &recorder{}
			svc, err := New(context.Background(), Config{DB: db, Driver: d.driver, Publisher: pub})
			if err != nil {
				t.Fatal(err)
			}
			// Creating twice must be harmless.
			if _, err := New(context.Background(), Config{DB: db, Driver: d.driver}); err != nil {
				t.Fatalf("second New on the same database: %v", err)
			}
			fn(t, svc, pub, db)
		})
	}
}

func fire(t *testing.T, svc *Service, org, rule, dev string) (Alert, bool) {
	t.Helper()
	a, opened, err := svc.Fire(context.Background(), FireRequest{Org: org, Rule: rule, Device: dev, Severity: SeverityMajor, Message: "temperature > 80", Values: map[string]float64{"temperature": 85}})
	if err != nil {
		t.Fatalf("fire: %v", err)
	}
	return a, opened
}

func TestLifecycleAndHistory(t *testing.T) {
	forEachDB(t, func(t *testing.T, svc *Service, pub *recorder, _ *sql.DB) {
		ctx := context.Background()
		a, opened := fire(t, svc, "o1", "r1", "d1")
		if !opened || a.State != StateOpen || a.Count != 1 || a.Values["temperature"] != 85 {
			t.Fatalf("first fire: opened=%v %+v", opened, a)
		}
		time.Sleep(2 * time.Millisecond) // lastSeen has millisecond resolution
		b, opened := fire(t, svc, "o1", "r1", "d1")
		if opened || b.ID != a.ID || b.Count != 2 || !b.LastSeen.After(a.LastSeen) || !b.FirstSeen.Equal(a.FirstSeen) {
			t.Fatalf("re-fire must count on the same alert: opened=%v first=%+v second=%+v", opened, a, b)
		}
		if _, err := svc.Resolve(ctx, "o1", a.ID, "", ""); err != nil {
			// Resolving straight from open is allowed; reopen the flow below with a fresh alert.
			t.Fatalf("resolve from open: %v", err)
		}
		a, _ = fire(t, svc, "o1", "r1", "d1")
		if a.ID == b.ID || a.Count != 1 {
			t.Fatalf("firing after resolution must open a new alert, got %+v (old %s)", a, b.ID)
		}
		if _, err := svc.Ack(ctx, "o1", a.ID, "alice", "looking"); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Ack(ctx, "o1", a.ID, "alice", ""); !errors.Is(err, ErrConflict) {
			t.Fatalf("second ack: want ErrConflict, got %v", err)
		}
		// Firing while acknowledged counts, keeps the state.
		c, opened := fire(t, svc, "o1", "r1", "d1")
		if opened || c.State != StateAcknowledged || c.Count != 2 {
			t.Fatalf("fire while acknowledged: %+v", c)
		}
		if _, err := svc.AddNote(ctx, "o1", a.ID, "bob", "replaced the fan"); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.AddNote(ctx, "o1", a.ID, "bob", "  "); !errors.Is(err, ErrInvalid) {
			t.Fatalf("empty note: want ErrInvalid, got %v", err)
		}
		if as, err := svc.Assign(ctx, "o1", a.ID, "alice", "bob"); err != nil || as.Assignee != "bob" {
			t.Fatalf("assign: %v %+v", err, as)
		}
		r, err := svc.Resolve(ctx, "o1", a.ID, "bob", "fixed")
		if err != nil || r.State != StateResolved || r.ResolvedBy != "bob" || r.ResolvedAt == nil || r.AckedBy != "alice" {
			t.Fatalf("resolve: %v %+v", err, r)
		}
		if _, err := svc.Resolve(ctx, "o1", a.ID, "bob", ""); !errors.Is(err, ErrConflict) {
			t.Fatalf("second resolve: want ErrConflict, got %v", err)
		}
		if _, err := svc.Ack(ctx, "o1", a.ID, "bob", ""); !errors.Is(err, ErrConflict) {
			t.Fatalf("ack of a resolved alert: want ErrConflict, got %v", err)
		}
		got, err := svc.Get(ctx, "o1", a.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := []Change{
			{By: "rule:r1", Kind: KindState, To: StateOpen},
			{By: "alice", Kind: KindState, From: StateOpen, To: StateAcknowledged, Note: "looking"},
			{By: "bob", Kind: KindNote, Note: "replaced the fan"},
			{By: "alice", Kind: KindAssign, Note: "bob"},
			{By: "bob", Kind: KindState, From: StateAcknowledged, To: StateResolved, Note: "fixed"},
		}
		if len(got.History) != len(want) {
			t.Fatalf("history: got %d entries %+v", len(got.History), got.History)
		}
		for i, w := range want {
			h := got.History[i]
			if h.By != w.By || h.Kind != w.Kind || h.From != w.From || h.To != w.To || (w.Note != "" && h.Note != w.Note) || h.At.IsZero() {
				t.Errorf("history[%d] = %+v, want %+v", i, h, w)
			}
		}
		if len(got.Notes) != 1 || got.Notes[0].Text != "replaced the fan" || got.Notes[0].By != "bob" {
			t.Errorf("notes: %+v", got.Notes)
		}
		wantEvents := []EventType{EventOpened, EventRefired, EventResolved, EventOpened, EventAcknowledged, EventRefired, EventNote, EventAssigned, EventResolved}
		if fmt.Sprint(pub.types()) != fmt.Sprint(wantEvents) {
			t.Errorf("published %v, want %v", pub.types(), wantEvents)
		}
	})
}

func TestClearIsAutomaticResolution(t *testing.T) {
	forEachDB(t, func(t *testing.T, svc *Service, pub *recorder, _ *sql.DB) {
		ctx := context.Background()
		a, _ := fire(t, svc, "o1", "r1", "d1")
		at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
		c, ok, err := svc.Clear(ctx, "o1", "r1", "d1", at)
		if err != nil || !ok || c.ID != a.ID || c.State != StateResolved || c.ResolvedBy != "rule:r1" || !c.ResolvedAt.Equal(at) {
			t.Fatalf("clear: ok=%v err=%v %+v", ok, err, c)
		}
		if _, ok, err := svc.Clear(ctx, "o1", "r1", "d1", time.Time{}); ok || err != nil {
			t.Fatalf("clearing with nothing active must be a no-op, got ok=%v err=%v", ok, err)
		}
		got, err := svc.Get(ctx, "o1", a.ID)
		if err != nil {
			t.Fatal(err)
		}
		last := got.History[len(got.History)-1]
		if last.From != StateOpen || last.To != StateResolved || last.Note != "condition cleared" {
			t.Fatalf("history of clear: %+v", last)
		}
	})
}

func TestTenancy(t *testing.T) {
	forEachDB(t, func(t *testing.T, svc *Service, _ *recorder, _ *sql.DB) {
		ctx := context.Background()
		a, _ := fire(t, svc, "o1", "r1", "d1")
		for name, call := range map[string]func() error{
			"get":     func() error { _, err := svc.Get(ctx, "o2", a.ID); return err },
			"ack":     func() error { _, err := svc.Ack(ctx, "o2", a.ID, "x", ""); return err },
			"resolve": func() error { _, err := svc.Resolve(ctx, "o2", a.ID, "x", ""); return err },
			"note":    func() error { _, err := svc.AddNote(ctx, "o2", a.ID, "x", "hi"); return err },
			"assign":  func() error { _, err := svc.Assign(ctx, "o2", a.ID, "x", "y"); return err },
		} {
			if err := call(); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s with another organization: want ErrNotFound, got %v", name, err)
			}
		}
		if _, ok, _ := svc.Clear(ctx, "o2", "r1", "d1", time.Time{}); ok {
			t.Error("another organization cleared the alert")
		}
		p, err := svc.List(ctx, "o2", Filter{})
		if err != nil || len(p.Items) != 0 {
			t.Fatalf("list of another organization: %v %+v", err, p)
		}
		if got, err := svc.Get(ctx, "o1", a.ID); err != nil || got.State != StateOpen {
			t.Fatalf("the owner's alert changed: %v %+v", err, got)
		}
		// Same rule and device ids in another organization are a separate alert.
		b, opened := fire(t, svc, "o2", "r1", "d1")
		if !opened || b.ID == a.ID {
			t.Fatalf("another organization must get its own alert: %+v", b)
		}
	})
}

func TestDedupeUnderConcurrency(t *testing.T) {
	forEachDB(t, func(t *testing.T, svc *Service, pub *recorder, db *sql.DB) {
		ctx := context.Background()
		const workers, perWorker, devices = 8, 10, 5
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perWorker; i++ {
					for d := 0; d < devices; d++ {
						if _, _, err := svc.Fire(ctx, FireRequest{Org: "o1", Rule: "r1", Device: fmt.Sprintf("d%d", d), Severity: SeverityMinor}); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		p, err := svc.List(ctx, "o1", Filter{State: StateActive})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != devices {
			t.Fatalf("want exactly %d alerts (one per device), got %d", devices, len(p.Items))
		}
		for _, a := range p.Items {
			if a.Count != workers*perWorker {
				t.Errorf("alert on %s counted %d occurrences, want %d", a.Device, a.Count, workers*perWorker)
			}
		}
		opened := 0
		for _, ty := range pub.types() {
			if ty == EventOpened {
				opened++
			}
		}
		if opened != devices {
			t.Errorf("published %d opened events, want %d", opened, devices)
		}
		// The database itself refuses a second active alert for the same key.
		_, err = db.ExecContext(ctx, svc.q(`INSERT INTO alerts_alerts (id, org, rule, device, severity, state, occurrences, first_seen, last_seen, updated_at)
			VALUES ('x', 'o1', 'r1', 'd0', 'minor', 'open', 1, 0, 0, 0)`))
		if err == nil {
			t.Fatal("a second active alert for (o1, r1, d0) was accepted by the database")
		}
	})
}

func TestListFiltersAndPaging(t *testing.T) {
	forEachDB(t, func(t *testing.T, svc *Service, _ *recorder, _ *sql.DB) {
		ctx := context.Background()
		sev := []Severity{SeverityCritical, SeverityWarning}
		ids := map[string]bool{}
		for i := 0; i < 25; i++ {
			a, _, err := svc.Fire(ctx, FireRequest{Org: "o1", Rule: fmt.Sprintf("r%d", i%3), Device: fmt.Sprintf("d%02d", i), Severity: sev[i%2]})
			if err != nil {
				t.Fatal(err)
			}
			ids[a.ID] = true
			if i%5 == 0 {
				if _, err := svc.Ack(ctx, "o1", a.ID, "op", ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		seen := map[string]bool{}
		after, pages := "", 0
		for {
			p, err := svc.List(ctx, "o1", Filter{Limit: 10, After: after})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for i, a := range p.Items {
				if seen[a.ID] {
					t.Fatalf("alert %s on two pages", a.ID)
				}
				seen[a.ID] = true
				if i > 0 && a.ID >= p.Items[i-1].ID {
					t.Fatalf("page not newest first")
				}
			}
			if p.Next == "" {
				break
			}
			after = p.Next
		}
		if len(seen) != 25 || pages != 3 {
			t.Fatalf("paging saw %d alerts in %d pages, want 25 in 3", len(seen), pages)
		}
		count := func(f Filter) int {
			f.Limit = 1000
			p, err := svc.List(ctx, "o1", f)
			if err != nil {
				t.Fatal(err)
			}
			return len(p.Items)
		}
		if n := count(Filter{State: StateAcknowledged}); n != 5 {
			t.Errorf("acknowledged: %d, want 5", n)
		}
		if n := count(Filter{State: StateOpen}); n != 20 {
			t.Errorf("open: %d, want 20", n)
		}
		if n := count(Filter{State: StateActive}); n != 25 {
			t.Errorf("active: %d, want 25", n)
		}
		if n := count(Filter{Severity: SeverityCritical}); n != 13 {
			t.Errorf("critical: %d, want 13", n)
		}
		if n := count(Filter{Rule: "r1"}); n != 8 {
			t.Errorf("rule r1: %d, want 8", n)
		}
		if n := count(Filter{Device: "d07", Rule: "r1"}); n != 1 {
			t.Errorf("device d07: %d, want 1", n)
		}
		if _, err := svc.List(ctx, "o1", Filter{State: "closed"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown state: want ErrInvalid, got %v", err)
		}
	})
}

func TestValidationAndPublishFailure(t *testing.T) {
	forEachDB(t, func(t *testing.T, svc *Service, pub *recorder, _ *sql.DB) {
		ctx := context.Background()
		if _, _, err := svc.Fire(ctx, FireRequest{Org: "o1", Rule: "r1", Device: "d1", Severity: "urgent"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("unknown severity: want ErrInvalid, got %v", err)
		}
		if _, _, err := svc.Fire(ctx, FireRequest{Org: "o1", Device: "d1"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("missing rule: want ErrInvalid, got %v", err)
		}
		pub.fail = errors.New("bus down")
		a, opened, err := svc.Fire(ctx, FireRequest{Org: "o1", Rule: "r1", Device: "d1"})
		if err == nil || !opened {
			t.Fatalf("a publish failure must be reported (and the alert kept): opened=%v err=%v", opened, err)
		}
		pub.fail = nil
		b, opened, err := svc.Fire(ctx, FireRequest{Org: "o1", Rule: "r1", Device: "d1"})
		if err != nil || opened || b.ID != a.ID || b.Severity != SeverityWarning {
			t.Fatalf("retry after a publish failure must count on the stored alert: %v %+v", err, b)
		}
	})
}

func TestJSONShape(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := json.Marshal(Alert{ID: "a1", Org: "o", Rule: "r", Device: "d", Severity: SeverityMajor, State: StateOpen, Count: 3, FirstSeen: now, LastSeen: now})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "rule", "device", "severity", "state", "count", "firstSeen", "lastSeen"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if m["count"].(float64) != 3 || m["firstSeen"] != "2025-01-02T03:04:05Z" {
		t.Errorf("JSON values: %s", b)
	}
}

// TestGroupedWritesIsolateFailures: changes asked for at the same time are
// written together, and one that fails (an unknown alert) neither undoes
// nor blocks the others.
func TestGroupedWritesIsolateFailures(t *testing.T) {
	forEachDB(t, func(t *testing.T, svc *Service, pub *recorder, db *sql.DB) {
		ctx := context.Background()
		const n = 300
		var wg sync.WaitGroup
		var notFound, other atomic.Int64
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if i%10 == 9 {
					_, err = svc.Ack(ctx, "o1", fmt.Sprintf("no-such-alert-%d", i), "tester", "")
					if errors.Is(err, ErrNotFound) {
						notFound.Add(1)
						return
					}
				} else {
					_, _, err = svc.Fire(ctx, FireRequest{Org: "o1", Rule: "storm", Device: fmt.Sprintf("d%03d", i), Severity: SeverityMinor})
				}
				if err != nil {
					other.Add(1)
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if notFound.Load() != n/10 || other.Load() != 0 {
			t.Fatalf("%d not-found answers (want %d), %d other errors", notFound.Load(), n/10, other.Load())
		}
		total, after := 0, ""
		for {
			p, err := svc.List(ctx, "o1", Filter{State: StateActive, Limit: 1000, After: after})
			if err != nil {
				t.Fatal(err)
			}
			total += len(p.Items)
			if p.Next == "" {
				break
			}
			after = p.Next
		}
		if want := n - n/10; total != want {
			t.Fatalf("%d alerts stored, want %d", total, want)
		}
	})
}
