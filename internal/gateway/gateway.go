package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// ErrConfig is returned by New for an unusable configuration.
var ErrConfig = errors.New("invalid gateway configuration")

// Config configures the gateway. Zero values take the documented defaults.
type Config struct {
	MQTTAddr  string      // plain MQTT, e.g. ":1883"; empty disables
	MQTTSAddr string      // MQTT over TLS, e.g. ":8883"; empty disables
	TLS       *tls.Config // server certificate for MQTTSAddr; the gateway requests client certificates itself and checks them at CONNECT

	MaxPayload     int           // largest telemetry payload in bytes; default 256 KiB
	MaxFields      int           // most values in one telemetry message; default 1000
	PublishTimeout time.Duration // how long a message may wait for the bus before it is refused; default 10s
	DeviceCacheTTL time.Duration // how long device records, enrollment groups and CAs are cached; default 5s
	ConnectTimeout time.Duration // time allowed for the TLS handshake and the CONNECT packet; default 10s
	WriteTimeout   time.Duration // longest one write to a device may block before the device is disconnected as stuck; default 10s
	SessionExpiry  time.Duration // longest a persistent session of a disconnected device is kept; default 1h
	// MaxTokenTTL is the longest lifetime (expiry minus now, at CONNECT)
	// of a SAS token the gateway accepts; default DefaultMaxTokenTTL.
	MaxTokenTTL time.Duration

	// Per-connection buffers, sized for many idle devices: a 10,000-device
	// hub spends about ReadBufferSize plus a few KiB per connection.
	ReadBufferSize   int // bufio reader per connection; default 1 KiB (larger packets bypass it)
	WriteBufferSize  int // write coalescing buffer, allocated only while writes queue; default 2 KiB
	MaxPendingWrites int // outbound packets queued per connection before messages to it are dropped; default 64

	// OnConnection, when set, is told when a device's session is
	// established and when it ends (rules use it for disconnected(...)).
	// It runs on mochi's goroutine, so it must not block.
	OnConnection func(org, device string, connected bool, at time.Time)

	// Admit, when set, decides at CONNECT, after the credentials passed,
	// whether the device may use the network: the connectivity service
	// refuses a device whose SIM is not active or whose IMEI is not the
	// locked one. imei is what the device presented (MQTT 5 user property
	// "imei", or "imei=" in the user name's query for 3.1.1), or "".
	Admit func(ctx context.Context, deviceID, imei string) (allow bool, reason string, err error)

	// Meter, when set, counts a device's MQTT bytes each way (uplink true:
	// device to hub) and returns how long to hold the device back so it
	// stays within its bitrate; the gateway pauses reading from an uplink
	// that is over its rate, which throttles the device through TCP.
	Meter func(deviceID string, uplink bool, bytes int) time.Duration

	// MaxInflight bounds the telemetry messages being flattened and stored
	// at once; default 64 per CPU, at least 128. Beyond it messages wait,
	// ordered by Priority, for at most PublishTimeout.
	MaxInflight int
	// Priority, when set, ranks a device's messages while they wait for
	// the bus under overload: 0 (first) to 15 (last), as a traffic class's
	// ARP. Asked only when a message has to wait. Nil: first come, first
	// served.
	Priority func(deviceID string) int

	// Limits, when set, is asked before a message is stored whether its
	// field names keep the device and its organization within their
	// cardinality limits (quota.Tracker); a refused message is not stored
	// and the device is told (MQTT 5 PUBACK 0x97) and its last error says
	// which limit.
	Limits Limits

	// LastStamp, when set, gives the newest timestamp stored for a device
	// (the time-series store knows it), so that the first hub-given stamp
	// of a device in this process comes after any an earlier process gave
	// it ahead of the clock. Asked once per device and process.
	LastStamp func(org, device string) int64

	// Cloud, when set, serves twins, direct methods and cloud-to-device
	// messages (see iothub.go); without it $iothub requests are ignored.
	Cloud Cloud
}

const (
	defaultMaxPayload = 256 * 1024
	// packetOverhead is what a PUBLISH may carry beyond its payload (topic,
	// property bag, user properties) before mochi refuses the packet.
	packetOverhead = 16 * 1024
)

func (c Config) withDefaults() Config {
	if c.MaxPayload <= 0 {
		c.MaxPayload = defaultMaxPayload
	}
	if c.MaxFields <= 0 {
		c.MaxFields = 1000
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.DeviceCacheTTL <= 0 {
		c.DeviceCacheTTL = 5 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.SessionExpiry <= 0 {
		c.SessionExpiry = time.Hour
	}
	if c.MaxTokenTTL <= 0 {
		c.MaxTokenTTL = DefaultMaxTokenTTL
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = 1024
	}
	if c.WriteBufferSize <= 0 {
		c.WriteBufferSize = 2048
	}
	if c.MaxPendingWrites <= 0 {
		c.MaxPendingWrites = 64
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = defaultMaxInflight()
	}
	return c
}

// Devices is what the gateway needs from the registry; *registry.Service
// satisfies it.
type Devices interface {
	LookupDevice(ctx context.Context, id string) (registry.Device, error)
	RecordDeviceErrors(ctx context.Context, id, msg string, n int, at time.Time) error
	ListAllEnrollmentGroups(ctx context.Context) ([]registry.EnrollmentGroup, error)
	RegisterFromGroup(ctx context.Context, groupID, deviceID string) (registry.Device, error)
	ListAllCACerts(ctx context.Context) ([]registry.CACert, error)
	RegisterFromCA(ctx context.Context, caID, deviceID string) (registry.Device, error)
}

// Limits decides whether a device may use these field names; it records
// the new ones when it allows them. *quota.Tracker satisfies it.
type Limits interface {
	Admit(org, device string, names []string) error
}

// Publisher makes telemetry durable; Publish returns only when the message
// is durable in the bus.
type Publisher interface {
	Publish(ctx context.Context, t *bus.Telemetry) error
}

// Gateway is the MQTT gateway.
type Gateway struct {
	cfg     Config
	devices Devices
	pub     Publisher
	log     *slog.Logger

	server *mqtt.Server
	plain  *tcpListener
	secure *tcpListener
	ws     *wsListener

	ctx    context.Context // cancelled by Close: aborts registry and bus calls
	cancel context.CancelFunc

	sessions sync.Map // *mqtt.Client -> *session
	stamps   sync.Map // device id -> *atomic.Int64: last hub-given timestamp (stamp)
	auth     *authenticator
	errs     errorRecorder
	serving  atomic.Bool
	stats    counters
	metrics  *metrics
	gate     *ingestGate // orders ingest by priority under overload

	started   atomic.Bool
	closeOnce sync.Once
}

// session is what the gateway knows about one authenticated connection,
// cached at CONNECT so that the per-message path needs no registry query.
type session struct {
	org, device, site, template string
	will                        *will
	cred                        credential // what the connection proved at CONNECT (revoke.go)
	drops                       uint64     // the device's dropClock before its record was read
	expiry                      atomic.Pointer[time.Timer]
	established                 atomic.Bool
	messages, malformed         atomic.Uint64
	names                       []string      // scratch for Limits; used only on the connection's goroutine
	subs                        atomic.Uint32 // sub* flags: what the device listens for
	c2d                         c2dState
	downMu                      sync.Mutex
	down                        downlink
}

// will is a device's last-will message, sent as telemetry when the
// connection drops without DISCONNECT (as IoT Hub does).
type will struct {
	bag     string
	payload []byte
	user    []packets.UserProperty
}

// New creates a gateway and binds its listeners, so Addr and TLSAddr are
// known before Run.
func New(cfg Config, devices Devices, pub Publisher, logger *slog.Logger) (*Gateway, error) {
	if devices == nil || pub == nil {
		return nil, fmt.Errorf("%w: devices and publisher are required", ErrConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if cfg.MQTTSAddr != "" && (cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil) {
		return nil, fmt.Errorf("%w: MQTT over TLS on %s needs a server certificate (see pki.EnsureServerCert)", ErrConfig, cfg.MQTTSAddr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:     cfg,
		devices: devices,
		pub:     pub,
		log:     logger,
		ctx:     ctx,
		cancel:  cancel,
		errs:    errorRecorder{last: map[string]time.Time{}, pending: map[string]*pendingErrors{}},
		metrics: newMetrics(),
		gate:    newIngestGate(cfg.MaxInflight),
	}
	g.auth = newAuthenticator(devices, cfg.DeviceCacheTTL, logger)

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MaxPayload + packetOverhead)
	caps.MaximumClientWritesPending = int32(cfg.MaxPendingWrites)
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	caps.MaximumInflight = 256
	caps.ReceiveMaximum = 128
	caps.TopicAliasMaximum = 16
	caps.Compatibilities.NoInheritedPropertiesOnAck = true // acks must not echo user properties (and so carry the 0x00 reason)
	g.server = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  cfg.ReadBufferSize,
		ClientNetWriteBufferSize: cfg.WriteBufferSize,
		Logger:                   slog.New(brokerLogHandler{logger.With("component", "mqtt-broker").Handler()}),
		SysTopicResendInterval:   3600, // nobody may subscribe to $SYS; don't rebuild it every second
	})
	if err := g.server.AddHook(&hook{g: g}, nil); err != nil {
		cancel()
		return nil, fmt.Errorf("add gateway hook: %w", err)
	}

	maxPacket := cfg.MaxPayload + packetOverhead
	var err error
	fail := func(e error) (*Gateway, error) {
		g.closeListeners()
		cancel()
		return nil, e
	}
	if cfg.MQTTAddr != "" {
		if g.plain, err = listenTCP("mqtt", cfg.MQTTAddr, nil, cfg.ConnectTimeout, cfg.WriteTimeout, logger); err != nil {
			return fail(err)
		}
		if err := g.server.AddListener(g.plain); err != nil {
			return fail(err)
		}
	}
	if cfg.MQTTSAddr != "" {
		tc := cfg.TLS.Clone()
		tc.ClientAuth = tls.RequestClientCert // verified against the registry at CONNECT
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		if g.secure, err = listenTCP("mqtts", cfg.MQTTSAddr, tc, cfg.ConnectTimeout, cfg.WriteTimeout, logger); err != nil {
			return fail(err)
		}
		if err := g.server.AddListener(g.secure); err != nil {
			return fail(err)
		}
	}
	g.ws = newWSListener("ws", maxPacket, cfg.ConnectTimeout, cfg.WriteTimeout, logger)
	if err := g.server.AddListener(g.ws); err != nil {
		return fail(err)
	}
	return g, nil
}

func (g *Gateway) closeListeners() {
	for _, l := range []*tcpListener{g.plain, g.secure} {
		if l != nil {
			l.ln.Close()
		}
	}
}

// Run serves until ctx is done, then closes the gateway.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Run called twice", ErrConfig)
	}
	if g.ctx.Err() != nil {
		return fmt.Errorf("%w: gateway already closed", ErrConfig)
	}
	if err := g.server.Serve(); err != nil {
		return fmt.Errorf("start MQTT broker: %w", err)
	}
	g.serving.Store(true)
	g.log.Info("MQTT gateway serving", "mqtt", addrString(g.Addr()), "mqtts", addrString(g.TLSAddr()))
	tick := time.NewTicker(g.cfg.DeviceCacheTTL)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return g.Close()
		case <-g.ctx.Done():
			return nil
		case now := <-tick.C:
			g.sweep(now)
		}
	}
}

// Serving reports whether the broker accepts connections on every listener.
func (g *Gateway) Serving() bool { return g.serving.Load() }

// Close disconnects all devices and releases the listeners. Messages whose
// Publish is still running are not acknowledged.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.cancel()
		_ = g.server.Close()
		g.closeListeners()
	})
	return nil
}

// Addr is the bound plain MQTT address, nil when disabled.
func (g *Gateway) Addr() net.Addr {
	if g.plain == nil {
		return nil
	}
	return g.plain.ln.Addr()
}

// TLSAddr is the bound MQTT/TLS address, nil when disabled.
func (g *Gateway) TLSAddr() net.Addr {
	if g.secure == nil {
		return nil
	}
	return g.secure.ln.Addr()
}

// WebSocketHandler serves MQTT over WebSocket (subprotocol "mqtt"); mount
// it on the hub's HTTP server, e.g. at /mqtt and /$iothub/websocket. Client
// certificates of a TLS HTTP server are honoured like on MQTTSAddr.
func (g *Gateway) WebSocketHandler() http.Handler { return g.ws }

// Connected reports whether a device has a live, authenticated connection.
func (g *Gateway) Connected(deviceID string) bool {
	cl, ok := g.server.Clients.Get(deviceID)
	if !ok || cl.Closed() {
		return false
	}
	v, ok := g.sessions.Load(cl)
	return ok && v.(*session).established.Load()
}

// Disconnect closes a device's connection (MQTT 5 clients get DISCONNECT
// with reason 0x98 administrative action) and drops its cached record, so
// that a disabled or deleted device is refused when it reconnects. It
// reports whether a connection was closed.
func (g *Gateway) Disconnect(deviceID string) bool {
	g.auth.forget(deviceID)
	cl, ok := g.server.Clients.Get(deviceID)
	if !ok || cl.Closed() {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		_ = g.server.DisconnectClient(cl, packets.ErrAdministrativeAction)
	} else {
		cl.Stop(packets.ErrAdministrativeAction) // MQTT 3.1.1 has no server DISCONNECT
	}
	return true
}

// Forget drops a device's cached registry record, e.g. after its keys were
// regenerated, without disconnecting it.
func (g *Gateway) Forget(deviceID string) { g.auth.forget(deviceID) }

// DeviceCounters are per-connection counters of a connected device.
type DeviceCounters struct {
	Messages  uint64 // telemetry publishes received on this connection
	Malformed uint64 // of which not stored because malformed
}

// DeviceStats returns the counters of a device's current connection.
func (g *Gateway) DeviceStats(deviceID string) (DeviceCounters, bool) {
	cl, ok := g.server.Clients.Get(deviceID)
	if !ok {
		return DeviceCounters{}, false
	}
	v, ok := g.sessions.Load(cl)
	if !ok {
		return DeviceCounters{}, false
	}
	s := v.(*session)
	return DeviceCounters{Messages: s.messages.Load(), Malformed: s.malformed.Load()}, true
}

// sweep drops expired cache entries and sessions of connections that ended
// without reaching OnDisconnect (a failed CONNACK write).
func (g *Gateway) sweep(now time.Time) {
	g.auth.sweep(now)
	g.flushErrors(now)
	g.sessions.Range(func(k, v any) bool {
		cl := k.(*mqtt.Client)
		if cl.Closed() && cl.StopTime() > 0 && now.Unix()-cl.StopTime() > 60 {
			if g.sessions.CompareAndDelete(k, v) && v.(*session).established.Load() {
				g.stats.connections.Add(-1)
			}
		}
		return true
	})
}

func addrString(a net.Addr) string {
	if a == nil {
		return "disabled"
	}
	return a.String()
}

// errorRecorder writes a device's errors to the registry at most once per
// second, so a device flooding bad messages cannot flood the registry;
// errors in between are counted and written with the next write.
type errorRecorder struct {
	mu      sync.Mutex
	last    map[string]time.Time
	pending map[string]*pendingErrors
}

type pendingErrors struct {
	n   int
	msg string
	at  time.Time
}

// add counts an error; it returns what to write now (n > 0) or nothing.
func (r *errorRecorder) add(id, msg string, now time.Time) (n int, last string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[id]
	if p == nil {
		p = &pendingErrors{}
		r.pending[id] = p
	}
	p.n++
	p.msg, p.at = msg, now
	if now.Sub(r.last[id]) < time.Second {
		return 0, "", time.Time{}
	}
	r.last[id] = now
	delete(r.pending, id)
	return p.n, p.msg, p.at
}

// due takes the held-back errors whose second has passed.
func (r *errorRecorder) due(now time.Time) map[string]pendingErrors {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]pendingErrors{}
	for id, p := range r.pending {
		if now.Sub(r.last[id]) >= time.Second {
			out[id] = *p
			r.last[id] = now
			delete(r.pending, id)
		}
	}
	for id, t := range r.last {
		if now.Sub(t) > time.Minute && r.pending[id] == nil {
			delete(r.last, id)
		}
	}
	return out
}

// recordError stores a problem on the device record for its owner to see.
func (g *Gateway) recordError(deviceID, msg string, now time.Time) {
	if n, last, at := g.errs.add(deviceID, msg, now); n > 0 {
		g.writeErrors(deviceID, last, n, at)
	}
}

// flushErrors writes errors held back by the once-a-second limit.
func (g *Gateway) flushErrors(now time.Time) {
	for id, p := range g.errs.due(now) {
		g.writeErrors(id, p.msg, p.n, p.at)
	}
}

func (g *Gateway) writeErrors(deviceID, msg string, n int, at time.Time) {
	ctx, cancel := context.WithTimeout(g.ctx, 2*time.Second)
	defer cancel()
	if err := g.devices.RecordDeviceErrors(ctx, deviceID, msg, n, at); err != nil {
		g.log.Debug("could not record device error", "device", deviceID, "error", err)
	}
}

// brokerLogHandler drops mochi's per-message "publish packet error" lines:
// the gateway logs refused messages itself with the device and the cause.
type brokerLogHandler struct{ slog.Handler }

func (h brokerLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h brokerLogHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return brokerLogHandler{h.Handler.WithAttrs(a)}
}

func (h brokerLogHandler) WithGroup(n string) slog.Handler {
	return brokerLogHandler{h.Handler.WithGroup(n)}
}
