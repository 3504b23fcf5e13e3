package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

var pressTemplate = map[string]any{
	"id": "press", "name": "Hydraulic press",
	"telemetry": []any{
		map[string]any{"name": "temperature", "schema": "double", "unit": "degC", "min": -40, "max": 150},
		map[string]any{"name": "running", "schema": "boolean"},
	},
	"properties": []any{
		map[string]any{"name": "firmware", "schema": "string"},
		map[string]any{"name": "setpoint", "schema": "double", "writable": true, "min": 0, "max": 120},
	},
	"commands": []any{map[string]any{"name": "reboot", "request": "object"}},
}

type violations struct {
	Telemetry int64  `json:"telemetry"`
	Reported  int64  `json:"reported"`
	LastError string `json:"lastError"`
}

// twinDevice is a paho device that collects what the hub sends it.
type twinDevice struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs []mqtt.Message
}

func connectTwin(t *testing.T, hub *testutil.Hub, d testutil.Device) *twinDevice {
	t.Helper()
	td := &twinDevice{c: hub.MustConnect(t, d, testutil.DeviceOptions{})}
	for _, f := range []string{"$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"} {
		tk := td.c.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) {
			td.mu.Lock()
			td.msgs = append(td.msgs, m)
			td.mu.Unlock()
		})
		if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tk.Error())
		}
	}
	return td
}

func (td *twinDevice) wait(t *testing.T, prefix string) mqtt.Message {
	t.Helper()
	var got mqtt.Message
	testutil.Eventually(t, 10*time.Second, "a message on "+prefix, func() bool {
		td.mu.Lock()
		defer td.mu.Unlock()
		for i, m := range td.msgs {
			if strings.HasPrefix(m.Topic(), prefix) {
				got = m
				td.msgs = append(td.msgs[:i], td.msgs[i+1:]...)
				return true
			}
		}
		return false
	})
	return got
}

// report sends a reported-properties patch and waits for the hub's 204.
func (td *twinDevice) report(t *testing.T, rid int, body string) {
	t.Helper()
	tk := td.c.Publish(fmt.Sprintf("$iothub/twin/PATCH/properties/reported/?$rid=%d", rid), 0, false, body)
	if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("publish reported: %v", tk.Error())
	}
	if m := td.wait(t, fmt.Sprintf("$iothub/twin/res/204/?$rid=%d", rid)); m == nil {
		t.Fatal("no response")
	}
}

// TestTemplateValidation: telemetry and reported properties that break a
// device's template are flagged and counted, and still stored; good ones
// are not flagged; a writable property is acknowledged the Plug and Play way.
func TestTemplateValidation(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	api := hub.API()
	api.MustDo(t, http.StatusCreated, "POST", "/api/v1/templates", pressTemplate, nil)
	good := api.CreateDevice(t, "press-good", map[string]any{"template": "press"})
	bad := api.CreateDevice(t, "press-bad", map[string]any{"template": "press"})
	gd := connectTwin(t, hub, good)
	bd := connectTwin(t, hub, bad)

	// Plug and Play writable property: the service sets desired, the device
	// acknowledges with {"value","ac","av"} in reported.
	api.MustDo(t, http.StatusOK, "PATCH", "/api/v1/devices/press-good/twin", map[string]any{"properties": map[string]any{"desired": map[string]any{"setpoint": 72.5}}}, nil)
	var desired map[string]any
	if err := json.Unmarshal(gd.wait(t, "$iothub/twin/PATCH/properties/desired/").Payload(), &desired); err != nil {
		t.Fatal(err)
	}
	av := desired["$version"]
	gd.report(t, 1, fmt.Sprintf(`{"firmware":"2.4.1","setpoint":{"value":%v,"ac":200,"av":%v}}`, desired["setpoint"], av))
	var tw struct {
		Properties struct {
			Reported map[string]any `json:"reported"`
		} `json:"properties"`
	}
	api.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/press-good/twin", nil, &tw)
	if want := map[string]any{"value": 72.5, "ac": 200.0, "av": av}; !reflect.DeepEqual(tw.Properties.Reported["setpoint"], want) {
		t.Fatalf("reported setpoint %v, want the PnP acknowledgement %v", tw.Properties.Reported["setpoint"], want)
	}

	bd.report(t, 1, `{"firmware":3,"color":"red"}`)
	testutil.Publish(t, gd.c, good.ID, map[string]any{"temperature": 71.5, "running": true})
	testutil.Publish(t, bd.c, bad.ID, map[string]any{"temperature": 900})

	var v violations
	testutil.Eventually(t, 15*time.Second, "the bad device's telemetry to be flagged", func() bool {
		api.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/press-bad/template-violations", nil, &v)
		return v.Telemetry == 1
	})
	if v.Reported != 1 || !strings.Contains(v.LastError, "above the maximum 150") {
		t.Fatalf("bad device violations %+v", v)
	}
	var dev struct {
		LastError  string `json:"lastError"`
		ErrorCount int64  `json:"errorCount"`
	}
	// The violation counters and the device's error record are separate
	// writes: poll until both errors are on the device.
	testutil.Eventually(t, 10*time.Second, "both errors recorded on the device", func() bool {
		api.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/press-bad", nil, &dev)
		return dev.ErrorCount == 2
	})
	if !strings.Contains(dev.LastError, "breaks template press") {
		t.Fatalf("bad device error record %+v", dev)
	}
	// The good device's message went through the consumer before the bad
	// one (stream order), and its reported patch was checked before the 204.
	var gv violations
	api.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/press-good/template-violations", nil, &gv)
	if gv.Telemetry != 0 || gv.Reported != 0 {
		t.Fatalf("good device flagged: %+v", gv)
	}
	// A method payload that breaks the template is counted; the call goes
	// ahead (the device does not answer within the second).
	api.Do(t, "POST", "/api/v1/devices/press-bad/methods/reboot?timeout=1", "3", nil)
	var cv struct {
		Command   int64  `json:"command"`
		LastError string `json:"lastError"`
	}
	api.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/press-bad/template-violations", nil, &cv)
	if cv.Command != 1 || !strings.Contains(cv.LastError, `command "reboot" payload is the number 3, expected an object`) {
		t.Fatalf("command violation %+v", cv)
	}
	// The bad message was stored all the same.
	testutil.Eventually(t, 10*time.Second, "the bad message stored", func() bool {
		var latest struct {
			Values []struct {
				Field string `json:"field"`
				Value any    `json:"value"`
			} `json:"values"`
		}
		api.Do(t, "GET", "/api/v1/devices/press-bad/latest", nil, &latest)
		for _, l := range latest.Values {
			if l.Field == "temperature" && l.Value == 900.0 {
				return true
			}
		}
		return false
	})
}

// TestTemplateCRUDAndTenancy: import/export round trip, roles and tenancy.
func TestTemplateCRUDAndTenancy(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	admin := hub.API()
	acme := admin.CreateOrgToken(t, "acme", "operator")
	globex := admin.CreateOrgToken(t, "globex", "operator")
	viewer := admin.CreateOrgToken(t, "acme", "viewer")

	var created map[string]any
	acme.MustDo(t, http.StatusCreated, "POST", "/api/v1/templates", pressTemplate, &created)
	acme.MustDo(t, http.StatusConflict, "POST", "/api/v1/templates", pressTemplate, nil)
	viewer.MustDo(t, http.StatusForbidden, "POST", "/api/v1/templates", pressTemplate, nil)
	viewer.MustDo(t, http.StatusOK, "GET", "/api/v1/templates/press", nil, nil)
	globex.MustDo(t, http.StatusNotFound, "GET", "/api/v1/templates/press", nil, nil)
	globex.MustDo(t, http.StatusNotFound, "DELETE", "/api/v1/templates/press", nil, nil)
	bad := map[string]any{"id": "x", "telemetry": []any{map[string]any{"name": "t", "schema": "decimal"}}}
	acme.MustDo(t, http.StatusBadRequest, "POST", "/api/v1/templates", bad, nil)

	var doc json.RawMessage
	acme.MustDo(t, http.StatusOK, "GET", "/api/v1/templates/press/export", nil, &doc)
	if strings.Contains(string(doc), "acme") || strings.Contains(string(doc), "createdAt") {
		t.Fatalf("export carries the org or timestamps: %s", doc)
	}
	var imported map[string]any
	globex.MustDo(t, http.StatusCreated, "POST", "/api/v1/templates/import", []byte(doc), &imported)
	globex.MustDo(t, http.StatusConflict, "POST", "/api/v1/templates/import", []byte(doc), nil)
	globex.MustDo(t, http.StatusCreated, "POST", "/api/v1/templates/import?replace=true", []byte(doc), nil)
	for _, k := range []string{"org", "createdAt", "updatedAt"} {
		delete(imported, k)
		delete(created, k)
	}
	if !reflect.DeepEqual(imported, created) {
		t.Fatalf("round trip:\n got %v\nwant %v", imported, created)
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	viewer.MustDo(t, http.StatusOK, "GET", "/api/v1/templates", nil, &list)
	if len(list.Items) != 1 {
		t.Fatalf("list %v", list.Items)
	}
	changed := map[string]any{"name": "Press v2", "telemetry": []any{map[string]any{"name": "pressure", "schema": "double"}}}
	var replaced struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Telemetry []any  `json:"telemetry"`
	}
	viewer.MustDo(t, http.StatusForbidden, "PUT", "/api/v1/templates/press", changed, nil)
	acme.MustDo(t, http.StatusOK, "PUT", "/api/v1/templates/press", changed, &replaced)
	if replaced.ID != "press" || replaced.Name != "Press v2" || len(replaced.Telemetry) != 1 {
		t.Fatalf("replaced %+v", replaced)
	}
	changed["id"] = "other"
	acme.MustDo(t, http.StatusBadRequest, "PUT", "/api/v1/templates/press", changed, nil)
	acme.MustDo(t, http.StatusNoContent, "DELETE", "/api/v1/templates/press", nil, nil)
	acme.MustDo(t, http.StatusNotFound, "GET", "/api/v1/templates/press", nil, nil)
	globex.MustDo(t, http.StatusOK, "GET", "/api/v1/templates/press", nil, nil)
}

type jobView struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Progress struct {
		Total, Pending, Succeeded, Failed, Cancelled int
	} `json:"progress"`
}

// vibrationTemplate is what the job tests' devices follow.
var vibrationTemplate = map[string]any{
	"id": "vibration", "telemetry": []any{},
	"properties": []any{
		map[string]any{"name": "sampleRate", "schema": "double", "writable": true},
		map[string]any{"name": "mode", "schema": "string", "writable": true},
	},
	"commands": []any{map[string]any{"name": "reboot", "request": "object"}},
}

func createFleet(t *testing.T, api *testutil.API, n int) {
	t.Helper()
	api.MustDo(t, http.StatusCreated, "POST", "/api/v1/templates", vibrationTemplate, nil)
	for i := range n {
		api.CreateDevice(t, fmt.Sprintf("sensor-%02d", i), map[string]any{"template": "vibration", "tags": map[string]string{"line": "3"}})
	}
	api.CreateDevice(t, "other-line", map[string]any{"template": "vibration", "tags": map[string]string{"line": "4"}})
}

func waitJob(t *testing.T, api *testutil.API, id, state string) jobView {
	t.Helper()
	var j jobView
	testutil.Eventually(t, 30*time.Second, "job "+id+" "+state, func() bool {
		api.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+id, nil, &j)
		return j.State == state
	})
	return j
}

// TestJobs: a desired job over 50 devices completes with per-device
// results; a method job is cancelled; tenancy and roles hold.
func TestJobs(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	admin := hub.API()
	acme := admin.CreateOrgToken(t, "acme", "operator")
	viewer := admin.CreateOrgToken(t, "acme", "viewer")
	globex := admin.CreateOrgToken(t, "globex", "operator")
	createFleet(t, acme, 50)

	spec := map[string]any{"type": "desired", "query": map[string]any{"template": "vibration", "tags": map[string]string{"line": "3"}},
		"desired": map[string]any{"sampleRate": 200}, "rate": 100}
	viewer.MustDo(t, http.StatusForbidden, "POST", "/api/v1/jobs", spec, nil)
	var j jobView
	acme.MustDo(t, http.StatusAccepted, "POST", "/api/v1/jobs", spec, &j)
	if j.Progress.Total != 50 {
		t.Fatalf("job selects %d devices, want 50", j.Progress.Total)
	}
	globex.MustDo(t, http.StatusNotFound, "GET", "/api/v1/jobs/"+j.ID, nil, nil)
	done := waitJob(t, viewer, j.ID, "completed")
	if done.Progress.Succeeded != 50 {
		t.Fatalf("progress %+v", done.Progress)
	}
	var devs struct {
		Items []struct {
			Device string `json:"deviceId"`
			State  string `json:"state"`
		} `json:"items"`
	}
	viewer.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID+"/devices", nil, &devs)
	if len(devs.Items) != 50 || devs.Items[49].State != "succeeded" {
		t.Fatalf("per-device results %+v", devs.Items)
	}
	var tw struct {
		Properties struct {
			Desired map[string]any `json:"desired"`
		} `json:"properties"`
	}
	acme.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/sensor-49/twin", nil, &tw)
	if tw.Properties.Desired["sampleRate"] != 200.0 {
		t.Fatalf("sensor-49 desired %v", tw.Properties.Desired)
	}
	tw.Properties.Desired = nil
	acme.MustDo(t, http.StatusOK, "GET", "/api/v1/devices/other-line/twin", nil, &tw)
	if _, ok := tw.Properties.Desired["sampleRate"]; ok {
		t.Fatal("a device outside the query was patched")
	}

	// The devices are offline: each method call fails fast; at 5 per
	// second the job is still running when it is cancelled.
	mspec := map[string]any{"type": "method", "query": map[string]any{"template": "vibration"}, "method": map[string]any{"name": "reboot", "timeoutSeconds": 5}, "rate": 5}
	acme.MustDo(t, http.StatusAccepted, "POST", "/api/v1/jobs", mspec, &j)
	testutil.Eventually(t, 10*time.Second, "the method job to start", func() bool {
		var g jobView
		acme.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID, nil, &g)
		return g.Progress.Failed >= 2
	})
	globex.MustDo(t, http.StatusNotFound, "POST", "/api/v1/jobs/"+j.ID+"/cancel", nil, nil)
	var c jobView
	acme.MustDo(t, http.StatusOK, "POST", "/api/v1/jobs/"+j.ID+"/cancel", nil, &c)
	if c.State != "cancelled" || c.Progress.Pending != 0 || c.Progress.Cancelled == 0 || c.Progress.Succeeded != 0 {
		t.Fatalf("after cancel %+v", c)
	}
	acme.MustDo(t, http.StatusConflict, "POST", "/api/v1/jobs/"+j.ID+"/cancel", nil, nil)
	var failed struct {
		Items []struct {
			Error string `json:"error"`
		} `json:"items"`
	}
	acme.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID+"/devices?state=failed", nil, &failed)
	if len(failed.Items) != c.Progress.Failed || failed.Items[0].Error == "" {
		t.Fatalf("failed devices %+v", failed.Items)
	}
	var list struct {
		Items []jobView `json:"items"`
	}
	viewer.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs", nil, &list)
	if len(list.Items) != 2 || list.Items[0].ID != j.ID {
		t.Fatalf("list %+v", list.Items)
	}
	acme.MustDo(t, http.StatusBadRequest, "POST", "/api/v1/jobs", map[string]any{"type": "explode", "query": map[string]any{}}, nil)
}

// TestJobResumesAfterRestart: a running job survives a hub restart and
// finishes the devices it had not reached (SQLite and PostgreSQL).
func TestJobResumesAfterRestart(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			o := testutil.Options{}
			if db == "postgres" {
				o.Postgres = testutil.PostgresDSN(t)
			}
			hub := testutil.StartHub(t, o)
			api := hub.API()
			createFleet(t, api, 50)
			var j jobView
			api.MustDo(t, http.StatusAccepted, "POST", "/api/v1/jobs", map[string]any{"type": "desired", "query": map[string]any{"tags": map[string]string{"line": "3"}},
				"desired": map[string]any{"mode": "eco"}, "rate": 20}, &j)
			testutil.Eventually(t, 20*time.Second, "a few devices done", func() bool {
				var g jobView
				api.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID, nil, &g)
				return g.Progress.Succeeded >= 5
			})
			hub.Stop()

			o.Data = hub.Data
			hub2 := testutil.StartHub(t, o)
			api2 := hub2.API()
			var mid jobView
			api2.MustDo(t, http.StatusOK, "GET", "/api/v1/jobs/"+j.ID, nil, &mid)
			if mid.State != "running" || mid.Progress.Succeeded == 50 {
				t.Fatalf("after restart %+v", mid)
			}
			done := waitJob(t, api2, j.ID, "completed")
			if done.Progress.Succeeded != 50 || done.Progress.Total != 50 {
				t.Fatalf("resumed job %+v", done.Progress)
			}
		})
	}
}
