package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func load(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, func(k string) string { return env[k] })
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != ":8080" || c.MQTT != ":1883" || c.MQTTS != ":8883" || c.Data != "./shopfloor-data" || c.MaxPayload != 256*1024 {
		t.Fatalf("unexpected defaults %+v", c)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(file, []byte("http: \":9000\"\nmqtt: \":9001\"\ndata: /from/file\nretention: 48h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, []string{"--config", file, "--mqtt", ":9100"}, map[string]string{
		"SHOPFLOOR_MQTT": ":9200", "SHOPFLOOR_DATA": "/from/env", "SHOPFLOOR_ADMIN_TOKEN": "sft_x",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != ":9000" || c.MQTT != ":9100" || c.Data != "/from/env" || c.Retention != 48*time.Hour || c.AdminToken != "sft_x" {
		t.Fatalf("precedence wrong: %+v", c)
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--mqtt", "1883"}, nil},
		{nil, map[string]string{"SHOPFLOOR_MAX_PAYLOAD": "lots"}},
		{nil, map[string]string{"SHOPFLOOR_FSYNC": "sometimes"}},
		{[]string{"--tls-cert", "a.pem"}, nil},
		{[]string{"--log-level", "chatty"}, nil},
		{[]string{"--nats", "127.0.0.1:4222"}, nil},
		{[]string{"--max-token-ttl", "30s"}, nil},
		{nil, map[string]string{"SHOPFLOOR_MAX_TOKEN_TTL": "forever"}},
		{[]string{"--metrics-listen", "9100"}, nil},
	}
	for _, tc := range cases {
		if _, err := load(t, tc.args, tc.env); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v %v: got %v, want ErrInvalid", tc.args, tc.env, err)
		}
	}
	file := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(file, []byte("mqqt: \":1\"\n"), 0o600)
	if _, err := load(t, []string{"--config", file}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown YAML key accepted: %v", err)
	}
}

func TestFsyncSwitch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, false},
		{[]string{"--fsync"}, nil, true},
		{nil, map[string]string{"SHOPFLOOR_FSYNC": "true"}, true},
		{[]string{"--fsync=false"}, map[string]string{"SHOPFLOOR_FSYNC": "true"}, false},
	} {
		c, err := load(t, tc.args, tc.env)
		if err != nil || c.Fsync != tc.want {
			t.Errorf("%v %v: fsync %v, err %v; want %v", tc.args, tc.env, c.Fsync, err, tc.want)
		}
	}
	file := filepath.Join(t.TempDir(), "hub.yaml")
	_ = os.WriteFile(file, []byte("fsync: true\n"), 0o600)
	if c, err := load(t, []string{"--config", file}, nil); err != nil || !c.Fsync {
		t.Errorf("fsync from the file: %v %v", c.Fsync, err)
	}
}

func TestEgressAllow(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := c.EgressAllowList(); len(l) != 0 {
		t.Fatalf("internal addresses are open by default: %v", l)
	}
	file := filepath.Join(t.TempDir(), "hub.yaml")
	_ = os.WriteFile(file, []byte("egress_allow: 10.20.0.0/16\n"), 0o600)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--config", file}, nil, "[10.20.0.0/16]"},
		{[]string{"--config", file}, map[string]string{"SHOPFLOOR_EGRESS_ALLOW": "192.168.5.7, fd00::/8"}, "[192.168.5.7/32 fd00::/8]"},
		{[]string{"--egress-allow", "127.0.0.0/8,::1"}, map[string]string{"SHOPFLOOR_EGRESS_ALLOW": "10.0.0.0/8"}, "[127.0.0.0/8 ::1/128]"},
	} {
		c, err := load(t, tc.args, tc.env)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		l, _ := c.EgressAllowList()
		if got := fmt.Sprint(l); got != tc.want {
			t.Errorf("%v %v: %s, want %s", tc.args, tc.env, got, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "intranet", "10.0.0.0/8;192.168.0.0/16", "fe80::1%eth0"} {
		if _, err := load(t, []string{"--egress-allow", bad}, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--egress-allow") {
			t.Errorf("%q: want ErrInvalid naming --egress-allow, got %v", bad, err)
		}
	}
}

// The SD-Core login comes from the environment (or a flag or the file),
// and the user and password go together.
func TestSDCoreLogin(t *testing.T) {
	c, err := load(t, []string{"--sdcore", "http://webui:5000"}, map[string]string{
		"SHOPFLOOR_SDCORE_USER": "shopfloor", "SHOPFLOOR_SDCORE_PASSWORD": "s3cret", "SHOPFLOOR_SDCORE_RECONCILE": "2m"})
	if err != nil {
		t.Fatal(err)
	}
	if c.SDCoreUser != "shopfloor" || c.SDCorePassword != "s3cret" || c.SDCoreReconcile != 2*time.Minute {
		t.Fatalf("loaded %q %q %s", c.SDCoreUser, c.SDCorePassword, c.SDCoreReconcile)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		flag string
	}{
		{[]string{"--sdcore", "http://webui:5000", "--sdcore-user", "shopfloor"}, nil, "--sdcore-password"},
		{nil, map[string]string{"SHOPFLOOR_SDCORE_USER": "u", "SHOPFLOOR_SDCORE_PASSWORD": "p"}, "--sdcore "},
		{[]string{"--sdcore-reconcile", "1s"}, nil, "--sdcore-reconcile"},
	} {
		if _, err := load(t, tc.args, tc.env); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%v %v: %v, want ErrInvalid naming %s", tc.args, tc.env, err, tc.flag)
		}
	}
}

func TestSecurityLimits(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxTokenTTL != 365*24*time.Hour || c.MetricsListen != "" {
		t.Fatalf("defaults: max token TTL %s, metrics listen %q", c.MaxTokenTTL, c.MetricsListen)
	}
	c, err = load(t, nil, map[string]string{"SHOPFLOOR_MAX_TOKEN_TTL": "24h", "SHOPFLOOR_METRICS_LISTEN": "127.0.0.1:9100"})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxTokenTTL != 24*time.Hour || c.MetricsListen != "127.0.0.1:9100" {
		t.Fatalf("from the environment: %s %q", c.MaxTokenTTL, c.MetricsListen)
	}
	c, err = load(t, []string{"--max-token-ttl", "1h"}, map[string]string{"SHOPFLOOR_MAX_TOKEN_TTL": "24h"})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxTokenTTL != time.Hour {
		t.Fatalf("the flag must win over the environment: %s", c.MaxTokenTTL)
	}
}
