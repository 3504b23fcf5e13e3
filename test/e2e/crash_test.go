package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

const crashToken = "sft_crash-test-admin-token-000000000000"

// buildBinary compiles cmd/shopfloor once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shopfloor")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/shopfloor")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build shopfloor: %v", err)
	}
	return bin
}

type proc struct {
	cmd  *exec.Cmd
	http string
	mqtt string
}

func startServe(t *testing.T, bin, data string, extra ...string) *proc {
	t.Helper()
	p := &proc{http: testutil.FreeAddr(t), mqtt: testutil.FreeAddr(t)}
	args := append([]string{"serve", "--data", data, "--http", p.http, "--mqtt", p.mqtt, "--mqtts", testutil.FreeAddr(t), "--https", "", "--log-level", "warn"}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "SHOPFLOOR_ADMIN_TOKEN="+crashToken)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _, _ = p.cmd.Process.Wait() })
	testutil.Eventually(t, 60*time.Second, "shopfloor serve ready", func() bool {
		resp, err := http.Get("http://" + p.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// connect connects a device to the hub process over MQTT with a SAS token.
func (p *proc) connect(t *testing.T, d testutil.Device) mqtt.Client {
	t.Helper()
	tok, err := azure.SASToken("localhost", d.ID, d.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + p.mqtt).SetClientID(d.ID).
		SetUsername("localhost/" + d.ID + "/?api-version=2021-04-12").SetPassword(tok).
		SetAutoReconnect(false).SetCleanSession(true)
	c := mqtt.NewClient(opts)
	if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("connect %s: %v", d.ID, tk.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// kill -9 the hub mid-ingest, restart it: every acknowledged message is
// queryable, exactly once.
func TestKill9KeepsAcknowledgedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	p := startServe(t, bin, data)
	a := &testutil.API{Base: "http://" + p.http, Token: crashToken}

	const devices = 8
	var devs []testutil.Device
	for i := 0; i < devices; i++ {
		devs = append(devs, a.CreateDevice(t, fmt.Sprintf("crash-%02d", i), nil))
	}
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	var mu sync.Mutex
	acked := map[string][]int64{}
	total := 0
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for _, d := range devs {
		c := p.connect(t, d)
		wg.Add(1)
		go func(id string, c mqtt.Client) {
			defer wg.Done()
			// Up to 16 publishes in flight per device, as real clients pipeline.
			sem := make(chan struct{}, 16)
			var inner sync.WaitGroup
			for i := int64(0); ctx.Err() == nil && c.IsConnectionOpen(); i++ {
				ts := base.UnixMilli() + i
				sem <- struct{}{}
				tk := c.Publish("devices/"+id+"/messages/events/", 1, false, fmt.Sprintf(`{"ts":%d,"seq":%d}`, ts, i))
				inner.Add(1)
				go func() {
					defer inner.Done()
					defer func() { <-sem }()
					if tk.WaitTimeout(5*time.Second) && tk.Error() == nil {
						mu.Lock()
						acked[id] = append(acked[id], ts)
						total++
						mu.Unlock()
					}
				}()
			}
			inner.Wait()
		}(d.ID, c)
	}
	testutil.Eventually(t, 60*time.Second, "3000 acknowledged messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total >= 3000
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = p.cmd.Process.Wait()
	stop()
	wg.Wait()
	t.Logf("killed the hub with %d acknowledged messages", total)

	p2 := startServe(t, bin, data)
	a2 := &testutil.API{Base: "http://" + p2.http, Token: crashToken}
	for id, list := range acked {
		var pts map[int64][]float64
		testutil.Eventually(t, 30*time.Second, "acknowledged messages of "+id, func() bool {
			pts = rawPoints(t, a2, id, "seq", base.Add(-time.Second), base.Add(time.Hour))
			for _, ts := range list {
				if len(pts[ts]) == 0 {
					return false
				}
			}
			return true
		})
		for ts, vs := range pts {
			if len(vs) != 1 {
				t.Fatalf("%s: %d points at ts %d, want exactly one", id, len(vs), ts)
			}
			if want := float64(ts - base.UnixMilli()); vs[0] != want {
				t.Fatalf("%s: value %v at ts %d, want %v", id, vs[0], ts, want)
			}
		}
	}
}

// The anomaly detectors save what they learned periodically: after kill -9
// a restarted hub scores a device at once instead of learning its 400
// warm-up updates again.
func TestKill9KeepsAnomalyModels(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	p := startServe(t, bin, data, "--anomaly-snapshot", "1s")
	a := &testutil.API{Base: "http://" + p.http, Token: crashToken}
	dev := a.CreateDevice(t, "pump-9", nil)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	i := 0
	publish := func(c mqtt.Client, n int) {
		for end := i + n; i < end; i++ {
			testutil.Publish(t, c, dev.ID, map[string]any{"ts": base.Add(time.Duration(i) * time.Second).UnixMilli(), "vibration": 2 + 0.05*math.Sin(float64(i)/7)})
		}
	}
	type status struct {
		Seen            bool `json:"seen"`
		Warm            bool `json:"warm"`
		WarmupRemaining int  `json:"warmupRemaining"`
	}
	var st status
	publish(p.connect(t, dev), 420)
	testutil.Eventually(t, 20*time.Second, "the detector warm", func() bool {
		a.MustDo(t, 200, "GET", "/api/v1/devices/pump-9/anomaly", nil, &st)
		return st.Warm
	})
	warmAt := time.Now()
	snap := filepath.Join(data, "anomaly.snapshot")
	testutil.Eventually(t, 10*time.Second, "a snapshot taken after warm-up", func() bool {
		fi, err := os.Stat(snap)
		return err == nil && fi.ModTime().After(warmAt)
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = p.cmd.Process.Wait()

	p2 := startServe(t, bin, data)
	a2 := &testutil.API{Base: "http://" + p2.http, Token: crashToken}
	publish(p2.connect(t, dev), 1)
	testutil.Eventually(t, 20*time.Second, "the restarted hub scores the device", func() bool {
		a2.MustDo(t, 200, "GET", "/api/v1/devices/pump-9/anomaly", nil, &st)
		return st.Seen
	})
	if !st.Warm || st.WarmupRemaining != 0 {
		t.Fatalf("after kill -9 and restart: %+v, want the learned model (warm)", st)
	}
}
