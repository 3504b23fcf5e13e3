package simulate

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
)

const testToken = "sft_test-token"

// fakeHub implements the REST contract the simulator relies on.
type fakeHub struct {
	mu          sync.Mutex
	sites       map[string]string
	devices     map[string]Device
	templates   map[string]TemplateSpec
	creates     int
	conflicts   int
	unauthorize bool
}

func newFakeHub(t *testing.T) (*fakeHub, *httptest.Server) {
	h := &fakeHub{sites: map[string]string{}, devices: map[string]Device{}, templates: map[string]TemplateSpec{}}
	mux := http.NewServeMux()
	auth := func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+testToken {
				http.Error(w, `{"error":"unknown token"}`, http.StatusUnauthorized)
				return
			}
			next(w, r)
		}
	}
	mux.HandleFunc("POST /api/v1/sites", auth(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ ID, Name string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ID == "" || in.Name == "" {
			http.Error(w, `{"error":"bad site"}`, http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.sites[in.ID]; ok {
			http.Error(w, `{"error":"site exists"}`, http.StatusConflict)
			return
		}
		h.sites[in.ID] = in.Name
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(in)
	}))
	mux.HandleFunc("POST /api/v1/templates", auth(func(w http.ResponseWriter, r *http.Request) {
		var in TemplateSpec
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ID == "" || len(in.Telemetry) == 0 {
			http.Error(w, `{"error":"bad template"}`, http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.templates[in.ID]; ok {
			http.Error(w, `{"error":"template exists"}`, http.StatusConflict)
			return
		}
		h.templates[in.ID] = in
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(in)
	}))
	mux.HandleFunc("POST /api/v1/devices", auth(func(w http.ResponseWriter, r *http.Request) {
		var in DeviceSpec
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ID == "" {
			http.Error(w, `{"error":"bad device"}`, http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.sites[in.Site]; !ok {
			http.Error(w, `{"error":"unknown site"}`, http.StatusBadRequest)
			return
		}
		if _, ok := h.templates[in.Template]; in.Template != "" && !ok {
			http.Error(w, `{"error":"unknown template"}`, http.StatusBadRequest)
			return
		}
		if _, ok := h.devices[in.ID]; ok {
			h.conflicts++
			http.Error(w, `{"error":"device exists"}`, http.StatusConflict)
			return
		}
		key := make([]byte, 32)
		rand.Read(key)
		d := Device{ID: in.ID, Site: in.Site, Template: in.Template, Tags: in.Tags, PrimaryKey: base64.StdEncoding.EncodeToString(key)}
		h.devices[in.ID] = d
		h.creates++
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(d)
	}))
	mux.HandleFunc("GET /api/v1/devices/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		d, ok := h.devices[r.PathValue("id")]
		h.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"no such device"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(d)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *fakeHub) key(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.devices[id].PrimaryKey
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestProvisionIdempotent(t *testing.T) {
	hub, srv := newFakeHub(t)
	cfg := Config{URL: srv.URL, Token: testToken, MQTTAddr: "127.0.0.1:1", Sites: []string{"plant-a", "plant-b"}, Devices: 12, Seed: 1, Logger: quietLogger()}
	f1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f1.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if len(hub.sites) != 2 || hub.creates != 12 || hub.conflicts != 0 {
		t.Fatalf("after first provision: %d sites, %d created, %d conflicts", len(hub.sites), hub.creates, hub.conflicts)
	}
	// Again, and from a second process with the same configuration: nothing
	// new is created and every device gets the key the hub holds.
	f2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*Fleet{f1, f2} {
		if err := f.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if s := f.Stats(); s.Provisioned != 12 {
			t.Fatalf("provisioned %d of 12", s.Provisioned)
		}
		for _, d := range f.devices {
			if d.key == "" || d.key != hub.key(d.ID) {
				t.Fatalf("device %s key %q, hub holds %q", d.ID, d.key, hub.key(d.ID))
			}
		}
	}
	if len(hub.sites) != 2 || hub.creates != 12 || hub.conflicts != 24 {
		t.Fatalf("after re-provisioning: %d sites, %d created, %d conflicts", len(hub.sites), hub.creates, hub.conflicts)
	}
	// Both sites get the same mix, and the ids say where a device is.
	kinds := map[string]map[Kind]int{}
	for _, d := range f1.Devices() {
		if !strings.HasPrefix(d.ID, "sim-"+d.Site+"-"+string(d.Kind)+"-") {
			t.Errorf("device id %s does not name site %s and kind %s", d.ID, d.Site, d.Kind)
		}
		if kinds[d.Site] == nil {
			kinds[d.Site] = map[Kind]int{}
		}
		kinds[d.Site][d.Kind]++
	}
	if len(kinds["plant-a"]) != 4 || kinds["plant-a"][KindCNC] != kinds["plant-b"][KindCNC] {
		t.Errorf("uneven fleet: %v", kinds)
	}

	bad, err := New(Config{URL: srv.URL, Token: "wrong", MQTTAddr: "127.0.0.1:1", Devices: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Provision(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong token: err = %v, want ErrUnauthorized", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no devices": {MQTTAddr: "127.0.0.1:1883"},
		"qos 2":      {MQTTAddr: "127.0.0.1:1883", Devices: 1, QoS: 2},
		"no port":    {MQTTAddr: "127.0.0.1", Devices: 1},
		"bad site":   {MQTTAddr: "127.0.0.1:1883", Devices: 1, Sites: []string{"a/b"}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}

// sasBroker is a real MQTT broker that admits a device only with the Azure
// IoT Hub user name and a valid SAS token for its key, and records what
// every device publishes.
type sasBroker struct {
	mochi.HookBase
	keys    func(id string) string // nil admits anyone without checks
	mu      sync.Mutex
	msgs    map[string][][]byte // by client id
	topics  map[string]string
	refused int
}

func (b *sasBroker) ID() string { return "test-sas" }
func (b *sasBroker) Provides(x byte) bool {
	return x == mochi.OnConnectAuthenticate || x == mochi.OnACLCheck || x == mochi.OnPublish
}
func (b *sasBroker) OnACLCheck(*mochi.Client, string, bool) bool { return true }

func (b *sasBroker) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	if b.keys == nil {
		return true
	}
	ok := func() bool {
		host, dev, _, err := azure.ParseUsername(string(pk.Connect.Username))
		if err != nil || dev != cl.ID {
			return false
		}
		sas, err := azure.ParseSAS(string(pk.Connect.Password))
		if err != nil {
			return false
		}
		return azure.VerifySAS(sas, host+"/devices/"+dev, b.keys(dev), time.Now()) == nil
	}()
	if !ok {
		b.mu.Lock()
		b.refused++
		b.mu.Unlock()
	}
	return ok
}

func (b *sasBroker) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs[cl.ID] = append(b.msgs[cl.ID], append([]byte(nil), pk.Payload...))
	b.topics[cl.ID] = pk.TopicName
	return pk, nil
}

func (b *sasBroker) count(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs[id])
}

func startBroker(t *testing.T, hook *sasBroker) (*mochi.Server, string) {
	t.Helper()
	hook.msgs, hook.topics = map[string][][]byte{}, map[string]string{}
	srv := mochi.New(&mochi.Options{Logger: quietLogger()})
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Address()
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFleetPublishesAndReconnects(t *testing.T) {
	hub, rest := newFakeHub(t)
	hook := &sasBroker{keys: hub.key}
	broker, addr := startBroker(t, hook)

	f, err := New(Config{URL: rest.URL, Token: testToken, MQTTAddr: addr, Sites: []string{"plant-a"}, Devices: 8,
		Rate: 20, QoS: 1, Seed: 3, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	devs := f.Devices()
	eventually(t, 20*time.Second, "every device to publish 5 messages", func() bool {
		for _, d := range devs {
			if hook.count(d.ID) < 5 {
				return false
			}
		}
		return true
	})
	if s := f.Stats(); s.Connected != len(devs) || s.Sent < uint64(5*len(devs)) {
		t.Fatalf("stats %+v", s)
	}
	if hook.refused != 0 {
		t.Fatalf("broker refused %d connections", hook.refused)
	}
	want := map[Kind][]string{
		KindCNC:        {"spindle_speed", "spindle_load", "spindle_temp", "vibration", "tool_wear", "state", "part_count"},
		KindCompressor: {"discharge_pressure", "motor_current", "oil_temp", "vibration_rms", "running"},
		KindRobot:      {"j1_torque", "j6_temp", "cycle_time", "program", "state"},
		KindAGV:        {"battery", "speed", "position", "state"},
	}
	hook.mu.Lock()
	for _, d := range devs {
		if got := hook.topics[d.ID]; got != "devices/"+d.ID+"/messages/events/" {
			t.Errorf("%s published on %q", d.ID, got)
		}
		var m map[string]any
		if err := json.Unmarshal(hook.msgs[d.ID][0], &m); err != nil {
			t.Fatalf("%s sent %q: %v", d.ID, hook.msgs[d.ID][0], err)
		}
		ts, ok := m["ts"].(float64)
		if !ok || time.Since(time.UnixMilli(int64(ts))) > time.Minute {
			t.Errorf("%s: ts = %v, want recent unix milliseconds", d.ID, m["ts"])
		}
		for _, field := range want[d.Kind] {
			if _, ok := m[field]; !ok {
				t.Errorf("%s (%s) lacks %s: %v", d.ID, d.Kind, field, m)
			}
		}
	}
	hook.mu.Unlock()

	// Drop one device's connection: it must come back and carry on.
	victim := devs[0].ID
	cl, ok := broker.Clients.Get(victim)
	if !ok {
		t.Fatalf("broker does not know %s", victim)
	}
	cl.Stop(errors.New("test drops the connection"))
	eventually(t, 5*time.Second, "the drop to be noticed", func() bool { return f.Stats().Reconnects >= 1 })
	before := hook.count(victim)
	eventually(t, 20*time.Second, "the device to reconnect and publish again", func() bool {
		return hook.count(victim) >= before+5 && f.Stats().Connected == len(devs)
	})

	cancel()
	select {
	case <-done:
		stopped = true
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if s := f.Stats(); s.Connected != 0 {
		t.Fatalf("after stop %d still counted as connected", s.Connected)
	}
}

// Without a URL the fleet runs against any broker, without credentials.
func TestFleetPlainBroker(t *testing.T) {
	hook := &sasBroker{}
	_, addr := startBroker(t, hook)
	f, err := New(Config{MQTTAddr: addr, Devices: 3, Rate: 50, QoS: 0, Seed: 1, Prefix: "p-"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(context.Background()); err != nil {
		t.Fatalf("provision without URL: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	eventually(t, 10*time.Second, "messages from every device", func() bool {
		for _, d := range f.Devices() {
			if hook.count(d.ID) < 3 {
				return false
			}
		}
		return true
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
