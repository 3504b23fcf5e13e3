package connectivity_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

// backend opens an empty database of one kind.
type backend struct {
	name string
	open func(t testing.TB) (*sql.DB, connectivity.Dialect)
}

func backends(t testing.TB) []backend {
	out := []backend{{"sqlite", openSQLite}}
	if os.Getenv("SHOPFLOOR_TEST_POSTGRES") != "" {
		out = append(out, backend{"postgres", openPostgres})
	}
	return out
}

func openSQLite(t testing.TB) (*sql.DB, connectivity.Dialect) {
	path := filepath.Join(t.TempDir(), "conn.db")
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, connectivity.SQLite
}

// openPostgres gives each test its own schema through search_path.
func openPostgres(t testing.TB) (*sql.DB, connectivity.Dialect) {
	dsn := os.Getenv("SHOPFLOOR_TEST_POSTGRES")
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("conn_test_%d", rand.Uint64()%1e12)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() {
		db.Close()
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	return db, connectivity.Postgres
}

// directory is an in-memory registry of sites and devices.
type directory struct {
	sites, devices map[string]bool
}

func (d directory) SiteExists(_ context.Context, org, site string) (bool, error) {
	return d.sites[org+"/"+site], nil
}
func (d directory) DeviceExists(_ context.Context, org, dev string) (bool, error) {
	return d.devices[org+"/"+dev], nil
}

type alerts struct {
	mu  sync.Mutex
	got []connectivity.Alert
}

func (a *alerts) Raise(_ context.Context, al connectivity.Alert) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, al)
	return nil
}

func (a *alerts) kinds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, al := range a.got {
		out = append(out, al.Kind)
	}
	return out
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	svc    *connectivity.Service
	db     *sql.DB
	dial   connectivity.Dialect
	alerts *alerts
	clock  *clock
	mu     sync.Mutex
	drops  []string
	opts   connectivity.Options
}

func (f *fixture) dropped() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.drops...)
}

func newFixture(t testing.TB, b backend, mod ...func(*connectivity.Options)) *fixture {
	t.Helper()
	db, d := b.open(t)
	f := &fixture{db: db, dial: d, alerts: &alerts{}, clock: &clock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}}
	dir := directory{sites: map[string]bool{"acme/plant": true}, devices: map[string]bool{}}
	for i := range 20 {
		dir.devices[fmt.Sprintf("acme/agv-%d", i)] = true
	}
	f.opts = connectivity.Options{DB: db, Dialect: d, Directory: dir, Alerts: f.alerts, Now: f.clock.Now,
		Disconnect: func(dev, _ string) { f.mu.Lock(); f.drops = append(f.drops, dev); f.mu.Unlock() }}
	for _, m := range mod {
		m(&f.opts)
	}
	svc, err := connectivity.New(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	f.svc = svc
	return f
}

// iccid makes a valid ICCID from a 19-digit body by appending its Luhn digit.
func iccid(n int) string { return withLuhn(fmt.Sprintf("894450%012d", n)) }

func imsi(n int) string { return fmt.Sprintf("00101%010d", n) }

func withLuhn(body string) string {
	sum := 0
	double := true
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return body + string(rune('0'+(10-sum%10)%10))
}

func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantField(t *testing.T, err error, field string, kind error) {
	t.Helper()
	var fe *connectivity.FieldError
	if err == nil || !asField(err, &fe) {
		t.Fatalf("error %v, want a FieldError on %q", err, field)
	}
	if fe.Field != field {
		t.Fatalf("error names field %q, want %q: %v", fe.Field, field, err)
	}
	if kind != nil && !errorsIs(err, kind) {
		t.Fatalf("error %v is not %v", err, kind)
	}
}
