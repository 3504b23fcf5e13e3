package export_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/prompb"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/egress"
	"github.com/shopfloor/shopfloor/internal/export"
)

// busConsumer is the hub's adapter, repeated here over a real embedded bus.
type busConsumer struct{ b *bus.Bus }

func (c busConsumer) durable(name string) string {
	return strings.TrimSuffix(c.b.StreamName(), "_TELEMETRY") + "_" + name
}
func (c busConsumer) Consume(ctx context.Context, name string, h bus.Handler) error {
	return c.b.Consume(ctx, name, bus.ConsumeOptions{}, h)
}
func (c busConsumer) Pending(ctx context.Context, name string) (uint64, error) {
	cons, err := c.b.JetStream().Consumer(ctx, c.b.StreamName(), c.durable(name))
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
func (c busConsumer) Delete(ctx context.Context, name string) error {
	err := c.b.JetStream().DeleteConsumer(ctx, c.b.StreamName(), c.durable(name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}

type directory map[string]export.DeviceInfo

func (d directory) DeviceInfo(_ context.Context, _, device string) (export.DeviceInfo, error) {
	return d[device], nil
}

type env struct {
	t      *testing.T
	dir    string
	bus    *bus.Bus
	db     *sql.DB
	egress *egress.Policy
	m      *export.Manager
	// stop ends the running manager.
	stop func()
}

// loopback is the egress policy of the tests' receivers (httptest servers
// on loopback), as an operator would open a site's range.
var loopback = egress.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, nil)

func newEnv(t *testing.T) *env { return newEnvEgress(t, loopback) }

// newEnvEgress starts a manager with the egress policy p (nil: the
// default, internal addresses refused).
func newEnvEgress(t *testing.T, p *egress.Policy) *env {
	t.Helper()
	dir := t.TempDir()
	b, err := bus.New(t.Context(), bus.Config{Dir: filepath.Join(dir, "bus")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	db, err := sql.Open("sqlite", filepath.Join(dir, "x.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, dir: dir, bus: b, db: db, egress: p}
	e.start()
	return e
}

func (e *env) start() {
	m, err := export.New(e.t.Context(), export.Config{DB: e.db, Driver: "sqlite", Bus: busConsumer{e.bus}, NATS: e.bus.Conn(),
		SubjectPrefix: "shopfloor", Dir: filepath.Join(e.dir, "exports"), PollEvery: 50 * time.Millisecond, Egress: e.egress,
		Directory: directory{"press-7": {Site: "plant-north", Template: "press", Tags: map[string]string{"line": "3"}},
			"press-8": {Site: "plant-south", Template: "press"}}})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	e.m = m
	e.stop = func() { cancel(); <-done }
	e.t.Cleanup(e.stop)
}

func (e *env) publish(org, device string, ts int64, num map[string]float64) {
	e.t.Helper()
	if err := e.bus.Publish(e.t.Context(), &bus.Telemetry{Org: org, Device: device, TS: ts, Received: ts, Num: num}); err != nil {
		e.t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebhookFilterEnrichSigned(t *testing.T) {
	e := newEnv(t)
	var (
		mu   sync.Mutex
		recs []export.Record
		bad  []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Shopfloor-Signature") != export.Sign("k3y", b) {
			bad = append(bad, r.Header.Get("X-Shopfloor-Signature"))
		}
		var body export.WebhookBody
		if err := json.Unmarshal(b, &body); err != nil {
			bad = append(bad, err.Error())
		}
		recs = append(recs, body.Records...)
	}))
	defer srv.Close()
	_, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "hist", Type: export.TypeWebhook, URL: srv.URL, Secret: "k3y",
		Filter: export.Filter{Site: "plant-north", Fields: []string{"temperature"}}, Enrich: true})
	if err != nil {
		t.Fatal(err)
	}
	e.publish("acme", "press-7", 1000, map[string]float64{"temperature": 70, "pressure": 4})
	e.publish("acme", "press-8", 1001, map[string]float64{"temperature": 71}) // other site
	e.publish("globex", "press-7", 1002, map[string]float64{"temperature": 72})
	e.publish("acme", "press-7", 1003, map[string]float64{"pressure": 5}) // no wanted field
	e.publish("acme", "press-7", 1004, map[string]float64{"temperature": 73})
	eventually(t, "two records", func() bool { mu.Lock(); defer mu.Unlock(); return len(recs) >= 2 })
	time.Sleep(200 * time.Millisecond) // nothing else may arrive
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("bad requests: %v", bad)
	}
	if len(recs) != 2 || recs[0].TS != 1000 || recs[1].TS != 1004 {
		t.Fatalf("records: %+v", recs)
	}
	r := recs[0]
	if r.Site != "plant-north" || r.Template != "press" || r.Tags["line"] != "3" || r.Values["temperature"] != 70 || len(r.Values) != 1 {
		t.Fatalf("record not filtered or enriched: %+v", r)
	}
}

func TestRemoteWrite(t *testing.T) {
	e := newEnv(t)
	type sample struct {
		labels map[string]string
		v      float64
		ts     int64
	}
	var (
		mu  sync.Mutex
		got []sample
		bad []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			bad = append(bad, "headers")
		}
		raw, err := snappy.Decode(nil, b)
		if err != nil {
			bad = append(bad, err.Error())
			return
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			bad = append(bad, err.Error())
			return
		}
		for _, ts := range req.Timeseries {
			l := map[string]string{}
			for _, x := range ts.Labels {
				l[x.Name] = x.Value
			}
			for _, s := range ts.Samples {
				got = append(got, sample{l, s.Value, s.Timestamp})
			}
		}
	}))
	defer srv.Close()
	if _, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "prom", Type: export.TypeRemoteWrite, URL: srv.URL, Enrich: true}); err != nil {
		t.Fatal(err)
	}
	e.publish("acme", "press-7", 5000, map[string]float64{"temperature": 70.5, "spindle.rpm": 1200})
	e.publish("acme", "press-7", 6000, map[string]float64{"temperature": 71.5})
	eventually(t, "three samples", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 3 })
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	var temps []float64
	for _, s := range got {
		if s.labels["device"] != "press-7" || s.labels["site"] != "plant-north" || s.labels["line"] != "3" {
			t.Fatalf("labels: %v", s.labels)
		}
		switch s.labels["__name__"] {
		case "temperature":
			temps = append(temps, s.v)
		case "spindle_rpm":
			if s.v != 1200 || s.ts != 5000 {
				t.Fatalf("rpm sample %+v", s)
			}
		default:
			t.Fatalf("unexpected series %v", s.labels)
		}
	}
	if len(temps) != 2 || temps[0] != 70.5 || temps[1] != 71.5 {
		t.Fatalf("temperature samples %v", temps)
	}
}

func TestNATSSubject(t *testing.T) {
	e := newEnv(t)
	sub, err := e.bus.Conn().SubscribeSync("shopfloor.exports.acme.line3")
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "feed", Type: export.TypeNATS, Subject: "line3"})
	if err != nil {
		t.Fatal(err)
	}
	// The consumer starts asynchronously; wait until it exists before the
	// live subscription would miss nothing anyway (the consumer replays).
	e.publish("acme", "press-7", 7000, map[string]float64{"temperature": 70})
	msg, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r export.Record
	if err := json.Unmarshal(msg.Data, &r); err != nil || r.Device != "press-7" || r.Values["temperature"] != 70 || r.TS != 7000 {
		t.Fatalf("message %s (%v)", msg.Data, err)
	}
	eventually(t, "zero lag", func() bool {
		st, err := e.m.Get(t.Context(), "acme", d.ID)
		return err == nil && st.Lag == 0 && st.Delivered == 1
	})
	if _, err := e.m.Get(t.Context(), "globex", d.ID); !errors.Is(err, export.ErrNotFound) {
		t.Fatalf("another org's export: %v", err)
	}
	if _, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "evil", Type: export.TypeNATS, Subject: "x.>"}); !errors.Is(err, export.ErrInvalid) {
		t.Fatalf("wildcard subject accepted: %v", err)
	}
	// An organization id that is not one subject token would own a piece
	// of another organization's space (shopfloor.exports.acme.x.… is acme's).
	if _, err := e.m.Create(t.Context(), export.Destination{Org: "acme.x", Name: "feed", Type: export.TypeNATS, Subject: "y"}); !errors.Is(err, export.ErrInvalid) || !errors.Is(err, bus.ErrSubjectNotAllowed) {
		t.Fatalf("an organization id with a dot: %v", err)
	}
}

// TestEgressWallOnCreate: without an allow-list, a webhook or remote-write
// destination naming an internal address is refused when it is created.
func TestEgressWallOnCreate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	e := newEnvEgress(t, nil)
	for i, d := range []export.Destination{
		{Type: export.TypeWebhook, URL: srv.URL + "/ingest"},
		{Type: export.TypeWebhook, URL: "http://[::ffff:127.0.0.1]:" + u.Port() + "/ingest"},
		{Type: export.TypeWebhook, URL: "http://[::1]:" + u.Port() + "/ingest"},
		{Type: export.TypeRemoteWrite, URL: "http://169.254.169.254/api/v1/write"},
		{Type: export.TypeRemoteWrite, URL: "http://10.0.0.9:9090/api/v1/write"},
	} {
		d.Org, d.Name = "acme", fmt.Sprintf("x%d", i)
		_, err := e.m.Create(t.Context(), d)
		if !errors.Is(err, export.ErrInvalid) || !errors.Is(err, egress.ErrNotAllowed) {
			t.Errorf("%s: want ErrInvalid for the address, got %v", d.URL, err)
			continue
		}
		if !strings.Contains(err.Error(), "target address not allowed by the hub's egress policy") {
			t.Errorf("%s: message %q", d.URL, err)
		}
	}
	if _, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "cloud", Type: export.TypeWebhook, URL: "https://example.com/ingest"}); err != nil {
		t.Errorf("a public name: %v", err)
	}
	// With the operator's allow-list the same loopback receiver is fine.
	open := newEnvEgress(t, loopback)
	if _, err := open.m.Create(t.Context(), export.Destination{Org: "acme", Name: "local", Type: export.TypeWebhook, URL: srv.URL + "/ingest"}); err != nil {
		t.Errorf("allow-listed loopback: %v", err)
	}
}

// lastError waits for the destination to report a delivery error.
func (e *env) lastError(org, id string) string {
	e.t.Helper()
	var last string
	eventually(e.t, "a delivery error", func() bool {
		st, err := e.m.Get(e.t.Context(), org, id)
		last = st.LastError
		return err == nil && last != ""
	})
	return last
}

// TestEgressWallOnDelivery: a host name that resolves to loopback passes
// the check on create (it is a name) and is refused on connection, after
// resolution; the receiver gets nothing and the tenant's last error names
// neither the resolved address nor the dial.
func TestEgressWallOnDelivery(t *testing.T) {
	var hits sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Store(r.URL.Path, true) }))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	e := newEnvEgress(t, nil)
	d, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "named", Type: export.TypeWebhook, URL: "http://localhost:" + u.Port() + "/ingest"})
	if err != nil {
		t.Fatalf("a host name is checked on connection, not on create: %v", err)
	}
	e.publish("acme", "press-7", 1000, map[string]float64{"temperature": 70})
	last := e.lastError("acme", d.ID)
	if !strings.Contains(last, "target address not allowed by the hub's egress policy") {
		t.Errorf("last error %q", last)
	}
	for _, leak := range []string{"127.0.0.1", "[::1]", "dial", "connect:"} {
		if strings.Contains(last, leak) {
			t.Errorf("last error %q shows %q", last, leak)
		}
	}
	if _, ok := hits.Load("/ingest"); ok {
		t.Fatal("the loopback receiver was reached")
	}
}

// TestRedirectToMetadataRefused: an allowed receiver that redirects (307,
// which keeps the POST) to the cloud metadata address is not followed
// there.
func TestRedirectToMetadataRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	e := newEnv(t) // loopback allowed: the first hop passes
	d, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "hop", Type: export.TypeWebhook, URL: srv.URL + "/ingest"})
	if err != nil {
		t.Fatal(err)
	}
	e.publish("acme", "press-7", 1000, map[string]float64{"temperature": 70})
	if last := e.lastError("acme", d.ID); !strings.Contains(last, "target address not allowed by the hub's egress policy") || strings.Contains(last, "169.254") {
		t.Errorf("last error %q", last)
	}
}

func readNDJSON(t *testing.T, path string) []export.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []export.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r export.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// allFileRecords reads the rotated files in order, then current.ndjson.
func allFileRecords(t *testing.T, dir string) (recs []export.Record, files int) {
	t.Helper()
	rot, _ := filepath.Glob(filepath.Join(dir, "export-*.ndjson"))
	for _, p := range rot {
		recs = append(recs, readNDJSON(t, p)...)
	}
	if _, err := os.Stat(filepath.Join(dir, "current.ndjson")); err == nil {
		recs = append(recs, readNDJSON(t, filepath.Join(dir, "current.ndjson"))...)
	}
	return recs, len(rot)
}

// The file destination rotates, and a restart of the manager resumes from
// the bus without losing a record.
func TestFileRotationAndRestartResumes(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Create(t.Context(), export.Destination{Org: "acme", Name: "ndjson", Type: export.TypeFile, MaxBytes: 400, MaxFiles: 100}); err != nil {
		t.Fatal(err)
	}
	dir := e.m.FileDir("acme", "ndjson")
	for i := range 20 {
		e.publish("acme", "press-7", int64(10000+i), map[string]float64{"temperature": float64(i)})
	}
	eventually(t, "20 records on disk", func() bool { r, _ := allFileRecords(t, dir); return len(r) >= 20 })
	e.stop()
	for i := 20; i < 40; i++ { // while the exporter is down
		e.publish("acme", "press-7", int64(10000+i), map[string]float64{"temperature": float64(i)})
	}
	e.start()
	eventually(t, "40 records on disk", func() bool { r, _ := allFileRecords(t, dir); return len(r) >= 40 })
	recs, files := allFileRecords(t, dir)
	if files < 2 {
		t.Fatalf("%d rotated files; 40 records over 400-byte files should rotate", files)
	}
	seen := map[int64]bool{}
	for _, r := range recs {
		seen[r.TS] = true
	}
	for i := range 40 {
		if !seen[int64(10000+i)] {
			t.Fatalf("record %d lost across the restart", i)
		}
	}
}
