package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// fakeDevices is an in-memory registry.
type fakeDevices struct {
	mu      sync.Mutex
	devices map[string]registry.Device
	groups  []registry.EnrollmentGroup
	cas     []registry.CACert
	errs    map[string][]string
	lookups int
	// afterRead, when set, runs after LookupDevice read a record and
	// before it returns it, so a test can change the registry meanwhile.
	afterRead func(id string)
}

func newFakeDevices() *fakeDevices {
	return &fakeDevices{devices: map[string]registry.Device{}, errs: map[string][]string{}}
}

func (f *fakeDevices) put(d registry.Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d.Auth == "" {
		d.Auth = registry.AuthSAS
	}
	f.devices[d.ID] = d
}

func (f *fakeDevices) setCAs(cas ...registry.CACert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cas = cas
}

func (f *fakeDevices) setGroups(groups ...registry.EnrollmentGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups = groups
}

func (f *fakeDevices) get(id string) (registry.Device, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	return d, ok
}

func (f *fakeDevices) errors(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.errs[id])
}

func (f *fakeDevices) LookupDevice(_ context.Context, id string) (registry.Device, error) {
	f.mu.Lock()
	f.lookups++
	d, ok := f.devices[id]
	after := f.afterRead
	f.mu.Unlock()
	if after != nil {
		after(id)
	}
	if !ok {
		return registry.Device{}, fmt.Errorf("device %q: %w", id, registry.ErrNotFound)
	}
	return d, nil
}

func (f *fakeDevices) RecordDeviceErrors(_ context.Context, id, msg string, _ int, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[id] = append(f.errs[id], msg)
	return nil
}

func (f *fakeDevices) ListAllEnrollmentGroups(context.Context) ([]registry.EnrollmentGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.groups), nil
}

func (f *fakeDevices) RegisterFromGroup(_ context.Context, groupID, id string) (registry.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[id]; ok {
		return registry.Device{}, registry.ErrConflict
	}
	for _, g := range f.groups {
		if g.ID == groupID {
			pk, _ := azure.DeriveKey(g.PrimaryKey, id)
			sk, _ := azure.DeriveKey(g.SecondaryKey, id)
			d := registry.Device{ID: id, Org: g.Org, Site: g.Site, Template: g.Template, Auth: registry.AuthSAS, PrimaryKey: pk, SecondaryKey: sk, EnrollmentGroup: g.ID}
			f.devices[id] = d
			return d, nil
		}
	}
	return registry.Device{}, registry.ErrNotFound
}

func (f *fakeDevices) ListAllCACerts(context.Context) ([]registry.CACert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cas), nil
}

func (f *fakeDevices) RegisterFromCA(_ context.Context, caID, id string) (registry.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[id]; ok {
		return registry.Device{}, registry.ErrConflict
	}
	for _, c := range f.cas {
		if c.ID == caID {
			d := registry.Device{ID: id, Org: c.Org, Site: c.Site, Auth: registry.AuthX509CA}
			f.devices[id] = d
			return d, nil
		}
	}
	return registry.Device{}, registry.ErrNotFound
}

// fakePublisher records telemetry; it can fail, and block until released.
type fakePublisher struct {
	mu      sync.Mutex
	got     []*bus.Telemetry
	fail    error
	gate    chan struct{} // when set, Publish waits for it to close
	entered chan struct{} // when set, receives once per Publish call
	stored  func()        // called after a message is stored, before returning
}

func (p *fakePublisher) Publish(ctx context.Context, t *bus.Telemetry) error {
	p.mu.Lock()
	gate, entered, fail, stored := p.gate, p.entered, p.fail, p.stored
	p.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	p.mu.Lock()
	p.got = append(p.got, t)
	p.mu.Unlock()
	if stored != nil {
		stored()
	}
	return nil
}

func (p *fakePublisher) messages() []*bus.Telemetry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func (p *fakePublisher) set(fn func(p *fakePublisher)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(p)
}

type fixture struct {
	g    *Gateway
	devs *fakeDevices
	pub  *fakePublisher
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("GATEWAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a real gateway on loopback port 0.
func start(t testing.TB, cfg Config) *fixture {
	t.Helper()
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:0"
	}
	f := &fixture{devs: newFakeDevices(), pub: &fakePublisher{}}
	g, err := New(cfg, f.devs, f.pub, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	f.g = g
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("gateway did not stop")
		}
	})
	return f
}

func newKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// device registers a SAS device and returns its primary key.
func (f *fixture) device(id string) string {
	key := newKey()
	f.devs.put(registry.Device{ID: id, Org: "acme", Site: "plant-1", Template: "press", PrimaryKey: key, SecondaryKey: newKey()})
	return key
}

func username(id string) string { return "localhost/" + id + "/?api-version=2021-04-12" }

func token(t testing.TB, id, key string, expiry time.Time) string {
	t.Helper()
	s, err := azure.SASToken("localhost", id, key, expiry)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recentTS is a device timestamp the gateway accepts (a minute ago, unix ms).
func recentTS() int64 { return time.Now().Add(-time.Minute).UnixMilli() }

func hour() time.Time { return time.Now().Add(time.Hour) }

// v5 is a connected MQTT 5 test client.
type v5 struct {
	c            *paho.Client
	disconnected chan *paho.Disconnect
	failed       chan error
}

// dialV5 connects with MQTT 5 over conn (nil: plain TCP to the gateway).
func dialV5(t testing.TB, f *fixture, conn net.Conn, id, user, pass string) (*v5, *paho.Connack, error) {
	t.Helper()
	if conn == nil {
		var err error
		conn, err = net.Dial("tcp", f.g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := &v5{disconnected: make(chan *paho.Disconnect, 1), failed: make(chan error, 4)}
	cl.c = paho.NewClient(paho.ClientConfig{
		Conn:               packets.NewThreadSafeConn(conn),
		OnServerDisconnect: func(d *paho.Disconnect) { cl.disconnected <- d },
		OnClientError: func(err error) {
			select {
			case cl.failed <- err:
			default:
			}
		},
	})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
	}
	if pass != "" {
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := cl.c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = cl.c.Disconnect(&paho.Disconnect{}) })
	return cl, ca, nil
}

func mustV5(t testing.TB, f *fixture, id, key string) *v5 {
	t.Helper()
	c, _, err := dialV5(t, f, nil, id, username(id), token(t, id, key, hour()))
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

func (c *v5) publish(t testing.TB, topic string, qos byte, payload string, user ...paho.UserProperty) (*paho.PublishResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}
	if len(user) > 0 {
		p.Properties = &paho.PublishProperties{User: user}
	}
	return c.c.Publish(ctx, p)
}

// v3 is a connected MQTT 3.1.1 test client.
type v3 struct {
	c    pahov3.Client
	lost chan error
}

func dialV3(t testing.TB, broker, id, user, pass string, tc *tls.Config) (*v3, byte, error) {
	t.Helper()
	cl := &v3{lost: make(chan error, 1)}
	opts := pahov3.NewClientOptions().AddBroker(broker).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).
		SetConnectionLostHandler(func(_ pahov3.Client, err error) { cl.lost <- err })
	if tc != nil {
		opts.SetTLSConfig(tc)
	}
	cl.c = pahov3.NewClient(opts)
	tok := cl.c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		t.Fatal("3.1.1 connect timed out")
	}
	code := tok.(*pahov3.ConnectToken).ReturnCode()
	if err := tok.Error(); err != nil {
		return nil, code, err
	}
	t.Cleanup(func() { cl.c.Disconnect(100) })
	return cl, code, nil
}

func mustV3(t testing.TB, f *fixture, id, key string) *v3 {
	t.Helper()
	c, _, err := dialV3(t, "tcp://"+f.g.Addr().String(), id, username(id), token(t, id, key, hour()), nil)
	if err != nil {
		t.Fatalf("3.1.1 connect %s: %v", id, err)
	}
	return c
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitLost(t testing.TB, c *v3) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not close the 3.1.1 connection")
	}
}

var errPublish = errors.New("bus unavailable")
