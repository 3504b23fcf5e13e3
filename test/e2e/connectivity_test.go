package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// luhn appends the Luhn check digit to digits.
func luhn(digits string) string {
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return digits + strconv.Itoa((10-sum%10)%10)
}

// The SIM's state and IMEI lock are enforced at CONNECT, and suspending a
// SIM drops the device's connection.
func TestSIMStateAndIMEILockAtConnect(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	dev := a.CreateDevice(t, "agv-12", nil)
	iccid := luhn("894400000000000001")
	imei, other := luhn("35298010000001"), luhn("35298010000002")
	a.MustDo(t, 201, "POST", "/api/v1/connectivity/sims", map[string]any{"iccid": iccid, "imsi": "001010000000001", "label": "AGV 12"}, nil)
	a.MustDo(t, 200, "PATCH", "/api/v1/connectivity/sims/"+iccid, map[string]any{"device": "agv-12", "imeiLock": true}, nil)

	// INVENTORY: refused.
	if _, err := hub.ConnectDevice(t, dev, testutil.DeviceOptions{IMEI: imei}); err == nil {
		t.Fatal("a device whose SIM is in INVENTORY connected")
	}
	a.MustDo(t, 200, "POST", "/api/v1/connectivity/sims/"+iccid+"/state", map[string]any{"state": "ACTIVATED"}, nil)
	if st := a.Do(t, "POST", "/api/v1/connectivity/sims/"+iccid+"/state", map[string]any{"state": "INVENTORY"}, nil); st != 409 {
		t.Fatalf("ACTIVATED -> INVENTORY: %d, want 409", st)
	}
	// ACTIVATED: the first connection binds the IMEI.
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{IMEI: imei})
	c.Disconnect(50)
	testutil.Eventually(t, 5*time.Second, "IMEI bound", func() bool {
		var sim struct {
			IMEI  string `json:"imei"`
			State string `json:"state"`
		}
		a.MustDo(t, 200, "GET", "/api/v1/connectivity/sims/"+iccid, nil, &sim)
		return sim.IMEI == imei && sim.State == "ACTIVATED"
	})
	// Another IMEI: refused.
	if _, err := hub.ConnectDevice(t, dev, testutil.DeviceOptions{IMEI: other}); err == nil {
		t.Fatal("the device connected with another IMEI although the SIM is IMEI-locked")
	}
	// Suspending the SIM drops the live connection within a second.
	// ... and raises an alert.
	testutil.Eventually(t, 5*time.Second, "an unauthorized_imei alert", func() bool {
		var page struct {
			Items []struct {
				Rule     string `json:"rule"`
				Severity string `json:"severity"`
			} `json:"items"`
		}
		a.MustDo(t, 200, "GET", "/api/v1/alerts?device=agv-12&state=open", nil, &page)
		return len(page.Items) == 1 && page.Items[0].Rule == "connectivity:unauthorized_imei"
	})
	// A refused IMEI does not lock the rightful device out.
	var sim map[string]any
	a.MustDo(t, 200, "GET", "/api/v1/connectivity/sims/"+iccid, nil, &sim)
	if sim["state"] != "ACTIVATED" || sim["imei"] != imei {
		t.Fatalf("SIM after a refused IMEI: %v", sim)
	}
	c = hub.MustConnect(t, dev, testutil.DeviceOptions{IMEI: imei})
	a.MustDo(t, 200, "POST", "/api/v1/connectivity/sims/"+iccid+"/state", map[string]any{"state": "SUSPENDED"}, nil)
	testutil.Eventually(t, time.Second, "the device disconnected after its SIM was suspended", func() bool {
		return !c.IsConnectionOpen()
	})
}

// A device group's uplink bitrate holds the device to it through the MQTT
// gateway: measured throughput within ±10% of the configured rate.
func TestDeviceGroupBitrateAtGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about four seconds")
	}
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	const rate = 80_000 // bits per second = 10,000 bytes per second
	dev, iccid := bitrateDevice(t, a, rate)
	c := hub.MustConnect(t, dev, testutil.DeviceOptions{})
	topic := "devices/agv-7/messages/events/"
	payload := []byte(`{"pad":"` + strings.Repeat("x", 960) + `"}`)
	per := len(topic) + len(payload)
	// Spend the burst (one second at the rate) first, then measure the
	// steady rate.
	for i := 0; i < 12; i++ {
		testutil.Publish(t, c, dev.ID, payload)
	}
	start := time.Now()
	sent := 0
	for time.Since(start) < 4*time.Second {
		testutil.Publish(t, c, dev.ID, payload)
		sent += per
	}
	got := float64(sent) * 8 / time.Since(start).Seconds()
	if got < rate*0.9 || got > rate*1.1 {
		t.Fatalf("uplink ran at %.0f bit/s, want %d ±10%%", got, rate)
	}
	t.Logf("uplink %.0f bit/s against a limit of %d", got, rate)
	// Metered usage on the SIM counts every uplink byte the gateway saw.
	var sim struct {
		Usage struct {
			UpBytes    int64 `json:"upBytes"`
			UpMessages int64 `json:"upMessages"`
		} `json:"usage"`
	}
	a.MustDo(t, 200, "GET", "/api/v1/connectivity/sims/"+iccid, nil, &sim)
	if sim.Usage.UpBytes < int64(sent+12*per) || sim.Usage.UpMessages < int64(sent/per+12) {
		t.Fatalf("metered usage %+v, sent at least %d bytes in %d messages", sim.Usage, sent+12*per, sent/per+12)
	}
}

// bitrateDevice registers agv-7 with an activated SIM in a device group
// limited to rate bit/s each way.
func bitrateDevice(t *testing.T, a *testutil.API, rate int) (testutil.Device, string) {
	t.Helper()
	a.MustDo(t, 201, "POST", "/api/v1/sites", map[string]any{"id": "plant-north", "name": "North"}, nil)
	dev := a.CreateDevice(t, "agv-7", map[string]any{"site": "plant-north"})
	iccid := luhn("894400000000000002")
	a.MustDo(t, 201, "POST", "/api/v1/connectivity/sims", map[string]any{"iccid": iccid, "imsi": "001010000000002", "label": "AGV 7"}, nil)
	a.MustDo(t, 200, "PATCH", "/api/v1/connectivity/sims/"+iccid, map[string]any{"device": "agv-7"}, nil)
	a.MustDo(t, 200, "POST", "/api/v1/connectivity/sims/"+iccid+"/state", map[string]any{"state": "ACTIVATED"}, nil)
	a.MustDo(t, 201, "PUT", "/api/v1/connectivity/traffic-classes/silver", map[string]any{"name": "silver", "arp": 8, "qci": 9, "pdb": 300, "pelr": 6}, nil)
	var e any
	st := a.Do(t, "PUT", "/api/v1/connectivity/device-groups/agvs", map[string]any{
		"name": "agvs", "site": "plant-north", "devices": []string{"agv-7"},
		"ipDomain":  map[string]any{"dnn": "internet", "subnet": "172.250.0.0/16", "dns": []string{"8.8.8.8"}, "mtu": 1460},
		"mbrUplink": rate, "mbrDownlink": rate, "trafficClass": "silver",
	}, &e)
	if st != 200 && st != 201 {
		t.Fatalf("create device group: %d %v", st, e)
	}
	return dev, iccid
}

// The downlink bitrate paces what the hub sends a device (here desired-
// property notifications) without dropping or reordering it.
func TestDeviceGroupDownlinkBitrate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about four seconds")
	}
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	const rate = 80_000
	dev, _ := bitrateDevice(t, a, rate)
	td := connectTwin(t, hub, dev)
	const n = 45
	pad := strings.Repeat("x", 960)
	for i := range n {
		a.MustDo(t, 200, "PATCH", "/api/v1/devices/agv-7/twin", map[string]any{"properties": map[string]any{"desired": map[string]any{"pad": pad, "seq": i}}}, nil)
	}
	type arrival struct {
		at   time.Time
		size int
		seq  int
	}
	var got []arrival
	var mu sync.Mutex
	testutil.Eventually(t, 30*time.Second, "every desired notification", func() bool {
		td.mu.Lock()
		for _, m := range td.msgs {
			if !strings.HasPrefix(m.Topic(), "$iothub/twin/PATCH/properties/desired/") {
				continue
			}
			var body struct {
				Seq int `json:"seq"`
			}
			_ = json.Unmarshal(m.Payload(), &body)
			mu.Lock()
			got = append(got, arrival{at: time.Now(), size: len(m.Topic()) + len(m.Payload()), seq: body.Seq})
			mu.Unlock()
		}
		td.msgs = td.msgs[:0]
		td.mu.Unlock()
		return len(got) >= n
	})
	for i, g := range got {
		if g.seq != i {
			t.Fatalf("notification %d carries seq %d: the throttle reordered them", i, g.seq)
		}
	}
	// Past the burst (one second at the rate), the spacing is the rate.
	burst, k := 0, 0
	for k < len(got) && burst < rate/8+2000 {
		burst += got[k].size
		k++
	}
	bytes := 0
	for _, g := range got[k+1:] {
		bytes += g.size
	}
	el := got[len(got)-1].at.Sub(got[k].at).Seconds()
	gotRate := float64(bytes) * 8 / el
	if gotRate < rate*0.9 || gotRate > rate*1.1 {
		t.Fatalf("downlink ran at %.0f bit/s over %d messages, want %d ±10%%", gotRate, len(got)-k-1, rate)
	}
	t.Logf("downlink %.0f bit/s against a limit of %d (%d messages after the burst)", gotRate, rate, len(got)-k-1)
}
