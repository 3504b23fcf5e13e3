// Package browser runs the web console's end-to-end tests in headless
// Chromium (playwright-core, see package.json) against a real hub with
// simulated devices and 10,000 registered devices.
package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/simulate"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

const chromiumPath = "/usr/bin/chromium"

func TestConsoleInChromium(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("SKIPPING the browser tests: node is not installed (apt-get install nodejs)")
	}
	chromium := os.Getenv("SHOPFLOOR_CHROMIUM")
	if chromium == "" {
		chromium = chromiumPath
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("SKIPPING the browser tests: no Chromium at %s (apt-get install chromium)", chromium)
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Skip("SKIPPING the browser tests: run `npm ci` in test/browser first")
	}

	h := testutil.StartHub(t, testutil.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// 10,000 registered devices make the page timings meaningful.
	if _, err := h.Registry.CreateSite(ctx, h.OperatorOrg, registry.Site{ID: "bulk", Name: "Bulk sensors"}); err != nil {
		t.Fatal(err)
	}
	// Devices may name only a template that exists.
	h.API().MustDo(t, 201, "POST", "/api/v1/templates", map[string]any{"id": "sensor", "name": "Bulk sensor"}, nil)
	var csv strings.Builder
	csv.WriteString("id,site,template,tags\n")
	for i := range 10000 {
		fmt.Fprintf(&csv, "bulk-%05d,bulk,sensor,line=%d\n", i, i%10)
	}
	rep, err := h.Registry.ImportCSV(ctx, h.OperatorOrg, strings.NewReader(csv.String()), nil)
	if err != nil || rep.Created != 10000 {
		t.Fatalf("import 10,000 devices: %v (%d created)", err, rep.Created)
	}

	fleet, err := simulate.New(simulate.Config{URL: h.URL, Token: h.Token, MQTTAddr: h.MQTTAddr(),
		Sites: []string{"plant-north", "plant-south"}, Devices: 4, Rate: 2, Seed: 7, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, 30*time.Second, "simulated devices connected", func() bool { return fleet.Stats().Connected == 4 })

	// One SIM, so the connectivity page has something to list.
	h.API().MustDo(t, 201, "POST", "/api/v1/connectivity/sims", map[string]any{"iccid": "8944000000000000019", "imsi": "001010000000009", "label": "AGV north 1"}, nil)
	// And a device group in a slice.
	const cbase = "/api/v1/connectivity"
	h.API().MustDo(t, 201, "PUT", cbase+"/site-networks/plant-north", map[string]any{"mcc": "001", "mnc": "01", "smallCells": []any{}}, nil)
	h.API().MustDo(t, 201, "PUT", cbase+"/traffic-classes/platinum", map[string]any{"arp": 2, "qci": 9, "pdb": 100, "pelr": 6}, nil)
	h.API().MustDo(t, 201, "PUT", cbase+"/device-groups/robots-north", map[string]any{"site": "plant-north", "devices": []string{"sim-plant-north-robot-01"},
		"ipDomain": map[string]any{"dnn": "factory", "subnet": "172.250.0.0/16", "mtu": 1460}, "mbrUplink": 2000000, "mbrDownlink": 10000000, "trafficClass": "platinum"}, nil)
	h.API().MustDo(t, 201, "PUT", cbase+"/slices/robots", map[string]any{"site": "plant-north", "sst": 1, "sd": "010203", "deviceGroups": []string{"robots-north"}, "defaultBehavior": "DENY-ALL", "filters": []any{}}, nil)

	viewer, err := h.Registry.CreateToken(ctx, h.OperatorOrg, "console-viewer", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}

	// Console users who sign in with a password, created over the REST API.
	const operatorUser, viewerUser, password = "anna.operator", "victor.viewer", "shop-floor-2026!"
	h.API().MustDo(t, 201, "POST", "/api/v1/users", map[string]any{"name": operatorUser, "password": password, "role": "operator"}, nil)
	h.API().MustDo(t, 201, "POST", "/api/v1/users", map[string]any{"name": viewerUser, "password": password, "role": "viewer"}, nil)

	// A template, so the templates page shows one.
	h.API().MustDo(t, 201, "POST", "/api/v1/templates", map[string]any{"id": "press", "name": "Hydraulic press",
		"telemetry":  []map[string]any{{"name": "temperature", "schema": "double", "unit": "degC", "min": -40, "max": 150}},
		"properties": []map[string]any{{"name": "setpoint", "schema": "double", "unit": "degC", "writable": true, "min": 0, "max": 120}},
		"commands":   []map[string]any{{"name": "reboot"}}}, nil)

	// A device the console talks to: it applies desired properties (and
	// reports them back), answers direct methods and runs hot.
	press := startConsolePress(ctx, t, h)

	out, _ := filepath.Abs("out")
	nctx, ncancel := context.WithTimeout(ctx, 4*time.Minute)
	defer ncancel()
	cmd := exec.CommandContext(nctx, node, "console.mjs")
	cmd.Env = append(os.Environ(), "BASE_URL="+h.URL, "ADMIN_TOKEN="+h.Token, "VIEWER_TOKEN="+viewer.Secret,
		"DEVICE_ID="+fleet.Devices()[0].ID, "OUT_DIR="+out, "CHROMIUM="+chromium,
		"CONSOLE_DEVICE="+press.id, "OPERATOR_USER="+operatorUser, "VIEWER_USER="+viewerUser, "USER_PASSWORD="+password,
		"TWIN_SETPOINT=77.5")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser tests failed (%v); screenshots are in %s", err, out)
	}

	// What the device saw of the console's actions, and the acknowledgement.
	if got := press.desiredSetpoints(); !slices.Contains(got, 77.5) {
		t.Errorf("the device never received the console's desired setpoint 77.5 (got %v)", got)
	}
	if got := press.methodCalls(); !slices.Contains(got, "reboot") {
		t.Errorf("the device never received the console's reboot method (got %v)", got)
	}
	var alerts struct {
		Items []struct{ State, AckedBy, RuleName string } `json:"items"`
	}
	h.API().MustDo(t, 200, "GET", "/api/v1/alerts?device="+press.id, nil, &alerts)
	acked := false
	for _, a := range alerts.Items {
		acked = acked || (a.RuleName == "Console hot press" && a.State == "acknowledged" && a.AckedBy == "user:"+operatorUser)
	}
	if !acked {
		t.Errorf("no alert of the console's rule was acknowledged by %s: %+v", operatorUser, alerts.Items)
	}
}

// consolePress is a connected device for the console tests.
type consolePress struct {
	id       string
	mu       sync.Mutex
	desired  []float64
	methods  []string
	reported atomic.Int64
}

func (p *consolePress) desiredSetpoints() []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.desired)
}

func (p *consolePress) methodCalls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.methods)
}

func startConsolePress(ctx context.Context, t *testing.T, h *testutil.Hub) *consolePress {
	t.Helper()
	p := &consolePress{id: "console-press"}
	d := h.API().CreateDevice(t, p.id, map[string]any{"template": "press"})
	c := h.MustConnect(t, d, testutil.DeviceOptions{})
	// Paho runs handlers on its router goroutine: publish from them without
	// waiting for the acknowledgement.
	tk := c.Subscribe("$iothub/twin/PATCH/properties/desired/#", 1, func(cl mqtt.Client, m mqtt.Message) {
		var patch map[string]any
		if err := json.Unmarshal(m.Payload(), &patch); err != nil {
			return
		}
		if v, ok := patch["setpoint"].(float64); ok {
			p.mu.Lock()
			p.desired = append(p.desired, v)
			p.mu.Unlock()
			rep, _ := json.Marshal(map[string]any{"setpoint": v})
			cl.Publish(fmt.Sprintf("$iothub/twin/PATCH/properties/reported/?$rid=%d", p.reported.Add(1)), 1, false, rep)
		}
	})
	if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe to desired properties: %v", tk.Error())
	}
	tk = c.Subscribe("$iothub/methods/POST/#", 1, func(cl mqtt.Client, m mqtt.Message) {
		// $iothub/methods/POST/{method}/?$rid={rid}
		rest := strings.TrimPrefix(m.Topic(), "$iothub/methods/POST/")
		name, query, _ := strings.Cut(rest, "/?")
		q, _ := url.ParseQuery(query)
		p.mu.Lock()
		p.methods = append(p.methods, name)
		p.mu.Unlock()
		resp, _ := json.Marshal(map[string]any{"method": name, "rebooted": name == "reboot", "request": json.RawMessage(m.Payload())})
		cl.Publish("$iothub/methods/res/200/?$rid="+q.Get("$rid"), 1, false, resp)
	})
	if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe to direct methods: %v", tk.Error())
	}
	c.Subscribe("$iothub/twin/res/#", 0, func(mqtt.Client, mqtt.Message) {})
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			body, _ := json.Marshal(map[string]any{"temperature": 95 + float64(i%7)/2})
			c.Publish("devices/"+p.id+"/messages/events/", 0, false, body)
		}
	}()
	return p
}
