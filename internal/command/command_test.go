package command

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func startNATS(t testing.TB) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

// fakeGateway answers methods like a device would: "echo" returns the
// payload with status 200, "slow" never answers, others are not listened to.
type fakeGateway struct {
	r *Router
	t testing.TB

	release chan struct{}

	mu          sync.Mutex
	desired     []string
	c2d         int
	revalidated []string
}

func (g *fakeGateway) SendMethod(device, rid, method string, payload []byte) error {
	switch method {
	case "echo":
		go g.r.MethodResponse(device, rid, 200, append([]byte(nil), payload...))
	case "slow":
	case "stuck": // a write to a device that does not read
		<-g.release
	default:
		return fmt.Errorf("%s does not listen for method %s", device, method)
	}
	return nil
}

func (g *fakeGateway) NotifyDesired(device string, version int64, patch []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.desired = append(g.desired, device+"@"+strconv.FormatInt(version, 10)+":"+string(patch))
}

func (g *fakeGateway) DeliverC2D(string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.c2d++
}

func (g *fakeGateway) Revalidate(device string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.revalidated = append(g.revalidated, device)
	return true
}

func newRouter(t testing.TB, url string) (*Router, *fakeGateway) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r, err := New(Config{Conn: nc, Prefix: "sftest"})
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{r: r, t: t, release: make(chan struct{})}
	if err := r.SetDevices(g); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, g
}

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

// Router A holds the device's connection; router B is another hub process.
func TestRouterAcrossProcesses(t *testing.T) {
	url := startNATS(t)
	a, ga := newRouter(t, url)
	b, gb := newRouter(t, url)
	ctx := context.Background()
	const dev = "line.3/press*7>" // '.', '*' and '>' must not break subjects

	if _, _, err := b.Invoke(ctx, "acme", dev, "echo", []byte(`{}`), time.Second); !errors.Is(err, ErrOffline) {
		t.Fatalf("invoke before the device connected: %v", err)
	}
	a.Attach("acme", dev)
	a.Attach("acme", dev) // a takeover overlaps two connections
	a.Detach("acme", dev)
	a.nc.Flush()

	status, body, err := b.Invoke(ctx, "acme", dev, "echo", []byte(`{"speed":3}`), 5*time.Second)
	if err != nil || status != 200 || string(body) != `{"speed":3}` {
		t.Fatalf("echo: %d %s %v", status, body, err)
	}
	if _, _, err := b.Invoke(ctx, "acme", dev, "nosuch", nil, 5*time.Second); !errors.Is(err, ErrOffline) {
		t.Fatalf("a method the device does not listen for: %v", err)
	}
	start := time.Now()
	if _, _, err := b.Invoke(ctx, "acme", dev, "slow", nil, 200*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("slow: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	eventually(t, "the timed-out call to be forgotten", func() bool { return a.Pending() == 0 })
	// The same device id in another organization is another device.
	if _, _, err := b.Invoke(ctx, "globex", dev, "echo", nil, time.Second); !errors.Is(err, ErrOffline) {
		t.Fatalf("other org: %v", err)
	}
	// A response for an unknown rid, or from another device, is refused.
	if a.MethodResponse(dev, "ffff", 200, nil) {
		t.Fatal("unknown rid accepted")
	}

	if err := b.NotifyDesired("acme", dev, 7, []byte(`{"a":1,"$version":7}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.NotifyC2D("acme", dev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the notifications", func() bool {
		ga.mu.Lock()
		defer ga.mu.Unlock()
		return len(ga.desired) == 1 && ga.desired[0] == dev+`@7:{"a":1,"$version":7}` && ga.c2d == 1
	})

	// A credential change made on any process reaches every process: the
	// one holding the connection (this one included) and the others, which
	// drop their cached record of the device.
	if err := b.CredentialsChanged("acme", dev); err != nil {
		t.Fatal(err)
	}
	if err := a.CredentialsChanged("acme", dev); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*fakeGateway{ga, gb} {
		eventually(t, "two credential re-checks", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.revalidated) == 2 && g.revalidated[0] == dev && g.revalidated[1] == dev
		})
	}

	a.Detach("acme", dev)
	if a.Attached() != 0 {
		t.Fatal("still attached")
	}
	a.nc.Flush()
	if _, _, err := b.Invoke(ctx, "acme", dev, "echo", nil, time.Second); !errors.Is(err, ErrOffline) {
		t.Fatalf("invoke after the device left: %v", err)
	}
}

func TestToken(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"press-7", "press.7", "press_7", "~7072657373", "", "a b", "a*", "a>"} {
		tok := token(id)
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c == '.' || c == '*' || c == '>' || c == ' ' {
				t.Fatalf("token(%q) = %q holds %q", id, tok, c)
			}
		}
		if prev, dup := seen[tok]; dup {
			t.Fatalf("token(%q) = token(%q) = %q", id, prev, tok)
		}
		seen[tok] = id
	}
}

// BenchmarkInvoke measures a method round trip over NATS between two
// routers with many devices attached.
func BenchmarkInvoke(b *testing.B) {
	url := startNATS(b)
	a, _ := newRouter(b, url)
	c, _ := newRouter(b, url)
	for i := 0; i < 5000; i++ {
		a.Attach("acme", "dev-"+strconv.Itoa(i))
	}
	a.nc.Flush()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, err := c.Invoke(ctx, "acme", "dev-"+strconv.Itoa(i%5000), "echo", []byte(`{}`), 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// A device whose write blocks holds up only the devices of its worker;
// one device's notifications stay in order.
func TestRouterStuckDevice(t *testing.T) {
	url := startNATS(t)
	a, ga := newRouter(t, url)
	b, _ := newRouter(t, url)
	ctx := context.Background()
	const stuck = "stuck-1"
	other := ""
	for i := 0; other == ""; i++ {
		if id := "dev-" + strconv.Itoa(i); a.worker("acme\x00"+id) != a.worker("acme\x00"+stuck) {
			other = id
		}
	}
	a.Attach("acme", stuck)
	a.Attach("acme", other)
	a.nc.Flush()
	stuckDone := make(chan error, 1)
	go func() {
		_, _, err := b.Invoke(ctx, "acme", stuck, "stuck", nil, 3*time.Second)
		stuckDone <- err
	}()
	eventually(t, "the stuck call to reach its device", func() bool { return a.Pending() == 1 })
	status, _, err := b.Invoke(ctx, "acme", other, "echo", []byte(`1`), 5*time.Second)
	if err != nil || status != 200 {
		t.Fatalf("a device of another worker while one device is stuck: %d %v", status, err)
	}
	for v := int64(1); v <= 50; v++ {
		if err := b.NotifyDesired("acme", other, v, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "50 notifications", func() bool {
		ga.mu.Lock()
		defer ga.mu.Unlock()
		return len(ga.desired) == 50
	})
	ga.mu.Lock()
	for i, d := range ga.desired {
		if want := other + "@" + strconv.Itoa(i+1) + ":{}"; d != want {
			t.Errorf("notification %d is %s, want %s", i, d, want)
		}
	}
	ga.mu.Unlock()
	close(ga.release)
	if err := <-stuckDone; !errors.Is(err, ErrTimeout) {
		t.Fatalf("the stuck call: %v, want a timeout", err)
	}
}

// A device connected to this process is reached without the bus: calls
// and notifications work with the NATS connection closed, and a device
// whose write blocks holds up only its own caller.
func TestRouterLocalDevice(t *testing.T) {
	url := startNATS(t)
	a, ga := newRouter(t, url)
	ctx := context.Background()
	a.Attach("acme", "press-1")
	a.Attach("acme", "press-2")
	a.nc.Close()

	status, body, err := a.Invoke(ctx, "acme", "press-1", "echo", []byte(`{"speed":3}`), 5*time.Second)
	if err != nil || status != 200 || string(body) != `{"speed":3}` {
		t.Fatalf("local echo: %d %s %v", status, body, err)
	}
	if _, _, err := a.Invoke(ctx, "acme", "press-1", "nosuch", nil, 5*time.Second); !errors.Is(err, ErrOffline) {
		t.Fatalf("a method the device does not listen for: %v", err)
	}
	if _, _, err := a.Invoke(ctx, "acme", "press-1", "slow", nil, 100*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("slow: %v", err)
	}
	if a.Pending() != 0 {
		t.Fatalf("%d calls still pending after the timeout", a.Pending())
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, _, err := a.Invoke(cctx, "acme", "press-1", "slow", nil, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	stuck := make(chan error, 1)
	go func() {
		_, _, err := a.Invoke(ctx, "acme", "press-2", "stuck", nil, 2*time.Second)
		stuck <- err
	}()
	eventually(t, "the stuck call to reach its device", func() bool { return a.Pending() == 1 })
	if status, _, err := a.Invoke(ctx, "acme", "press-1", "echo", nil, 5*time.Second); err != nil || status != 200 {
		t.Fatalf("another device while one is stuck: %d %v", status, err)
	}
	if err := a.NotifyDesired("acme", "press-1", 3, []byte(`{"a":1,"$version":3}`)); err != nil {
		t.Fatal(err)
	}
	ga.mu.Lock()
	if len(ga.desired) != 1 || ga.desired[0] != `press-1@3:{"a":1,"$version":3}` {
		t.Errorf("local desired notification: %q", ga.desired)
	}
	ga.mu.Unlock()
	// The write to the stuck device never finishes, yet the caller gets
	// its answer at its own timeout (issue 12, case 6).
	select {
	case err := <-stuck:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("the stuck call: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("a call to a device whose write is stuck did not end at its 2 s timeout")
	}
	close(ga.release)
	if _, _, err := a.Invoke(ctx, "globex", "press-1", "echo", nil, time.Second); err == nil {
		t.Fatal("another organization's device of the same id answered")
	}
}

// A local call waiting for its device ends when the router stops.
func TestRouterLocalCallEndsAtShutdown(t *testing.T) {
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r, err := New(Config{Conn: nc, Prefix: "sftest"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetDevices(&fakeGateway{r: r, t: t, release: make(chan struct{})}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { r.Run(ctx); close(stopped) }()
	r.Attach("acme", "press-1")
	got := make(chan error, 1)
	go func() {
		_, _, err := r.Invoke(context.Background(), "acme", "press-1", "slow", nil, time.Minute)
		got <- err
	}()
	eventually(t, "the call to be pending", func() bool { return r.Pending() == 1 })
	cancel()
	<-stopped
	select {
	case err := <-got:
		if !errors.Is(err, ErrOffline) {
			t.Fatalf("call at shutdown: %v, want ErrOffline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a local call outlived the router")
	}
}
