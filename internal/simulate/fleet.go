package simulate

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid simulator configuration")

// Config configures a fleet.
type Config struct {
	URL, Token string      // hub REST API; URL "" skips provisioning and connects without credentials (any MQTT broker)
	MQTTAddr   string      // host:port of the MQTT (or, with TLS, MQTTS) listener
	TLS        *tls.Config // nil connects in plain TCP
	Sites      []string    // site ids; default one site "plant-1"
	Devices    int         // number of devices, spread evenly over the sites
	Rate       float64     // messages per second per device; default 1
	QoS        byte        // 0 or 1
	Seed       int64       // makes device kinds, keys order and signals reproducible
	FaultRate  float64     // mean faults started per device per hour
	Prefix     string      // device id prefix; default "sim-"
	Logger     *slog.Logger
}

// Stats is a snapshot of a running fleet.
type Stats struct {
	Devices     int    `json:"devices"`
	Provisioned int    `json:"provisioned"`
	Connected   int    `json:"connected"`
	Sent        uint64 `json:"sent"`   // published; at QoS 1 acknowledged by the hub
	Errors      uint64 `json:"errors"` // publishes that failed or were not acknowledged in time
	Reconnects  uint64 `json:"reconnects"`
	Faults      uint64 `json:"faults"` // faults started
}

// DeviceInfo describes one simulated device.
type DeviceInfo struct {
	ID   string `json:"id"`
	Site string `json:"site"`
	Kind Kind   `json:"kind"`
}

// Fleet is a set of simulated devices.
type Fleet struct {
	cfg     Config
	log     *slog.Logger
	client  *Client
	host    string
	devices []*device

	provisionMu sync.Mutex
	provisioned atomic.Int64
	connected   atomic.Int64
	sent        atomic.Uint64
	errs        atomic.Uint64
	reconnects  atomic.Uint64
	faults      atomic.Uint64
}

type device struct {
	DeviceInfo
	seed  int64
	key   string // primary key, set by Provision
	model *Model // used only by the device's own goroutine
}

// kindCycle is the mix of machines on a site: mostly machining centres,
// then robots, AGVs and a compressor station.
func kindCycle() []Kind {
	return []Kind{KindCNC, KindRobot, KindCompressor, KindAGV, KindCNC, KindCNC, KindRobot, KindAGV, KindCNC, KindRobot}
}

// New checks the configuration and lays out the fleet; it does not connect.
func New(cfg Config) (*Fleet, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(cfg.Sites) == 0 {
		cfg.Sites = []string{"plant-1"}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sim-"
	}
	if cfg.Rate == 0 {
		cfg.Rate = 1
	}
	switch {
	case cfg.Devices <= 0:
		return nil, fmt.Errorf("--devices %d: simulate at least one device: %w", cfg.Devices, ErrConfig)
	case cfg.Rate < 0 || cfg.Rate > 1000:
		return nil, fmt.Errorf("--rate %g: messages per second per device must be between 0.001 and 1000: %w", cfg.Rate, ErrConfig)
	case cfg.QoS > 1:
		return nil, fmt.Errorf("--qos %d: use 0 or 1 (the hub speaks the Azure IoT Hub dialect, which has no QoS 2): %w", cfg.QoS, ErrConfig)
	case cfg.FaultRate < 0:
		return nil, fmt.Errorf("--fault-rate %g: must not be negative: %w", cfg.FaultRate, ErrConfig)
	}
	host, _, err := net.SplitHostPort(cfg.MQTTAddr)
	if err != nil {
		return nil, fmt.Errorf("--mqtt %q is not host:port (for example 127.0.0.1:1883): %w", cfg.MQTTAddr, ErrConfig)
	}
	for _, s := range cfg.Sites {
		if s == "" || strings.ContainsAny(s, "/+# ") {
			return nil, fmt.Errorf("site id %q: use letters, digits and dashes: %w", s, ErrConfig)
		}
	}
	f := &Fleet{cfg: cfg, log: cfg.Logger, host: host}
	if cfg.URL != "" {
		f.client = NewClient(cfg.URL, cfg.Token, nil)
	}
	cycle := kindCycle()
	count := map[string]int{}
	for i := range cfg.Devices {
		site := cfg.Sites[i%len(cfg.Sites)]
		kind := cycle[(i/len(cfg.Sites))%len(cycle)]
		count[site+string(kind)]++
		id := fmt.Sprintf("%s%s-%s-%02d", cfg.Prefix, site, kind, count[site+string(kind)])
		d := &device{DeviceInfo: DeviceInfo{ID: id, Site: site, Kind: kind}, seed: deviceSeed(cfg.Seed, id)}
		f.devices = append(f.devices, d)
	}
	return f, nil
}

// deviceSeed gives every device its own stream, stable under a change of
// fleet size.
func deviceSeed(seed int64, id string) int64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return seed ^ int64(h.Sum64())
}

// Devices lists the simulated devices.
func (f *Fleet) Devices() []DeviceInfo {
	out := make([]DeviceInfo, len(f.devices))
	for i, d := range f.devices {
		out[i] = d.DeviceInfo
	}
	return out
}

// Stats returns a snapshot of the counters.
func (f *Fleet) Stats() Stats {
	return Stats{
		Devices:     len(f.devices),
		Provisioned: int(f.provisioned.Load()),
		Connected:   int(f.connected.Load()),
		Sent:        f.sent.Load(),
		Errors:      f.errs.Load(),
		Reconnects:  f.reconnects.Load(),
		Faults:      f.faults.Load(),
	}
}

// Provision creates the sites and devices on the hub; what exists already
// is reused with its keys, so it is safe to run again.
func (f *Fleet) Provision(ctx context.Context) error {
	if f.client == nil {
		return nil
	}
	f.provisionMu.Lock()
	defer f.provisionMu.Unlock()
	for _, s := range f.cfg.Sites {
		if err := f.client.EnsureSite(ctx, s, siteName(s)); err != nil {
			return fmt.Errorf("provision site %s: %w", s, err)
		}
	}
	kinds := map[Kind]bool{}
	for _, d := range f.devices {
		if kinds[d.Kind] {
			continue
		}
		kinds[d.Kind] = true
		spec, err := d.Kind.TemplateSpec()
		if err != nil {
			return fmt.Errorf("template of %s machines: %w", d.Kind, err)
		}
		if err := f.client.EnsureTemplate(ctx, spec); err != nil {
			return fmt.Errorf("provision template %s: %w", spec.ID, err)
		}
	}
	f.provisioned.Store(0)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, d := range f.devices {
		g.Go(func() error {
			got, err := f.client.EnsureDevice(gctx, DeviceSpec{
				ID: d.ID, Site: d.Site, Template: d.Kind.Template(),
				Tags: map[string]string{"simulated": "true", "kind": string(d.Kind)},
			})
			if err != nil {
				return fmt.Errorf("provision device %s: %w", d.ID, err)
			}
			if got.PrimaryKey == "" {
				return fmt.Errorf("provision device %s: the hub returned no primaryKey (does the token's role allow reading keys?): %w", d.ID, ErrAPI)
			}
			d.key = got.PrimaryKey
			f.provisioned.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	f.log.Info("fleet provisioned", "sites", len(f.cfg.Sites), "devices", len(f.devices))
	return nil
}

func siteName(id string) string {
	words := strings.FieldsFunc(id, func(r rune) bool { return r == '-' || r == '_' })
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// Run connects every device and publishes until ctx is done. Devices
// reconnect by themselves after a drop. It provisions first when
// Provision has not been called.
func (f *Fleet) Run(ctx context.Context) error {
	if f.client != nil && int(f.provisioned.Load()) < len(f.devices) {
		if err := f.Provision(ctx); err != nil {
			return err
		}
	}
	// Bound simultaneous connection attempts so a large fleet does not
	// storm the hub at start.
	connectSlots := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, d := range f.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.runDevice(ctx, d, connectSlots)
		}()
	}
	wg.Wait()
	return nil
}

func (f *Fleet) runDevice(ctx context.Context, d *device, connectSlots chan struct{}) {
	log := f.log.With("device", d.ID)
	if d.model == nil {
		m, err := NewModel(d.Kind, d.seed, f.cfg.FaultRate)
		if err != nil {
			log.Error("device model", "err", err) // cannot happen: kinds come from kindCycle
			return
		}
		m.OnFault(func(ft Fault) {
			f.faults.Add(1)
			log.Info("fault injected", "fault", ft.Kind, "field", ft.Field, "until", ft.End.Format(time.TimeOnly))
		})
		d.model = m
	}
	var up atomic.Bool
	opts := f.clientOptions(d).
		SetOnConnectHandler(func(mqtt.Client) {
			if up.CompareAndSwap(false, true) {
				f.connected.Add(1)
			}
		}).
		SetConnectionLostHandler(func(c mqtt.Client, err error) {
			// paho runs this handler on its own goroutine, so it can come
			// after the automatic reconnect's OnConnect: then the device is
			// connected again and stays counted.
			if !c.IsConnectionOpen() && up.CompareAndSwap(true, false) {
				f.connected.Add(-1)
			}
			f.reconnects.Add(1)
			log.Warn("connection lost; reconnecting", "err", err)
		})
	c := mqtt.NewClient(opts)
	defer func() {
		c.Disconnect(250)
		if up.CompareAndSwap(true, false) {
			f.connected.Add(-1)
		}
	}()

	select {
	case connectSlots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	tok := c.Connect() // retries by itself until it succeeds
	select {
	case <-tok.Done():
	case <-ctx.Done():
	}
	<-connectSlots
	if ctx.Err() != nil {
		return
	}
	if err := tok.Error(); err != nil {
		log.Error("connect failed", "err", err)
		return
	}

	interval := time.Duration(float64(time.Second) / f.cfg.Rate)
	// Spread the devices' publishes over the interval.
	phase := time.Duration(rand.New(rand.NewPCG(uint64(d.seed), 1)).Int64N(int64(interval)))
	timer := time.NewTimer(phase)
	defer timer.Stop()
	topic := azure.TelemetryTopic(d.ID, nil)
	next := time.Now().Add(phase)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		next = next.Add(interval)
		if next.Before(now) {
			next = now.Add(interval) // fell behind (e.g. disconnected): skip, do not burst
		}
		timer.Reset(time.Until(next))
		if !c.IsConnectionOpen() {
			d.model.Next(now) // the machine keeps working while offline
			continue
		}
		sample := d.model.Next(now)
		sample["ts"] = now.UnixMilli()
		payload, err := json.Marshal(sample)
		if err != nil {
			f.errs.Add(1)
			continue
		}
		if f.publish(ctx, c, topic, payload) {
			f.sent.Add(1)
		} else {
			f.errs.Add(1)
		}
	}
}

func (f *Fleet) publish(ctx context.Context, c mqtt.Client, topic string, payload []byte) bool {
	tok := c.Publish(topic, f.cfg.QoS, false, payload)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error() == nil
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}

// clientOptions builds the MQTT options of one device: client id = device
// id, the Azure IoT Hub user name, and a fresh SAS token on every connect.
func (f *Fleet) clientOptions(d *device) *mqtt.ClientOptions {
	scheme := "tcp://"
	if f.cfg.TLS != nil {
		scheme = "ssl://"
	}
	opts := mqtt.NewClientOptions().
		AddBroker(scheme + f.cfg.MQTTAddr).
		SetClientID(d.ID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetKeepAlive(60 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(2 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetOrderMatters(false)
	if f.cfg.TLS != nil {
		opts.SetTLSConfig(f.cfg.TLS)
	}
	if d.key != "" {
		opts.SetCredentialsProvider(func() (string, string) {
			user, pass, err := Credentials(f.host, d.ID, d.key, time.Now().Add(24*time.Hour))
			if err != nil {
				f.log.Error("cannot sign a SAS token; the device key from the hub is unusable", "device", d.ID, "err", err)
			}
			return user, pass
		})
	}
	return opts
}

// Credentials returns the MQTT user name and password (a SAS token valid
// until expiry) a device uses to connect to the hub in the Azure IoT Hub
// dialect.
func Credentials(host, deviceID, key string, expiry time.Time) (username, password string, err error) {
	password, err = azure.SASToken(host, deviceID, key, expiry)
	if err != nil {
		return "", "", fmt.Errorf("sign SAS token for %s: %w", deviceID, err)
	}
	return host + "/" + deviceID + "/?api-version=2021-04-12", password, nil
}
