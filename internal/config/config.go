package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// ErrInvalid wraps every configuration problem.
var ErrInvalid = errors.New("invalid configuration")

// Config is everything `shopfloor serve` can be told. Each field has a flag,
// an SHOPFLOOR_<NAME> environment variable and a YAML key of the same name.
type Config struct {
	Data       string        `yaml:"data" flag:"data" usage:"data directory: database, time-series WAL, bus files, certificates"`
	HTTP       string        `yaml:"http" flag:"http" usage:"HTTP listen address: REST API, console, Prometheus API, MQTT over WebSocket at /mqtt"`
	HTTPS      string        `yaml:"https" flag:"https" usage:"HTTPS listen address: the same as --http over TLS, with MQTT over WebSocket at /$iothub/websocket for Azure IoT SDKs (empty disables)"`
	MQTT       string        `yaml:"mqtt" flag:"mqtt" usage:"MQTT listen address (empty disables plain MQTT)"`
	MQTTS      string        `yaml:"mqtts" flag:"mqtts" usage:"MQTT over TLS listen address (empty disables)"`
	NATS       string        `yaml:"nats" flag:"nats" usage:"external NATS URL, e.g. nats://10.0.0.5:4222 (empty runs NATS embedded)"`
	Postgres   string        `yaml:"postgres" flag:"postgres" usage:"PostgreSQL DSN for the registry and time-series chunks (empty uses SQLite in the data directory)"`
	TLSCert    string        `yaml:"tls_cert" flag:"tls-cert" usage:"server certificate PEM for MQTT over TLS (default: generated in the data directory)"`
	TLSKey     string        `yaml:"tls_key" flag:"tls-key" usage:"private key PEM for --tls-cert"`
	Hostname   string        `yaml:"hostname" flag:"hostname" usage:"extra host name for the generated server certificate"`
	MaxPayload int           `yaml:"max_payload" flag:"max-payload" usage:"largest device message in bytes"`
	Retention  time.Duration `yaml:"retention" flag:"retention" usage:"default telemetry retention for new organizations"`
	LogLevel   string        `yaml:"log_level" flag:"log-level" usage:"debug, info, warn or error"`
	StreamMB   int           `yaml:"stream_mb" flag:"stream-mb" usage:"largest size of the telemetry stream in MB; the oldest messages go first (JetStream reserves this much on an external NATS)"`
	SDCore     string        `yaml:"sdcore" flag:"sdcore" usage:"SD-Core web console URL (e.g. http://webui:5000) that receives subscribers, device groups and slices (empty: none)"`
	// SDCoreUser and SDCorePassword log in to a web console that has
	// authentication enabled; prefer the environment for the password, so
	// it does not show in the process list.
	SDCoreUser     string `yaml:"sdcore_user" flag:"sdcore-user" usage:"user name for the SD-Core web console's login (with --sdcore-password; empty: the console has no login)"`
	SDCorePassword string `yaml:"sdcore_password" flag:"sdcore-password" usage:"password for --sdcore-user (prefer the environment variable: a flag shows in the process list)"`
	// SDCoreReconcile is how often the core is read back and compared.
	SDCoreReconcile time.Duration `yaml:"sdcore_reconcile" flag:"sdcore-reconcile" usage:"how often the SD-Core's subscribers, device groups and slices are read back and drift repaired (also at start)"`
	BusPrefix       string        `yaml:"bus_prefix" flag:"bus-prefix" usage:"name prefix for streams and subjects on a shared NATS"`
	// EgressAllow opens internal address ranges to webhooks and exports,
	// which are refused by default.
	EgressAllow string `yaml:"egress_allow" flag:"egress-allow" usage:"comma-separated CIDR ranges or addresses that webhooks and exports may reach although internal (loopback, private, link-local, ...), e.g. 10.20.0.0/16,192.168.5.7 (empty: internal addresses are refused)"`
	// IngestInflight bounds the telemetry messages being stored at once;
	// beyond it they wait, ordered by their device's traffic class.
	IngestInflight int `yaml:"ingest_inflight" flag:"ingest-inflight" usage:"telemetry messages stored at once; when the hub is saturated the rest wait, higher-priority traffic classes (lower ARP) first (0: 64 per CPU, at least 128)"`
	// Fsync flushes every commit of the registry and the embedded bus to disk.
	Fsync bool `yaml:"fsync" flag:"fsync" usage:"flush every commit (SQLite registry, embedded bus) to disk before acknowledging it, so acknowledged data also survives a power cut; slower. Without it, acknowledged data survives a crash of the hub process"`
	// AnomalySnapshot is how often the detectors' learned state is saved.
	AnomalySnapshot time.Duration `yaml:"anomaly_snapshot" flag:"anomaly-snapshot" usage:"how often the anomaly detectors save what they have learned, so a crash does not make them learn again from nothing (0: only when the hub stops)"`
	// HTTP connection limits (MQTT over WebSocket leaves them once upgraded).
	HTTPMaxConns        int `yaml:"http_max_conns" flag:"http-max-conns" usage:"open HTTP connections the API and console hold at most (each listener); more are closed at once"`
	HTTPMaxConnsPerAddr int `yaml:"http_max_conns_per_addr" flag:"http-max-conns-per-addr" usage:"open HTTP connections from one client address at most (each listener)"`
	// Cardinality limits: a message that would pass one is refused whole.
	MaxDeviceFields int `yaml:"max_device_fields" flag:"max-device-fields" usage:"most distinct field names one device may send"`
	MaxOrgSeries    int `yaml:"max_org_series" flag:"max-org-series" usage:"most series (device fields) one organization may hold"`
	MaxFieldName    int `yaml:"max_field_name" flag:"max-field-name" usage:"longest flattened field name, in bytes"`
	// MetricsListen serves /metrics without a token on its own address.
	MetricsListen string `yaml:"metrics_listen" flag:"metrics-listen" usage:"extra listen address serving only /metrics, without a token, for a Prometheus that cannot send one (e.g. 127.0.0.1:9100; empty: none). /metrics on --http always needs an operator-organization token"`
	// MaxTokenTTL is the longest SAS token lifetime the gateway accepts.
	MaxTokenTTL time.Duration `yaml:"max_token_ttl" flag:"max-token-ttl" usage:"longest lifetime of a device SAS token the hub accepts at CONNECT (expiry minus now); longer tokens are refused. Default one year, the longest token the API issues"`
	// AdminToken is the bootstrap admin token on first start (env only, so it
	// does not show in the process list).
	AdminToken string `yaml:"-"`
}

// Default returns the zero-configuration settings.
func Default() Config {
	return Config{
		Data:       "./shopfloor-data",
		HTTP:       ":8080",
		HTTPS:      ":8443",
		MQTT:       ":1883",
		MQTTS:      ":8883",
		MaxPayload: 256 * 1024,
		Retention:  30 * 24 * time.Hour,
		LogLevel:   "info",
		BusPrefix:  "SHOPFLOOR",
		StreamMB:   10240,

		AnomalySnapshot:     5 * time.Minute,
		MaxDeviceFields:     1000,
		HTTPMaxConns:        1000,
		HTTPMaxConnsPerAddr: 100,
		MaxOrgSeries:        5_000_000,
		MaxFieldName:        256,
		SDCoreReconcile:     5 * time.Minute,
		MaxTokenTTL:         365 * 24 * time.Hour,
	}
}

// Flags registers one flag per field on fs, plus --config.
func Flags(fs *pflag.FlagSet) {
	d := Default()
	fs.String("config", "", "YAML configuration file (env SHOPFLOOR_CONFIG)")
	v := reflect.ValueOf(d)
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if name == "" {
			continue
		}
		usage := f.Tag.Get("usage") + " (env " + EnvName(name) + ")"
		switch x := v.Field(i).Interface().(type) {
		case string:
			fs.String(name, x, usage)
		case int:
			fs.Int(name, x, usage)
		case time.Duration:
			fs.Duration(name, x, usage)
		case bool:
			fs.Bool(name, x, usage)
		}
	}
}

// EnvName is the environment variable for a flag: --max-payload is
// SHOPFLOOR_MAX_PAYLOAD.
func EnvName(flag string) string {
	return "SHOPFLOOR_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Load resolves the configuration: defaults < file < environment < flags.
func Load(fs *pflag.FlagSet, getenv func(string) string) (Config, error) {
	c := Default()
	path, _ := fs.GetString("config")
	if path == "" {
		path = getenv("SHOPFLOOR_CONFIG")
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read configuration file: %w: %v", ErrInvalid, err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("configuration file %s: %w: %v", path, ErrInvalid, err)
		}
	}
	v := reflect.ValueOf(&c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("flag")
		if name == "" {
			continue
		}
		var raw string
		var set bool
		if fl := fs.Lookup(name); fl != nil && fl.Changed {
			raw, set = fl.Value.String(), true
		} else if e := getenv(EnvName(name)); e != "" {
			raw, set = e, true
		}
		if !set {
			continue
		}
		if err := setField(v.Field(i), raw); err != nil {
			return c, fmt.Errorf("--%s / %s: %w: %v", name, EnvName(name), ErrInvalid, err)
		}
	}
	c.AdminToken = getenv("SHOPFLOOR_ADMIN_TOKEN")
	return c, c.Validate()
}

func setField(f reflect.Value, raw string) error {
	switch f.Interface().(type) {
	case string:
		f.SetString(raw)
	case int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		f.SetInt(int64(n))
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 720h", raw)
		}
		f.SetInt(int64(d))
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		f.SetBool(b)
	}
	return nil
}

// Validate reports the first problem in plain words.
func (c Config) Validate() error {
	if c.Data == "" {
		return fmt.Errorf("data directory is empty: %w", ErrInvalid)
	}
	for name, addr := range map[string]string{"http": c.HTTP, "https": c.HTTPS, "mqtt": c.MQTT, "mqtts": c.MQTTS, "metrics-listen": c.MetricsListen} {
		if addr == "" && name == "http" {
			return fmt.Errorf("--http is empty: the hub needs an HTTP address: %w", ErrInvalid)
		}
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("--%s %q is not host:port (for example :1883 or 127.0.0.1:1883): %w", name, addr, ErrInvalid)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together: %w", ErrInvalid)
	}
	if c.MaxPayload < 1024 || c.MaxPayload > 256<<20 {
		return fmt.Errorf("--max-payload %d must be between 1024 and 268435456 bytes: %w", c.MaxPayload, ErrInvalid)
	}
	for name, v := range map[string]int{"max-device-fields": c.MaxDeviceFields, "max-org-series": c.MaxOrgSeries, "max-field-name": c.MaxFieldName,
		"http-max-conns": c.HTTPMaxConns, "http-max-conns-per-addr": c.HTTPMaxConnsPerAddr} {
		if v < 1 {
			return fmt.Errorf("--%s %d must be at least 1: %w", name, v, ErrInvalid)
		}
	}
	if c.IngestInflight < 0 {
		return fmt.Errorf("--ingest-inflight %d must not be negative (0 chooses by the number of CPUs): %w", c.IngestInflight, ErrInvalid)
	}
	if c.StreamMB < 16 {
		return fmt.Errorf("--stream-mb %d is below 16 MB: %w", c.StreamMB, ErrInvalid)
	}
	if c.Retention < time.Hour {
		return fmt.Errorf("--retention %s is shorter than an hour: %w", c.Retention, ErrInvalid)
	}
	if c.MaxTokenTTL < time.Minute {
		return fmt.Errorf("--max-token-ttl %s is shorter than a minute: devices could not connect long enough to renew their token: %w", c.MaxTokenTTL, ErrInvalid)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: use debug, info, warn or error: %w", c.LogLevel, ErrInvalid)
	}
	if _, err := c.EgressAllowList(); err != nil {
		return err
	}
	if (c.SDCoreUser == "") != (c.SDCorePassword == "") {
		return fmt.Errorf("--sdcore-user and --sdcore-password go together (SHOPFLOOR_SDCORE_USER, SHOPFLOOR_SDCORE_PASSWORD): %w", ErrInvalid)
	}
	if c.SDCoreUser != "" && c.SDCore == "" {
		return fmt.Errorf("--sdcore-user is set but --sdcore (the web console URL) is not: %w", ErrInvalid)
	}
	if c.SDCoreReconcile < 10*time.Second {
		return fmt.Errorf("--sdcore-reconcile %s is shorter than 10s; every reconcile reads the whole core: %w", c.SDCoreReconcile, ErrInvalid)
	}
	if c.NATS != "" && !strings.Contains(c.NATS, "://") {
		return fmt.Errorf("--nats %q must be a URL like nats://host:4222: %w", c.NATS, ErrInvalid)
	}
	return nil
}

// EgressAllowList parses EgressAllow: CIDR ranges or single addresses,
// separated by commas.
func (c Config) EgressAllowList() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(c.EgressAllow, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("--egress-allow %q is not a CIDR range or an address (for example 10.20.0.0/16 or 192.168.5.7): %w", f, ErrInvalid)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
