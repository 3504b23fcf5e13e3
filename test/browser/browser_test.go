// Package browser runs the web console's end-to-end tests in headless
// Chromium (playwright-core, see package.json) against a real hub with
// simulated devices and 10,000 registered devices.
package browser

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

	viewer, err := h.Registry.CreateToken(ctx, h.OperatorOrg, "console-viewer", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}

	out, _ := filepath.Abs("out")
	nctx, ncancel := context.WithTimeout(ctx, 4*time.Minute)
	defer ncancel()
	cmd := exec.CommandContext(nctx, node, "console.mjs")
	cmd.Env = append(os.Environ(), "BASE_URL="+h.URL, "ADMIN_TOKEN="+h.Token, "VIEWER_TOKEN="+viewer.Secret,
		"DEVICE_ID="+fleet.Devices()[0].ID, "OUT_DIR="+out, "CHROMIUM="+chromium)
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
}
