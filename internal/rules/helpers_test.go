package rules

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
)

type testDB struct {
	name, driver string
	open         func(t testing.TB) *sql.DB
}

func sqliteDB(t testing.TB) *sql.DB {
	dsn := "file:" + filepath.Join(t.TempDir(), "t.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func databases() []testDB {
	return []testDB{
		{"sqlite", "sqlite", sqliteDB},
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

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// t0 is a Monday morning.
var t0 = time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)

type harness struct {
	t      testing.TB
	db     *sql.DB
	driver string
	store  *Store
	alerts *alerts.Service
	clock  *fakeClock
	eng    *Engine
	mut    func(*Config)
}

func newHarness(t testing.TB, db *sql.DB, driver string, mut func(*Config)) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, db: db, driver: driver, clock: &fakeClock{t: t0}, mut: mut}
	var err error
	h.alerts, err = alerts.New(ctx, alerts.Config{DB: db, Driver: driver, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.store, err = NewStore(ctx, StoreConfig{DB: db, Driver: driver, Compile: CompileOptions{Anomaly: true}, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.start()
	return h
}

// start builds a new engine over the same database, as after a restart.
func (h *harness) start() {
	h.t.Helper()
	cfg := Config{Store: h.store, Alerts: h.alerts, Now: h.clock.Now}
	if h.mut != nil {
		h.mut(&cfg)
	}
	eng, err := NewEngine(context.Background(), cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.eng = eng
}

func (h *harness) rule(r Rule) Rule {
	h.t.Helper()
	if r.Org == "" {
		r.Org = "o1"
	}
	if r.Name == "" {
		r.Name = r.Condition
	}
	if r.Severity == "" {
		r.Severity = alerts.SeverityMajor
	}
	got, err := h.store.Create(context.Background(), r)
	if err != nil {
		h.t.Fatalf("create rule: %v", err)
	}
	if err := h.eng.Reload(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	return got
}

func (h *harness) send(ms ...*bus.Telemetry) {
	h.t.Helper()
	if err := h.eng.Handle(context.Background(), ms); err != nil {
		h.t.Fatalf("handle: %v", err)
	}
}

func (h *harness) alertList(org string, state alerts.State) []alerts.Alert {
	h.t.Helper()
	var out []alerts.Alert
	after := ""
	for {
		p, err := h.alerts.List(context.Background(), org, alerts.Filter{State: state, After: after, Limit: 1000})
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, p.Items...)
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out
}

func (h *harness) active() []alerts.Alert { return h.alertList("o1", alerts.StateActive) }

// msg builds a telemetry record; kv alternates names and float64 or string
// values. Received is the device time.
func msg(dev string, at time.Time, kv ...any) *bus.Telemetry {
	m := &bus.Telemetry{Org: "o1", Device: dev, TS: at.UnixMilli(), Received: at.UnixMilli(), Num: map[string]float64{}, Str: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		name := kv[i].(string)
		switch v := kv[i+1].(type) {
		case float64:
			m.Num[name] = v
		case int:
			m.Num[name] = float64(v)
		case string:
			m.Str[name] = v
		default:
			panic(fmt.Sprintf("msg: %T", v))
		}
	}
	return m
}

// memHistory is stored telemetry in memory, standing in for the tsdb.
type memHistory struct {
	mu   sync.Mutex
	msgs []*bus.Telemetry
}

func (h *memHistory) add(ms ...*bus.Telemetry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, ms...)
	sort.SliceStable(h.msgs, func(i, j int) bool { return h.msgs[i].TS < h.msgs[j].TS })
}

func (h *memHistory) Scan(ctx context.Context, org, device string, fields []string, from, to time.Time, fn func(*bus.Telemetry) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.msgs {
		if m.Org != org || m.Device != device || m.TS < from.UnixMilli() || m.TS >= to.UnixMilli() {
			continue
		}
		c := *m
		if err := fn(&c); err != nil {
			return err
		}
	}
	return nil
}

func (h *memHistory) Devices(ctx context.Context, org string, from, to time.Time) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, m := range h.msgs {
		if m.Org == org && !seen[m.Device] && m.TS >= from.UnixMilli() && m.TS < to.UnixMilli() {
			seen[m.Device] = true
			out = append(out, m.Device)
		}
	}
	return out, nil
}

type directory map[string]DeviceInfo

func (d directory) DeviceInfo(ctx context.Context, org, device string) (DeviceInfo, error) {
	return d[device], nil
}
