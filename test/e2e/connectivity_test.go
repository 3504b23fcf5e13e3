package e2e

import (
	"strconv"
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
