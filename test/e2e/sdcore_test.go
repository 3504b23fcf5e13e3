package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore/sdcoretest"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

type coreStatus struct {
	Link          string         `json:"link"`
	LinkDetail    string         `json:"linkDetail"`
	LastReconcile *time.Time     `json:"lastReconcile"`
	Counts        map[string]int `json:"counts"`
	Objects       []struct {
		Kind, Name, State, Detail string
	} `json:"objects"`
}

func getCore(t *testing.T, a *testutil.API) coreStatus {
	var st coreStatus
	a.MustDo(t, 200, "GET", "/api/v1/connectivity/core", nil, &st)
	return st
}

func inSync(t *testing.T, a *testutil.API, objects int) func() bool {
	return func() bool {
		st := getCore(t, a)
		return st.LastReconcile != nil && st.Counts["in_sync"] == objects && st.Counts["pending"] == 0 && st.Counts["failed"] == 0
	}
}

const sdKey, sdOPc = "465b5ce8b199b49faa5f0a2ee238a6bc", "d4416644f6154936193433dd20a0ace0"

// plant sets up, through the API, a site with a small cell, two device
// groups of n/2 devices each, an application, a slice with a filter and a
// bitrate, and n activated SIMs with keys, one per device. It returns the
// ICCIDs.
func plant(t *testing.T, a *testutil.API, n int) []string {
	t.Helper()
	a.MustDo(t, 201, "POST", "/api/v1/sites", map[string]any{"id": "plant", "name": "Plant"}, nil)
	put := func(path string, body map[string]any) {
		t.Helper()
		var e any
		if st := a.Do(t, "PUT", "/api/v1/connectivity/"+path, body, &e); st != 200 && st != 201 {
			t.Fatalf("PUT %s: %d %v", path, st, e)
		}
	}
	put("site-networks/plant", map[string]any{"site": "plant", "mcc": "001", "mnc": "01", "edgeNode": "upf-plant",
		"smallCells": []map[string]any{{"id": "gnb-hall-1", "tac": 1, "address": "10.0.0.10", "enabled": true}}})
	put("traffic-classes/platinum", map[string]any{"name": "platinum", "arp": 6, "qci": 9, "pdb": 300, "pelr": 6})
	put("traffic-classes/silver", map[string]any{"name": "silver", "arp": 8, "qci": 9, "pdb": 300, "pelr": 6})
	put("applications/mes", map[string]any{"name": "mes", "prefix": "10.20.0.0/24", "endpoints": []map[string]any{{"port": 443, "protocol": "TCP"}}})
	var groups [2][]string
	var sims []map[string]any
	for i := range n {
		dev := fmt.Sprintf("agv-%03d", i)
		a.CreateDevice(t, dev, map[string]any{"site": "plant"})
		groups[i%2] = append(groups[i%2], dev)
		sims = append(sims, map[string]any{"iccid": luhn(fmt.Sprintf("894400000001%06d", i)), "imsi": fmt.Sprintf("0010100000%05d", i), "ki": sdKey, "opc": sdOPc})
	}
	for gi, g := range []string{"agvs", "cameras"} {
		put("device-groups/"+g, map[string]any{"name": g, "site": "plant", "devices": groups[gi],
			"ipDomain":  map[string]any{"dnn": "internet", "subnet": fmt.Sprintf("172.25%d.0.0/16", gi), "dns": []string{"8.8.8.8"}, "mtu": 1460},
			"mbrUplink": 4_000_000, "mbrDownlink": 20_000_000, "trafficClass": []string{"platinum", "silver"}[gi]})
	}
	put("slices/robots", map[string]any{"name": "robots", "site": "plant", "sst": 1, "sd": "010203", "deviceGroups": []string{"agvs", "cameras"},
		"defaultBehavior": "ALLOW-PUBLIC", "filters": []map[string]any{{"application": "mes", "priority": 10, "action": "allow"}},
		"mbr": map[string]any{"uplink": 50_000_000, "downlink": 100_000_000, "burstBytes": 1 << 20}})
	var job struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Failed int    `json:"failed"`
	}
	a.MustDo(t, 202, "POST", "/api/v1/connectivity/sims/import", map[string]any{"sims": sims}, &job)
	testutil.Eventually(t, 30*time.Second, "the SIM import", func() bool {
		a.MustDo(t, 200, "GET", "/api/v1/connectivity/jobs/"+job.ID, nil, &job)
		return job.Status == "done"
	})
	if job.Failed != 0 {
		t.Fatalf("%d SIMs failed to import", job.Failed)
	}
	var iccids []string
	for i, s := range sims {
		iccid := s["iccid"].(string)
		a.MustDo(t, 200, "PATCH", "/api/v1/connectivity/sims/"+iccid, map[string]any{"device": fmt.Sprintf("agv-%03d", i)}, nil)
		a.MustDo(t, 200, "POST", "/api/v1/connectivity/sims/"+iccid+"/state", map[string]any{"state": "ACTIVATED"}, nil)
		iccids = append(iccids, iccid)
	}
	return iccids
}

// holds checks that the fake core holds exactly the plant: n subscribers
// with their keys (one changed), both groups with their IMSIs, the slice.
func holds(t *testing.T, f *sdcoretest.Fake, n int, changed string, key string) {
	t.Helper()
	subs := f.Subscribers()
	if len(subs) != n {
		t.Fatalf("the core holds %d subscribers, want %d", len(subs), n)
	}
	for imsi, s := range subs {
		want := sdKey
		if imsi == changed {
			want = key
		}
		if s.Key != want || s.OPc != sdOPc {
			t.Fatalf("subscriber %s: key %s, want %s", imsi, s.Key, want)
		}
	}
	groups := f.DeviceGroups()
	if len(groups) != 2 {
		t.Fatalf("groups %v", groups)
	}
	// The core names objects organization-name.
	var org string
	for g := range groups {
		if p, ok := strings.CutSuffix(g, "-agvs"); ok {
			org = p
		}
	}
	for gi, g := range []string{org + "-agvs", org + "-cameras"} {
		var want []string
		for i := gi; i < n; i += 2 {
			want = append(want, fmt.Sprintf("0010100000%05d", i))
		}
		if !slices.Equal(groups[g].IMSIs, want) || len(groups[g].IPDomains) != 1 {
			t.Fatalf("group %s holds %v", g, groups[g])
		}
	}
	sl, ok := f.Slices()[org+"-robots"]
	if !ok || len(f.Slices()) != 1 || len(sl.Rules) != 5 || sl.SiteInfo.GNodeBs[0].Name != "gnb-hall-1" {
		t.Fatalf("slices %+v", f.Slices())
	}
	for _, r := range sl.Rules {
		if r.TrafficClass == nil || r.TrafficClass.Name != org+"-platinum" {
			t.Fatalf("rule %+v", r)
		}
	}
}

// Issue 22's test: a site with two device groups, a slice with rules and
// 100 SIMs is pushed to an SD-Core web console with login on; a SIM's key
// changes; the hub restarts. The core then holds exactly Shopfloor's
// state; no request was refused; after the restart nothing is written.
func TestSDCoreHoldsShopfloorsStateAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 100 devices and SIMs and restarts the hub")
	}
	fake := sdcoretest.New(sdcoretest.Options{User: "shopfloor", Password: "s3cret"})
	core := httptest.NewServer(fake)
	defer core.Close()
	mutate := func(c *config.Config) { c.SDCore, c.SDCoreUser, c.SDCorePassword = core.URL, "shopfloor", "s3cret" }
	hub := testutil.StartHub(t, testutil.Options{Mutate: mutate})
	a := hub.API()
	const n = 100
	iccids := plant(t, a, n)
	testutil.Eventually(t, 60*time.Second, "the core in sync", inSync(t, a, n+3))
	holds(t, fake, n, "", "")

	newKey := "00112233445566778899aabbccddeeff"
	a.MustDo(t, 200, "PATCH", "/api/v1/connectivity/sims/"+iccids[7], map[string]any{"ki": strings.ToUpper(newKey)}, nil)
	testutil.Eventually(t, 30*time.Second, "the new key in the core", func() bool {
		return fake.Subscribers()["001010000000007"].Key == newKey
	})
	testutil.Eventually(t, 30*time.Second, "the core in sync", inSync(t, a, n+3))
	hub.Stop()

	before := fake.Stats()
	hub = testutil.StartHub(t, testutil.Options{Data: hub.Data, Mutate: mutate})
	a = hub.API()
	testutil.Eventually(t, 60*time.Second, "the core in sync after the restart", inSync(t, a, n+3))
	after := fake.Stats()
	holds(t, fake, n, "001010000000007", newKey)
	if len(after.Refused) > 0 {
		t.Fatalf("the core refused %d requests, first: %s", len(after.Refused), after.Refused[0])
	}
	if again := after.Writes[len(before.Writes):]; len(again) > 0 {
		t.Fatalf("the restarted hub wrote to a core that already held its state: %v", again)
	}
	if after.Logins != before.Logins+1 {
		t.Fatalf("%d logins after the restart, want one", after.Logins-before.Logins)
	}
}

// A wrong password for the core is a clear state, in the API and on the
// connectivity page.
func TestSDCoreWrongPasswordIsShown(t *testing.T) {
	fake := sdcoretest.New(sdcoretest.Options{User: "shopfloor", Password: "s3cret"})
	core := httptest.NewServer(fake)
	defer core.Close()
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) {
		c.SDCore, c.SDCoreUser, c.SDCorePassword = core.URL, "shopfloor", "wrong"
	}})
	a := hub.API()
	iccid := luhn("894400000000000003")
	a.MustDo(t, 201, "POST", "/api/v1/connectivity/sims", map[string]any{"iccid": iccid, "imsi": "001010000000003", "ki": sdKey, "opc": sdOPc}, nil)
	a.MustDo(t, 200, "POST", "/api/v1/connectivity/sims/"+iccid+"/state", map[string]any{"state": "ACTIVATED"}, nil)
	testutil.Eventually(t, 30*time.Second, "login_failed", func() bool { return getCore(t, a).Link == "login_failed" })
	st := getCore(t, a)
	if !strings.Contains(st.LinkDetail, "--sdcore-password") || st.Counts["in_sync"] != 0 {
		t.Fatalf("status %+v", st)
	}
	if len(fake.Subscribers()) != 0 {
		t.Fatal("a subscriber reached the core without a login")
	}

	page := consolePage(t, hub.URL, hub.Token, "/connectivity")
	for _, want := range []string{`data-state="login_failed"`, "Login refused.", "--sdcore-password", "failed"} {
		if !strings.Contains(page, want) {
			t.Fatalf("the connectivity page lacks %q:\n%s", want, page)
		}
	}
}

// consolePage signs in to the console with an API token and returns a
// page.
func consolePage(t *testing.T, base, token, path string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(base)
	var csrf string
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "sf_login" {
			csrf = ck.Value
		}
	}
	resp, err = c.PostForm(base+"/login", url.Values{"csrf": {csrf}, "token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Request.URL.Path != path {
		t.Fatalf("GET %s: %d at %s", path, resp.StatusCode, resp.Request.URL)
	}
	return string(b)
}
