package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
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
	"github.com/shopfloor/shopfloor/internal/simulate"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// store is what the fake hub keeps: keys, and every f0 value per device.
type store struct {
	mu   sync.Mutex
	keys map[string]string
	f0   map[string][]float64
}

// hook admits devices with a valid SAS token (when keys are set) and
// stores the f0 of every message, like a hub's ingest would.
type hook struct {
	mochi.HookBase
	st       *store
	checkSAS bool
}

func (h *hook) ID() string { return "bench-test" }
func (h *hook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnPublish
}
func (h *hook) OnACLCheck(*mochi.Client, string, bool) bool { return true }
func (h *hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	if !h.checkSAS {
		return true
	}
	host, dev, _, err := azure.ParseUsername(string(pk.Connect.Username))
	if err != nil || dev != cl.ID {
		return false
	}
	sas, err := azure.ParseSAS(string(pk.Connect.Password))
	if err != nil {
		return false
	}
	h.st.mu.Lock()
	key := h.st.keys[dev]
	h.st.mu.Unlock()
	return azure.VerifySAS(sas, host+"/devices/"+dev, key, time.Now()) == nil
}
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	var m struct{ F0 *float64 }
	if h.st != nil && json.Unmarshal(pk.Payload, &m) == nil && m.F0 != nil {
		h.st.mu.Lock()
		h.st.f0[cl.ID] = append(h.st.f0[cl.ID], *m.F0)
		h.st.mu.Unlock()
	}
	return pk, nil
}

func startBroker(t *testing.T, h *hook) string {
	t.Helper()
	srv := mochi.New(&mochi.Options{Logger: quiet(), InlineClient: true})
	if err := srv.AddHook(h, nil); err != nil {
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
	return ln.Address()
}

// fakeREST serves the part of the hub's REST API the benchmark uses.
func fakeREST(t *testing.T, st *store, token string) string {
	mux := http.NewServeMux()
	authed := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token }
	mux.HandleFunc("POST /api/v1/sites", func(w http.ResponseWriter, r *http.Request) {
		if !authed(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{}`)
	})
	mux.HandleFunc("POST /api/v1/devices", func(w http.ResponseWriter, r *http.Request) {
		if !authed(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var d simulate.DeviceSpec
		json.NewDecoder(r.Body).Decode(&d)
		st.mu.Lock()
		defer st.mu.Unlock()
		if _, ok := st.keys[d.ID]; ok {
			w.WriteHeader(http.StatusConflict)
			return
		}
		k := make([]byte, 32)
		rand.Read(k)
		st.keys[d.ID] = base64.StdEncoding.EncodeToString(k)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": d.ID, "primaryKey": st.keys[d.ID]})
	})
	mux.HandleFunc("GET /api/v1/devices/{id}", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "primaryKey": st.keys[r.PathValue("id")]})
	})
	mux.HandleFunc("GET /api/v1/devices/{id}/latest", func(w http.ResponseWriter, r *http.Request) {
		if !authed(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		st.mu.Lock()
		vals := st.f0[r.PathValue("id")]
		st.mu.Unlock()
		out := map[string]any{"device": map[string]string{"id": r.PathValue("id")}, "values": []any{}}
		if len(vals) > 0 {
			out["values"] = []any{map[string]any{"field": "f0", "t": time.Now().UnixMilli(), "value": vals[len(vals)-1]}}
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /api/v1/devices/{id}/telemetry", func(w http.ResponseWriter, r *http.Request) {
		// Only what the benchmark asks: the count of f0 samples, here in
		// two buckets.
		if r.URL.Query().Get("agg") != "count" || r.URL.Query().Get("names") != "f0" || r.URL.Query().Get("step") == "" {
			http.Error(w, `{"error":"unexpected query"}`, http.StatusBadRequest)
			return
		}
		st.mu.Lock()
		n := len(st.f0[r.PathValue("id")])
		st.mu.Unlock()
		pts := []map[string]any{{"t": 1, "v": n / 2}, {"t": 2, "v": n - n/2}}
		json.NewEncoder(w).Encode(map[string]any{"series": []any{map[string]any{"field": "f0", "points": pts}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// saneResult checks what must hold for any clean run.
func saneResult(t *testing.T, r Result) {
	t.Helper()
	if r.Errors != 0 {
		t.Fatalf("errors: %v (first: %s)", r.ErrorsByKind, r.FirstError)
	}
	if r.Sent == 0 || r.Acked != r.Sent {
		t.Fatalf("sent %d, acked %d", r.Sent, r.Acked)
	}
	if r.Connected != r.Connections {
		t.Fatalf("connected %d of %d", r.Connected, r.Connections)
	}
	if want := float64(r.Acked) / r.Seconds; r.Throughput < want*0.999 || r.Throughput > want*1.001 {
		t.Fatalf("throughput %g, acked/seconds %g", r.Throughput, want)
	}
	for name, l := range map[string]Latency{"ack": r.Ack, "queryable": r.Queryable} {
		if l.Count == 0 {
			t.Fatalf("%s latency has no samples", name)
		}
		if !(0 < l.P50 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max*1.008 && l.Max < 30000) {
			t.Fatalf("%s latency not ordered or absurd: %+v", name, l)
		}
	}
	if !r.DrainComplete {
		t.Fatal("drain did not complete")
	}
}

func TestBenchPlainBroker(t *testing.T) {
	st := &store{keys: map[string]string{}, f0: map[string][]float64{}}
	addr := startBroker(t, &hook{st: st})
	res, err := Run(context.Background(), Options{Target: TargetMQTT, MQTTAddr: addr, Connections: 8, Duration: 2 * time.Second,
		QoS: 1, Fields: 5, Inflight: 4, PayloadSize: 120, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	saneResult(t, res)
	if res.Delivered != res.Acked || res.Queryable.Count != res.Delivered || res.Ack.Count != res.Acked {
		t.Fatalf("delivered %d, queryable samples %d, ack samples %d, acked %d", res.Delivered, res.Queryable.Count, res.Ack.Count, res.Acked)
	}
	if res.PayloadBytes != 120 {
		t.Fatalf("payload %d bytes, want padded to 120", res.PayloadBytes)
	}
	// The broker saw every message of every connection once, in order.
	st.mu.Lock()
	defer st.mu.Unlock()
	var total int
	for id, vals := range st.f0 {
		if strings.HasSuffix(id, "subscriber") {
			continue
		}
		for i, v := range vals {
			if v != float64(i) {
				t.Fatalf("%s: message %d carries f0=%g", id, i, v)
			}
		}
		total += len(vals)
	}
	if uint64(total) != res.Sent {
		t.Fatalf("broker got %d messages, bench sent %d", total, res.Sent)
	}
	var buf bytes.Buffer
	WriteText(&buf, res)
	if !strings.Contains(buf.String(), "msg/s acknowledged") {
		t.Fatalf("text output:\n%s", buf.String())
	}
}

func TestBenchRateAndQoS0(t *testing.T) {
	addr := startBroker(t, &hook{})
	res, err := Run(context.Background(), Options{Target: TargetMQTT, MQTTAddr: addr, Connections: 10, Duration: 2 * time.Second,
		Rate: 500, QoS: 0, Fields: 3, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// Pacing never sends more than asked; under a loaded machine it may
	// send less.
	if res.Sent > 1100 || res.Sent < 300 {
		t.Fatalf("sent %d at 500 msg/s for 2 s", res.Sent)
	}
	if res.Ack.Count != 0 || res.Acked != res.Sent {
		t.Fatalf("QoS 0 must not measure acks: %+v", res.Ack)
	}
	if res.Queryable.Count == 0 {
		t.Fatal("no deliveries measured")
	}
}

func TestBenchShopfloorTarget(t *testing.T) {
	st := &store{keys: map[string]string{}, f0: map[string][]float64{}}
	addr := startBroker(t, &hook{st: st, checkSAS: true})
	url := fakeREST(t, st, "tok")
	res, err := Run(context.Background(), Options{Target: TargetShopfloor, MQTTAddr: addr, URL: url, Token: "tok",
		Connections: 6, Duration: 2 * time.Second, QoS: 1, Fields: 5, Verify: 2, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	saneResult(t, res)
	if res.VerifiedDevices != 2 || res.VerifiedFound != res.VerifiedAcked || res.VerifyError != "" {
		t.Fatalf("verify: %d devices, %d of %d found, %q", res.VerifiedDevices, res.VerifiedFound, res.VerifiedAcked, res.VerifyError)
	}
	if len(st.keys) != 6 || st.keys["bench-0001"] == "" {
		t.Fatalf("provisioned %v", st.keys)
	}
	// A second run reuses the devices (409 → GET) and still authenticates.
	res, err = Run(context.Background(), Options{Target: TargetShopfloor, MQTTAddr: addr, URL: url, Token: "tok",
		Connections: 6, Duration: 500 * time.Millisecond, QoS: 1, Logger: quiet()})
	if err != nil || res.Connected != 6 {
		t.Fatalf("second run: %v, connected %d", err, res.Connected)
	}

	_, err = Run(context.Background(), Options{Target: TargetShopfloor, MQTTAddr: addr, URL: url, Token: "wrong",
		Connections: 1, Duration: time.Second, Logger: quiet()})
	if !errors.Is(err, simulate.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestBenchRefusedConnections(t *testing.T) {
	st := &store{keys: map[string]string{}, f0: map[string][]float64{}}
	addr := startBroker(t, &hook{st: st, checkSAS: true}) // no keys: every CONNECT is refused
	_, err := Run(context.Background(), Options{Target: TargetMQTT, MQTTAddr: addr, Connections: 2, Duration: time.Second, Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "bad user name or password") && !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("err = %v, want the broker's refusal", err)
	}
}

func TestOptionsRejected(t *testing.T) {
	for name, o := range map[string]Options{
		"target":    {Target: "kafka", MQTTAddr: "127.0.0.1:1", Connections: 1, Duration: time.Second},
		"duration":  {Target: TargetMQTT, MQTTAddr: "127.0.0.1:1", Connections: 1},
		"no token":  {Target: TargetShopfloor, MQTTAddr: "127.0.0.1:1", URL: "http://x", Connections: 1, Duration: time.Second},
		"qos 2":     {Target: TargetMQTT, MQTTAddr: "127.0.0.1:1", Connections: 1, Duration: time.Second, QoS: 2},
		"addr":      {Target: TargetMQTT, MQTTAddr: "localhost", Connections: 1, Duration: time.Second},
		"inflight":  {Target: TargetMQTT, MQTTAddr: "127.0.0.1:1", Connections: 1, Duration: time.Second, Inflight: 5000},
		"neg. rate": {Target: TargetMQTT, MQTTAddr: "127.0.0.1:1", Connections: 1, Duration: time.Second, Rate: -1},
	} {
		if _, err := Run(context.Background(), o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
}

func TestJSONUint(t *testing.T) {
	for in, want := range map[string]uint64{`{"ts":17,"f0":42,"f1":3.5}`: 42, `{"f0":0}`: 0} {
		if got, ok := jsonUint([]byte(in), `"f0":`); !ok || got != want {
			t.Errorf("%s: %d %v", in, got, ok)
		}
	}
	if _, ok := jsonUint([]byte(`{"f1":1}`), `"f0":`); ok {
		t.Error("found a missing key")
	}
}

func BenchmarkPayload(b *testing.B) {
	r := &runner{o: Options{Fields: 5, PayloadSize: 200}}
	values := make([]float64, 5)
	buf := make([]byte, 0, 256)
	rng := mrand.New(mrand.NewPCG(1, 2))
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		buf = r.payload(buf[:0], 1700000000000, seq, rng, values)
		seq++
	}
}
