package sdcore_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// recorder is a web console that records every request.
type recorder struct {
	mu      sync.Mutex
	calls   []string // "METHOD path"
	bodies  map[string][]byte
	failing int // answer 503 to this many requests first
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing > 0 {
		r.failing--
		http.Error(w, "database not ready", http.StatusServiceUnavailable)
		return
	}
	if req.Method == http.MethodPost && req.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
		return
	}
	r.calls = append(r.calls, req.Method+" "+req.URL.Path)
	if len(body) > 0 {
		r.bodies[req.URL.Path] = body
	}
	if req.Method == http.MethodDelete && strings.Contains(req.URL.Path, "missing") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (r *recorder) snapshot() ([]string, map[string][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := map[string][]byte{}
	for k, v := range r.bodies {
		b[k] = v
	}
	return append([]string(nil), r.calls...), b
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func setup(t *testing.T, core connectivity.Core, db *sql.DB) *connectivity.Service {
	t.Helper()
	svc, err := connectivity.New(context.Background(), connectivity.Options{DB: db, Dialect: connectivity.SQLite, Core: core,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, SchedulerEvery: time.Hour, FlushEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

func openDB(t *testing.T) *sql.DB {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "c.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func seed(t *testing.T, svc *connectivity.Service) {
	ctx := context.Background()
	chk := func(_ any, _ bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	chk(svc.PutSiteNetwork(ctx, "acme", connectivity.SiteNetwork{Site: "plant", MCC: "001", MNC: "01",
		SmallCells: []connectivity.SmallCell{{ID: "gnb1", TAC: 1, Address: "10.0.0.10", Enabled: true}, {ID: "gnb2", TAC: 2, Address: "10.0.0.11"}},
		EdgeNode:   "upf.plant.example"}))
	chk(svc.PutTrafficClass(ctx, "acme", connectivity.TrafficClass{Name: "platinum", ARP: 6, QCI: 9, PDB: 300, PELR: 6}))
	chk(svc.PutApplication(ctx, "acme", connectivity.Application{Name: "mes", Prefix: "10.20.0.0/24",
		Endpoints: []connectivity.Endpoint{{Port: 443, Protocol: "TCP"}, {Port: 5000, PortEnd: 5010, Protocol: "UDP"}}}))
	chk(svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "agvs", Site: "plant", Devices: []string{"agv-1", "agv-2"},
		IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.250.0.0/16", DNS: []string{"8.8.8.8", "8.8.4.4"}, MTU: 1460},
		MBRUplink: 4_000_000, MBRDownlink: 20_000_000, TrafficClass: "platinum"}))
	chk(svc.PutSlice(ctx, "acme", connectivity.Slice{Name: "robots", Site: "plant", SST: 1, SD: "010203", DeviceGroups: []string{"agvs"},
		DefaultBehavior: connectivity.AllowPublic, Filters: []connectivity.AppFilter{{Application: "mes", Priority: 10, Action: "allow"}},
		MBR: &connectivity.Bitrate{Uplink: 50_000_000, Downlink: 100_000_000, BurstBytes: 1 << 20}}))
	sim := must[connectivity.SIM](t)(svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: "8944500000000000014", IMSI: "001010000000001",
		Ki: "465B5CE8B199B49FAA5F0A2EE238A6BC", OPc: "D4416644F6154936193433DD20A0ACE0"}))
	dev := "agv-1"
	must[connectivity.SIM](t)(svc.UpdateSIM(ctx, "acme", "t", sim.ICCID, connectivity.SIMPatch{Device: &dev}))
	must[connectivity.SIM](t)(svc.SetState(ctx, "acme", "t", sim.ICCID, connectivity.StateActivated))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(got, &v); err != nil {
		t.Fatalf("%s: not JSON: %s", name, got)
	}
	pretty, _ := json.MarshalIndent(v, "", "  ")
	pretty = append(pretty, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, pretty, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once to write it)", err)
	}
	if !bytes.Equal(pretty, want) {
		t.Errorf("%s differs from the golden file:\n got: %s\nwant: %s", name, pretty, want)
	}
}

func TestPayloadsMatchGolden(t *testing.T) {
	rec := &recorder{bodies: map[string][]byte{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	client := must[*sdcore.Client](t)(sdcore.New(srv.URL, nil))
	svc := setup(t, client, openDB(t))
	seed(t, svc)
	if err := svc.PushPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls, bodies := rec.snapshot()
	want := []string{
		"POST /api/subscriber/imsi-001010000000001",
		"POST /config/v1/device-group/acme-agvs",
		"POST /config/v1/network-slice/acme-robots",
	}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	golden(t, "subscriber.json", bodies["/api/subscriber/imsi-001010000000001"])
	golden(t, "device-group.json", bodies["/config/v1/device-group/acme-agvs"])
	golden(t, "network-slice.json", bodies["/config/v1/network-slice/acme-robots"])

	// Suspending removes the subscriber and empties the group.
	must[connectivity.SIM](t)(svc.SetState(context.Background(), "acme", "t", "8944500000000000014", connectivity.StateSuspended))
	if err := svc.PushPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls, bodies = rec.snapshot()
	if got := fmt.Sprint(calls[3:]); got != "[DELETE /api/subscriber/imsi-001010000000001 POST /config/v1/device-group/acme-agvs]" {
		t.Fatalf("after suspend: %s", got)
	}
	if !bytes.Contains(bodies["/config/v1/device-group/acme-agvs"], []byte(`"imsis":[]`)) {
		t.Fatalf("group still lists the IMSI: %s", bodies["/config/v1/device-group/acme-agvs"])
	}
	// Nothing left to push: pushing again sends nothing.
	if err := svc.PushPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, _ := rec.snapshot(); len(c) != 5 {
		t.Fatalf("a second push sent %v", c[5:])
	}
}

func TestRetriesAndReconcilesAfterRestart(t *testing.T) {
	rec := &recorder{bodies: map[string][]byte{}, failing: 3}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	client := must[*sdcore.Client](t)(sdcore.New(srv.URL, nil))
	db := openDB(t)
	svc := setup(t, client, db)
	seed(t, svc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	waitCalls := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, _ := rec.snapshot(); len(c) >= n {
				return
			}
			if time.Now().After(deadline) {
				c, _ := rec.snapshot()
				t.Fatalf("core received %v, want %d calls", c, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCalls(3) // despite the first three 503s
	cancel()
	<-done

	// A restarted service pushes everything again: the core may have lost it.
	svc2 := setup(t, client, db)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { _ = svc2.Run(ctx2); close(done2) }()
	waitCalls(6)
	cancel2()
	<-done2
	calls, _ := rec.snapshot()
	if fmt.Sprint(calls[:3]) != fmt.Sprint(calls[3:6]) {
		t.Fatalf("reconcile pushed %v after %v", calls[3:6], calls[:3])
	}
}

func TestDeleteIsIdempotentAndErrorsAreReported(t *testing.T) {
	rec := &recorder{bodies: map[string][]byte{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := must[*sdcore.Client](t)(sdcore.New(srv.URL, nil))
	if err := c.DeleteSlice(context.Background(), "missing"); err != nil {
		t.Fatalf("deleting a missing slice: %v", err)
	}
	rec.failing = 1
	if err := c.DeleteSlice(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %v", err)
	}
	if _, err := sdcore.New("ftp://x", nil); err == nil {
		t.Fatal("accepted a non-HTTP URL")
	}
}
