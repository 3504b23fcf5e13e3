package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/bench"
	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// mosquitto_pub -l sends every line of its input as a message, as fast as
// the hub acknowledges them, without timestamps: all 200 must be stored and
// queryable, in the order sent (issue 12, case 2: 17 of 200 were stored,
// one per millisecond).
func TestFastUnstampedMessagesAllStored(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("SKIPPING real-client test: mosquitto_pub not installed (apt-get install mosquitto-clients)")
	}
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	d := a.CreateDevice(t, "press-fast", nil)
	tok, err := azure.SASToken("localhost", d.ID, d.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&lines, "{\"seq\":%d}\n", i)
	}
	host, port, _ := strings.Cut(hub.Gateway.Addr().String(), ":")
	start := time.Now().Add(-time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1", "-l",
		"-i", d.ID, "-u", "localhost/"+d.ID+"/?api-version=2021-04-12", "-P", tok,
		"-t", "devices/"+d.ID+"/messages/events/")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub -l: %v\n%s", err, out)
	}
	var pts map[int64][]float64
	testutil.Eventually(t, 20*time.Second, "200 stored points", func() bool {
		pts = rawPoints(t, a, d.ID, "seq", start, time.Now().Add(2*time.Minute))
		return len(pts) >= 200
	})
	if len(pts) != 200 {
		t.Fatalf("%d points stored, want 200", len(pts))
	}
	seen := map[float64]int64{}
	for ts, vs := range pts {
		if len(vs) != 1 {
			t.Fatalf("%d values at %d", len(vs), ts)
		}
		seen[vs[0]] = ts
	}
	for i := 0; i < 200; i++ {
		ts, ok := seen[float64(i)]
		if !ok {
			t.Fatalf("seq %d not stored", i)
		}
		if i > 0 && ts <= seen[float64(i-1)] {
			t.Errorf("seq %d stamped %d, not after seq %d (%d)", i, ts, i-1, seen[float64(i-1)])
		}
	}
}

// The crash harness in CI: ten rounds of SIGKILL and SIGTERM under QoS 1 load
// from four devices (two of them without timestamps), each followed by a
// restart on the same data; nothing acknowledged may be lost or stored
// twice. bench/crash.sh runs the long version (100 rounds).
func TestCrashHarnessShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short")
	}
	bin := buildBinary(t)
	var progress strings.Builder
	data := t.TempDir()
	res, err := bench.RunCrash(context.Background(), bench.CrashOptions{
		Binary: bin, Data: data, Rounds: 10, Devices: 4, Inflight: 16,
		MinRun: 300 * time.Millisecond, MaxRun: 1500 * time.Millisecond,
		Signal: "mixed", Seed: uint64(time.Now().UnixNano()), Progress: &progress,
	})
	t.Log("\n" + progress.String())
	if err != nil {
		t.Fatal(err)
	}
	kills, terms := 0, 0
	for _, r := range res.Rounds {
		if r.Acked == 0 {
			t.Errorf("round %d acknowledged nothing: the harness measured no load", r.Round)
		}
		if r.Signal == "kill" {
			kills++
		} else {
			terms++
		}
	}
	if res.Lost != 0 || res.Duplicated != 0 {
		t.Fatalf("%d of %d acknowledged messages lost, %d duplicated", res.Lost, res.Acked, res.Duplicated)
	}
	// The harness stops the hub it restarted last (it once left it running).
	if pids := processesUsing(data); len(pids) > 0 {
		t.Fatalf("hub processes still running on %s after the harness: %v", data, pids)
	}
	t.Logf("%d rounds (%d SIGKILL, %d SIGTERM), %d acknowledged, 0 lost, 0 duplicated", len(res.Rounds), kills, terms, res.Acked)
}

// A device inventing field names is held at the hub's limits: nothing over
// them is stored, its last error names the limit, and the organization sees
// its usage against the limits (issue 12, case 5: 200 messages of 1,000 new
// names each created 200,000 series).
func TestCardinalityLimits(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.MaxDeviceFields = 50 }})
	a := hub.API()
	d := a.CreateDevice(t, "press-names", nil)
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	for i := 0; i < 20; i++ {
		var b strings.Builder
		b.WriteString(`{"base":1`)
		for j := 0; j < 10; j++ {
			fmt.Fprintf(&b, `,"f%d_%d":%d`, i, j, j)
		}
		b.WriteString("}")
		tok := c.Publish("devices/"+d.ID+"/messages/events/", 1, false, b.String())
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	var u struct {
		Series          int `json:"series"`
		RefusedMessages int `json:"refusedMessages"`
		Limits          struct {
			FieldsPerDevice int `json:"fieldsPerDevice"`
		} `json:"limits"`
	}
	a.MustDo(t, 200, "GET", "/api/v1/usage", nil, &u)
	// base and 10 new fields in each of 4 messages = 41; a fifth would make 51.
	if u.Series != 41 || u.Limits.FieldsPerDevice != 50 || u.RefusedMessages != 16 {
		t.Fatalf("usage %+v, want 41 series, limit 50, 16 refused", u)
	}
	// The command line shows the same.
	t.Setenv("SHOPFLOOR_CONFIG", t.TempDir()+"/none.yaml")
	t.Setenv("SHOPFLOOR_URL", hub.URL)
	t.Setenv("SHOPFLOOR_TOKEN", hub.Token)
	t.Setenv("SHOPFLOOR_ORG", "")
	if out, err := shopfloor(t, "usage"); err != nil || !strings.Contains(out, "series 41 of 5000000") || !strings.Contains(out, "press-names") {
		t.Fatalf("shopfloor usage: %v\n%s", err, out)
	}
	var dev struct {
		LastError string `json:"lastError"`
	}
	testutil.Eventually(t, 10*time.Second, "last error names the limit", func() bool {
		a.MustDo(t, 200, "GET", "/api/v1/devices/"+d.ID, nil, &dev)
		return strings.Contains(dev.LastError, "--max-device-fields")
	})
	// Nothing of a refused message is stored, not even its known field.
	testutil.Eventually(t, 10*time.Second, "accepted fields stored", func() bool {
		return len(rawPoints(t, a, d.ID, "base", time.Now().Add(-time.Minute), time.Now().Add(2*time.Second))) == 4
	})
	if pts := rawPoints(t, a, d.ID, "f4_0", time.Now().Add(-time.Minute), time.Now().Add(2*time.Second)); len(pts) != 0 {
		t.Fatalf("a field of a refused message was stored: %v", pts)
	}
}

// Slow clients cannot take the hub's file descriptors: HTTP connections are
// capped per address and in total, a connection over a cap is closed at
// once, other addresses are still served, and MQTT keeps accepting devices
// (issue 12, case 7: 1,600 slow-body connections exhausted the descriptors
// and MQTT accepts failed).
func TestHTTPConnectionCaps(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.HTTPMaxConns, c.HTTPMaxConnsPerAddr = 60, 20 }})
	a := hub.API()
	d := a.CreateDevice(t, "press-busy", nil)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	before := fds()
	addr := strings.TrimPrefix(hub.URL, "http://")
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	refused := 0
	for i := 0; i < 300; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		open = append(open, c)
		// Headers of a large upload, then a trickle that never ends.
		fmt.Fprintf(c, "POST /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{", hub.Token)
	}
	for _, c := range open {
		// A refused connection reads EOF at once; an open one times out.
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			refused++ // closed by the hub
		}
	}
	if refused < 300-20 {
		t.Errorf("%d of 300 connections from one address were closed; the cap is 20", refused)
	}
	// This process holds the 300 client ends too; the hub's ends are what
	// the cap bounds.
	if n := fds() - before - 300; n > 20+20 {
		t.Errorf("the hub holds %d descriptors for 300 slow connections; the cap is 20", n)
	}
	// Another address is served.
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	hc := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", hub.URL+"/api/v1/devices/"+d.ID, nil)
	req.Header.Set("Authorization", "Bearer "+hub.Token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("a client at another address was not served: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a client at another address: %d", resp.StatusCode)
	}
	// MQTT still accepts and stores.
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	if tok := c.Publish("devices/"+d.ID+"/messages/events/", 1, false, `{"busy":1}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT publish while HTTP is under load: %v", tok.Error())
	}
}

// processesUsing lists the processes whose command line names dir.
func processesUsing(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmd), dir) && e.Name() != strconv.Itoa(os.Getpid()) {
			out = append(out, e.Name())
		}
	}
	return out
}
