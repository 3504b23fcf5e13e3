package e2e

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// A saturated hub keeps the latency of a device whose traffic class has
// the higher priority. The hub stores one message at a time
// (--ingest-inflight 1) so that a few dozen publishers overload it on any
// machine; many devices of a low-priority class (ARP 15) publish as fast
// as their PUBACKs allow while one device of a high-priority class (ARP 1)
// publishes too, and the medians of publish→PUBACK are compared in the
// same run. The high-priority device waits for at most the message being
// stored; the others queue behind each other.
func TestTrafficClassPriorityUnderOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("overload run")
	}
	const bulk = 96
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.IngestInflight = 1 }})
	a := hub.API()
	a.MustDo(t, 201, "POST", "/api/v1/sites", map[string]any{"id": "plant", "name": "Plant"}, nil)
	safety := a.CreateDevice(t, "agv-safety", map[string]any{"site": "plant"})
	var bulkDevs []testutil.Device
	var bulkIDs []string
	for i := range bulk {
		d := a.CreateDevice(t, fmt.Sprintf("logger-%02d", i), map[string]any{"site": "plant"})
		bulkDevs, bulkIDs = append(bulkDevs, d), append(bulkIDs, d.ID)
	}
	for _, c := range []struct {
		name string
		arp  int
	}{{"safety", 1}, {"bulk", 15}} {
		a.MustDo(t, 201, "PUT", "/api/v1/connectivity/traffic-classes/"+c.name, map[string]any{"arp": c.arp, "qci": 9, "pdb": 100, "pelr": 6}, nil)
	}
	group := func(name string, devices []string) {
		a.MustDo(t, 201, "PUT", "/api/v1/connectivity/device-groups/"+name, map[string]any{
			"site": "plant", "devices": devices, "trafficClass": name,
			"ipDomain":  map[string]any{"dnn": "internet", "subnet": "172.250.0.0/16", "mtu": 1460},
			"mbrUplink": 1_000_000_000, "mbrDownlink": 1_000_000_000,
		}, nil)
	}
	group("safety", []string{safety.ID})
	group("bulk", bulkIDs)

	payload := []byte(`{"temperature":21.5,"rpm":1450,"state":"running"}`)
	publish := func(c mqtt.Client, id string) (time.Duration, error) {
		t0 := time.Now()
		tk := c.Publish("devices/"+id+"/messages/events/", 1, false, payload)
		if !tk.WaitTimeout(15 * time.Second) {
			return 0, fmt.Errorf("%s: no PUBACK within 15s", id)
		}
		return time.Since(t0), tk.Error()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lows []time.Duration
	for _, d := range bulkDevs {
		c := hub.MustConnect(t, d, testutil.DeviceOptions{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				el, err := publish(c, d.ID)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				lows = append(lows, el)
				mu.Unlock()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	sc := hub.MustConnect(t, safety, testutil.DeviceOptions{})
	testutil.Eventually(t, 15*time.Second, "the hub to be saturated", func() bool { return hub.Gateway.Stats().Queued >= bulk/2 })
	var highs []time.Duration
	for range 40 {
		el, err := publish(sc, safety.ID)
		if err != nil {
			t.Fatal(err)
		}
		highs = append(highs, el)
	}
	mu.Lock()
	low := median(lows)
	mu.Unlock()
	high := median(highs)
	t.Logf("median publish→PUBACK, hub saturated by %d devices of ARP 15: ARP 1 %s, ARP 15 %s", bulk, high, low)
	// Expected a factor near bulk/2; 2 leaves room for a loaded machine.
	if high*2 > low {
		t.Fatalf("the ARP 1 device's median %s is not well below the ARP 15 devices' %s", high, low)
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
