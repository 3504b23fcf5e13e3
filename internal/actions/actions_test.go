package actions

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/egress"
)

// loopback is the egress policy of the tests' receivers (httptest servers
// on loopback), as an operator would open a site's range.
var loopback = egress.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, nil)

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
			base := os.Getenv("SHOPFLOOR_TEST_POSTGRES")
			if base == "" {
				t.Skip("SHOPFLOOR_TEST_POSTGRES not set: skipping the PostgreSQL run")
			}
			var rnd [6]byte
			_, _ = rand.Read(rnd[:])
			schema := "actions_" + hex.EncodeToString(rnd[:])
			admin, err := sql.Open("pgx", base)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if db, err := sql.Open("pgx", base); err == nil {
					_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
					db.Close()
				}
			})
			u, _ := url.Parse(base)
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			db, err := sql.Open("pgx", u.String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}},
	}
}

// rulesSource is a rule store standing in for rules.Store.
type rulesSource map[string][]Spec

func (r rulesSource) RuleActions(ctx context.Context, org, rule string) ([]Spec, error) {
	s, ok := r[rule]
	if !ok {
		return nil, errors.New("rule not found")
	}
	return s, nil
}

// receiver is a webhook endpoint that checks signatures, dedupes by
// Idempotency-Key and fails its first failFirst requests.
type receiver struct {
	secret    string
	mu        sync.Mutex
	failFirst int
	slowFirst time.Duration // process the first request, then answer too late
	requests  int
	keys      []string
	processed map[string]int
	badSig    int
	bodies    [][]byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests++
	n := rc.requests
	key := r.Header.Get("Idempotency-Key")
	rc.keys = append(rc.keys, key)
	m := hmac.New(sha256.New, []byte(rc.secret))
	m.Write(body)
	if r.Header.Get("X-Shopfloor-Signature") != "sha256="+hex.EncodeToString(m.Sum(nil)) || r.Header.Get("X-Shopfloor-Delivery") != key {
		rc.badSig++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if n <= rc.failFirst {
		rc.mu.Unlock()
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	if rc.processed == nil {
		rc.processed = map[string]int{}
	}
	if rc.processed[key] == 0 { // a receiver that dedupes
		rc.bodies = append(rc.bodies, body)
	}
	rc.processed[key]++
	slow := rc.slowFirst
	rc.slowFirst = 0
	rc.mu.Unlock()
	if slow > 0 {
		time.Sleep(slow)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) state() (requests int, processed map[string]int, keys []string, bad int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p := map[string]int{}
	for k, v := range rc.processed {
		p[k] = v
	}
	return rc.requests, p, append([]string(nil), rc.keys...), rc.badSig
}

type rig struct {
	db     *sql.DB
	driver string
	alerts *alerts.Service
	disp   *Dispatcher
	src    rulesSource
}

func newRig(t *testing.T, db *sql.DB, driver string, src rulesSource, mut func(*Config)) *rig {
	t.Helper()
	ctx := context.Background()
	r := &rig{db: db, driver: driver, src: src}
	pubs := &lazyPublisher{}
	var err error
	r.alerts, err = alerts.New(ctx, alerts.Config{DB: db, Driver: driver, Publisher: pubs})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DB: db, Driver: driver, Source: src, Recorder: r.alerts, Egress: loopback, Subjects: bus.NewSubjects(""),
		BaseBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, PollEvery: 10 * time.Millisecond}
	if mut != nil {
		mut(&cfg)
	}
	r.disp, err = New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pubs.p = r.disp
	return r
}

// lazyPublisher breaks the construction cycle alerts → dispatcher → alerts.
type lazyPublisher struct{ p alerts.Publisher }

func (l *lazyPublisher) PublishAlert(ctx context.Context, ev alerts.AlertEvent) error {
	return l.p.PublishAlert(ctx, ev)
}

func (r *rig) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.disp.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) history(t *testing.T, org, id string) []alerts.Change {
	a, err := r.alerts.Get(context.Background(), org, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []alerts.Change
	for _, c := range a.History {
		if c.Kind == alerts.KindAction {
			out = append(out, c)
		}
	}
	return out
}

func TestWebhookSignatureRetryAndIdempotency(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			rc := &receiver{secret: "s3cret", failFirst: 2}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			r := newRig(t, d.open(t), d.driver, rulesSource{"r1": {{Type: TypeWebhook, URL: srv.URL + "/hook", Secret: "s3cret"}}}, nil)
			r.run(t)
			ctx := context.Background()
			a, _, err := r.alerts.Fire(ctx, alerts.FireRequest{Org: "o1", Rule: "r1", Device: "m1", Severity: alerts.SeverityMajor})
			if err != nil {
				t.Fatal(err)
			}
			// A re-fire and a repeated event add no delivery.
			if _, _, err := r.alerts.Fire(ctx, alerts.FireRequest{Org: "o1", Rule: "r1", Device: "m1"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the webhook to be delivered", func() bool { return len(r.history(t, "o1", a.ID)) == 1 })
			reqs, processed, keys, bad := rc.state()
			want := a.ID + ":opened:0"
			if reqs != 3 || bad != 0 || len(processed) != 1 || processed[want] != 1 {
				t.Fatalf("requests=%d bad signatures=%d processed=%v, want 3 requests and %s processed once", reqs, bad, processed, want)
			}
			for _, k := range keys {
				if k != want {
					t.Fatalf("the key changed across retries: %v", keys)
				}
			}
			var body struct {
				Delivery string       `json:"delivery"`
				Event    string       `json:"event"`
				Alert    alerts.Alert `json:"alert"`
			}
			if err := json.Unmarshal(rc.bodies[0], &body); err != nil || body.Delivery != want || body.Event != "opened" || body.Alert.ID != a.ID || body.Alert.Device != "m1" {
				t.Fatalf("body: %v %+v", err, body)
			}
			h := r.history(t, "o1", a.ID)
			if !strings.Contains(h[0].Note, "delivered after 3 attempt(s)") || !strings.Contains(h[0].Note, want) {
				t.Fatalf("outcome on the alert: %+v", h)
			}
			p, err := r.disp.Deliveries(ctx, "o1", ListFilter{})
			if err != nil || len(p.Items) != 1 || p.Items[0].State != StateDone || p.Items[0].Attempts != 3 {
				t.Fatalf("deliveries: %v %+v", err, p)
			}
		})
	}
}

func TestLostResponseIsNotProcessedTwice(t *testing.T) {
	rc := &receiver{secret: "k", slowFirst: 500 * time.Millisecond}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	d := databases()[0]
	r := newRig(t, d.open(t), d.driver, rulesSource{"r1": {{Type: TypeWebhook, URL: srv.URL, Secret: "k", Timeout: "100ms"}}}, nil)
	r.run(t)
	a, _, err := r.alerts.Fire(context.Background(), alerts.FireRequest{Org: "o1", Rule: "r1", Device: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delivery to succeed", func() bool { return len(r.history(t, "o1", a.ID)) == 1 })
	reqs, processed, _, _ := rc.state()
	if reqs < 2 || len(processed) != 1 {
		t.Fatalf("the sender must retry the same key after a timeout: requests=%d processed=%v", reqs, processed)
	}
	for k, n := range processed {
		if n != reqs {
			t.Fatalf("every attempt must carry the same key %s: %d of %d", k, n, reqs)
		}
	}
}

func TestDeadLettersAndRetry(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			rc := &receiver{secret: "k", failFirst: 1000}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no such hook", http.StatusNotFound) }))
			defer gone.Close()
			src := rulesSource{"r1": {{Type: TypeWebhook, URL: srv.URL, Secret: "k"}, {Type: TypeWebhook, URL: gone.URL, Secret: "k"}}}
			r := newRig(t, d.open(t), d.driver, src, func(c *Config) { c.MaxAttempts = 3 })
			r.run(t)
			ctx := context.Background()
			a, _, err := r.alerts.Fire(ctx, alerts.FireRequest{Org: "o1", Rule: "r1", Device: "m1"})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "two dead letters", func() bool {
				p, err := r.disp.DeadLetters(ctx, "o1", 0, "")
				return err == nil && len(p.Items) == 2
			})
			p, _ := r.disp.DeadLetters(ctx, "o1", 0, "")
			byAttempts := map[int]Delivery{}
			for _, x := range p.Items {
				byAttempts[x.Attempts] = x
			}
			if x, ok := byAttempts[3]; !ok || !strings.Contains(x.LastError, "503") {
				t.Fatalf("the failing receiver must be tried 3 times: %+v", p.Items)
			}
			if x, ok := byAttempts[1]; !ok || !strings.Contains(x.LastError, "404") {
				t.Fatalf("a 404 is not retried: %+v", p.Items)
			}
			if other, _ := r.disp.DeadLetters(ctx, "o2", 0, ""); len(other.Items) != 0 {
				t.Fatal("another organization sees the dead letters")
			}
			waitFor(t, "failures recorded on the alert", func() bool { return len(r.history(t, "o1", a.ID)) == 2 })
			for _, c := range r.history(t, "o1", a.ID) {
				if !strings.Contains(c.Note, "failed") {
					t.Fatalf("outcome: %+v", c)
				}
			}
			// The receiver recovers; the dead letter is sent again with its key.
			rc.mu.Lock()
			rc.failFirst = 0
			rc.mu.Unlock()
			if err := r.disp.Retry(ctx, "o2", byAttempts[3].ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("retry from another organization: %v", err)
			}
			if err := r.disp.Retry(ctx, "o1", byAttempts[3].ID); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the retried delivery", func() bool {
				_, processed, _, _ := rc.state()
				return processed[byAttempts[3].ID] == 1
			})
		})
	}
}

func TestOutboxSurvivesRestart(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			rc := &receiver{secret: "k"}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			db := d.open(t)
			src := rulesSource{"r1": {{Type: TypeWebhook, URL: srv.URL, Secret: "k"}}}
			r := newRig(t, db, d.driver, src, nil)
			// The dispatcher is not running: the alert fires and the process stops.
			a, _, err := r.alerts.Fire(context.Background(), alerts.FireRequest{Org: "o1", Rule: "r1", Device: "m1"})
			if err != nil {
				t.Fatal(err)
			}
			// A new process over the same database delivers it.
			r2 := newRig(t, db, d.driver, src, nil)
			r2.run(t)
			waitFor(t, "the delivery after restart", func() bool {
				_, processed, _, _ := rc.state()
				return processed[a.ID+":opened:0"] == 1
			})
		})
	}
}

type fakeDevices struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeDevices) InvokeMethod(ctx context.Context, org, device, method string, payload []byte, timeout time.Duration) (int, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("method %s/%s %s %s", org, device, method, payload))
	if method == "missing" {
		return 404, nil, nil
	}
	return 200, []byte(`{}`), nil
}

func (f *fakeDevices) PatchDesired(ctx context.Context, org, device string, patch []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("desired %s/%s %s", org, device, patch))
	return nil
}

func (f *fakeDevices) SendC2D(ctx context.Context, org, device string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("c2d %s/%s %s", org, device, payload))
	return nil
}

type fakeBus struct {
	mu       sync.Mutex
	subjects []string
	data     [][]byte
}

func (f *fakeBus) Publish(ctx context.Context, subject string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subjects = append(f.subjects, subject)
	f.data = append(f.data, data)
	return nil
}

func TestDeviceAndBusActions(t *testing.T) {
	devs, nats := &fakeDevices{}, &fakeBus{}
	src := rulesSource{"r1": {
		{Type: TypeDevice, Op: OpMethod, Method: "stop", Payload: json.RawMessage(`{"reason":"overheat"}`)},
		{Type: TypeDevice, Op: OpDesired, Device: "plc-7", Payload: json.RawMessage(`{"fan":"max"}`)},
		{Type: TypeDevice, Op: OpC2D, Payload: json.RawMessage(`"check me"`), On: []alerts.EventType{alerts.EventAcknowledged}},
		{Type: TypeBus, Subject: "shopfloor.exports.{org}.alerts.{device}.{event}", On: []alerts.EventType{alerts.EventOpened, alerts.EventResolved}},
		{Type: TypeDevice, Op: OpMethod, Method: "missing"},
	}}
	d := databases()[0]
	r := newRig(t, d.open(t), d.driver, src, func(c *Config) { c.Devices, c.Bus = devs, nats })
	r.run(t)
	ctx := context.Background()
	a, _, err := r.alerts.Fire(ctx, alerts.FireRequest{Org: "o1", Rule: "r1", Device: "cnc.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.alerts.Ack(ctx, "o1", a.ID, "op", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.alerts.Resolve(ctx, "o1", a.ID, "op", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all actions", func() bool { return len(r.history(t, "o1", a.ID)) == 6 })
	devs.mu.Lock()
	calls := strings.Join(devs.calls, "\n")
	devs.mu.Unlock()
	for _, want := range []string{`method o1/cnc.1 stop {"reason":"overheat"}`, `desired o1/plc-7 {"fan":"max"}`, `c2d o1/cnc.1 "check me"`, `method o1/cnc.1 missing`} {
		if !strings.Contains(calls, want) {
			t.Errorf("missing device call %q in\n%s", want, calls)
		}
	}
	nats.mu.Lock()
	subjects := strings.Join(nats.subjects, " ")
	nats.mu.Unlock()
	if !strings.Contains(subjects, "shopfloor.exports.o1.alerts.cnc_1.opened") || !strings.Contains(subjects, "shopfloor.exports.o1.alerts.cnc_1.resolved") || len(nats.subjects) != 2 {
		t.Errorf("bus subjects: %s", subjects)
	}
	dead, _ := r.disp.DeadLetters(ctx, "o1", 0, "")
	if len(dead.Items) != 1 || dead.Items[0].Attempts != 1 || !strings.Contains(dead.Items[0].LastError, "404") {
		t.Errorf("a 404 method is a dead letter at once: %+v", dead.Items)
	}
}

func TestSpecValidation(t *testing.T) {
	for _, s := range []Spec{
		{Type: "email"},
		{Type: TypeWebhook, URL: "ftp://x"},
		{Type: TypeWebhook, URL: "https://x", Timeout: "forever"},
		{Type: TypeWebhook, URL: "https://x", Headers: map[string]string{"idempotency-key": "1"}},
		{Type: TypeWebhook, URL: "https://x", On: []alerts.EventType{"closed"}},
		{Type: TypeDevice, Op: OpMethod},
		{Type: TypeDevice, Op: OpDesired, Payload: json.RawMessage(`[1]`)},
		{Type: TypeDevice, Op: "reboot"},
		{Type: TypeBus, Subject: "alerts.>"},
	} {
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: want ErrInvalid, got %v", s, err)
		}
	}
	if err := (Spec{Type: TypeWebhook, URL: "https://example.com/x", Secret: "k"}).Validate(); err != nil {
		t.Error(err)
	}
	// Known answer: printf body | openssl dgst -sha256 -hmac k
	if got := Sign("k", []byte("body")); got != "sha256="+knownHMAC {
		t.Errorf("signature: %s", got)
	}
}

const knownHMAC = "c6d811ef3aeb02437cd423f1abe13209041864630bdc4e2c04def5c7b0031a23"

// TestBusActionWalledAtDispatch: a bus action outside its organization's
// subject space — stored before the wall existed, so it was never checked
// on save — is refused when it runs, ends as a dead letter that says where
// the organization may publish, and nothing is published.
func TestBusActionWalledAtDispatch(t *testing.T) {
	nats := &fakeBus{}
	src := rulesSource{"r1": {
		{Type: TypeBus, Subject: "$SYS.REQ.SERVER.PING"},
		{Type: TypeBus, Subject: "$JS.API.STREAM.DELETE.SHOPFLOOR_TELEMETRY"},
		{Type: TypeBus, Subject: "shopfloor.telemetry"},
		{Type: TypeBus, Subject: "shopfloor.alerts.o2"},
		{Type: TypeBus, Subject: "shopfloor.exports.o2.feed"},
		{Type: TypeBus, Subject: "shopfloor.exports.{device}.x"}, // a device named like another org
		{Type: TypeBus, Subject: "shopfloor.exports.o1.alerts.{device}"},
	}}
	d := databases()[0]
	r := newRig(t, d.open(t), d.driver, src, func(c *Config) { c.Bus = nats })
	r.run(t)
	ctx := context.Background()
	a, _, err := r.alerts.Fire(ctx, alerts.FireRequest{Org: "o1", Rule: "r1", Device: "o2"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every action", func() bool { return len(r.history(t, "o1", a.ID)) == len(src["r1"]) })
	nats.mu.Lock()
	published := append([]string(nil), nats.subjects...)
	nats.mu.Unlock()
	if len(published) != 1 || published[0] != "shopfloor.exports.o1.alerts.o2" {
		t.Fatalf("published on %v; only shopfloor.exports.o1.alerts.o2 is the organization's", published)
	}
	dead, err := r.disp.DeadLetters(ctx, "o1", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(dead.Items) != len(src["r1"])-1 {
		t.Fatalf("dead letters: %+v", dead.Items)
	}
	for _, x := range dead.Items {
		if x.Attempts != 1 || !strings.Contains(x.LastError, "outside the organization's subject space") || !strings.Contains(x.LastError, "shopfloor.exports.o1.") {
			t.Errorf("dead letter %s: attempts %d, error %q", x.Action, x.Attempts, x.LastError)
		}
	}
	if _, err := New(ctx, Config{DB: d.open(t), Driver: d.driver, Bus: nats}); err == nil {
		t.Error("a dispatcher with bus actions and no subject policy was built")
	}
}

// TestCheckTargets is the save-time wall the rules store applies.
func TestCheckTargets(t *testing.T) {
	subjects := bus.NewSubjects("")
	for _, s := range []Spec{
		{Type: TypeBus, Subject: "$SYS.x"},
		{Type: TypeBus, Subject: "$JS.API.STREAM.LIST"},
		{Type: TypeBus, Subject: "shopfloor.telemetry"},
		{Type: TypeBus, Subject: "shopfloor.alerts.o2"},
		{Type: TypeBus, Subject: "shopfloor.exports.o2.feed"},
		{Type: TypeBus, Subject: "shopfloor.exports.{device}.x"},
		{Type: TypeBus, Subject: "shopfloor.exports.{org}x.y"},
		{Type: TypeBus, Subject: "factory.alerts.{device}"},
		{Type: TypeWebhook, URL: "http://127.0.0.1:9000/hook"},
		{Type: TypeWebhook, URL: "http://169.254.169.254/latest/meta-data/"},
		{Type: TypeWebhook, URL: "http://[::ffff:10.0.0.1]/"},
	} {
		err := s.CheckTargets("o1", subjects, nil)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", s.Label(), err)
			continue
		}
		if s.Type == TypeBus && (!errors.Is(err, bus.ErrSubjectNotAllowed) || !strings.Contains(err.Error(), "shopfloor.exports.o1.")) {
			t.Errorf("%s: the refusal does not say where to publish: %v", s.Label(), err)
		}
		if s.Type == TypeWebhook && !errors.Is(err, egress.ErrNotAllowed) {
			t.Errorf("%s: want the egress refusal, got %v", s.Label(), err)
		}
	}
	for _, s := range []Spec{
		{Type: TypeBus, Subject: "shopfloor.exports.o1.alerts"},
		{Type: TypeBus, Subject: "shopfloor.exports.{org}.alerts.{device}.{event}"},
		{Type: TypeWebhook, URL: "https://example.com/hook"},
		{Type: TypeWebhook, URL: "http://localhost:9000/hook"}, // a name: checked when dialed
		{Type: TypeDevice, Op: OpC2D, Payload: json.RawMessage(`"x"`)},
	} {
		if err := s.CheckTargets("o1", subjects, nil); err != nil {
			t.Errorf("%s: %v", s.Label(), err)
		}
	}
	if err := (Spec{Type: TypeWebhook, URL: "http://127.0.0.1:9000/hook"}).CheckTargets("o1", subjects, loopback); err != nil {
		t.Errorf("allow-listed loopback: %v", err)
	}
	if err := (Spec{Type: TypeBus, Subject: "shopfloor.exports.o1.x"}).CheckTargets("o1", nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("a bus action on a hub without bus actions: %v", err)
	}
}

// TestWebhookEgressWall: with the default policy a webhook whose host name
// resolves to loopback never reaches the receiver; the delivery is a dead
// letter at its first attempt and its error names neither the address the
// name resolved to nor how the dial failed.
func TestWebhookEgressWall(t *testing.T) {
	rc := &receiver{secret: "k"}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	src := rulesSource{"r1": {
		{Type: TypeWebhook, URL: "http://localhost:" + u.Port() + "/hook", Secret: "k"},
		{Type: TypeWebhook, URL: srv.URL + "/hook", Secret: "k"}, // stored before the wall: a literal loopback address
	}}
	d := databases()[0]
	r := newRig(t, d.open(t), d.driver, src, func(c *Config) { c.Egress = nil })
	r.run(t)
	ctx := context.Background()
	a, _, err := r.alerts.Fire(ctx, alerts.FireRequest{Org: "o1", Rule: "r1", Device: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both deliveries", func() bool { return len(r.history(t, "o1", a.ID)) == 2 })
	if reqs, _, _, _ := rc.state(); reqs != 0 {
		t.Fatalf("the loopback receiver got %d requests", reqs)
	}
	dead, _ := r.disp.DeadLetters(ctx, "o1", 0, "")
	if len(dead.Items) != 2 {
		t.Fatalf("dead letters: %+v", dead.Items)
	}
	for _, x := range dead.Items {
		if x.Attempts != 1 || !strings.Contains(x.LastError, "target address not allowed by the hub's egress policy") {
			t.Errorf("%s: attempts %d, error %q", x.Action, x.Attempts, x.LastError)
		}
		if strings.Contains(x.LastError, "dial") || strings.Contains(x.LastError, "[::1]") || strings.Contains(x.LastError, "connect:") {
			t.Errorf("%s: the error shows network detail: %q", x.Action, x.LastError)
		}
	}
	for _, c := range r.history(t, "o1", a.ID) {
		if strings.Contains(c.Note, "dial") {
			t.Errorf("the alert's history shows network detail: %q", c.Note)
		}
	}
}
