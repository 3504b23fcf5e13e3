package command

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Sentinel errors.
var (
	ErrOffline = errors.New("device is not connected")
	ErrTimeout = errors.New("device did not answer in time")
	ErrConfig  = errors.New("invalid command router configuration")
)

// Devices is the local gateway: it writes to devices connected to this
// process. SendMethod returns an error wrapping ErrOffline when the device
// is not connected here or does not listen for methods.
type Devices interface {
	SendMethod(device, rid, method string, payload []byte) error
	NotifyDesired(device string, version int64, patch []byte)
	DeliverC2D(device string)
	// Revalidate re-checks the credential of the device's connection here
	// against its registry record and ends the connection if it no longer
	// holds.
	Revalidate(device string) bool
}

// Config configures a Router.
type Config struct {
	Conn    *nats.Conn
	Prefix  string  // lower-case subject prefix, e.g. "shopfloor"
	Devices Devices // may be set later with SetDevices, before Run
	Logger  *slog.Logger
	// Buffer is how many incoming messages may wait for dispatch; default 8192.
	Buffer int
	// Workers dispatch in parallel, each for its share of the devices (so
	// one device's traffic stays in order); default 8. A write to a device
	// that does not read blocks only the devices of its worker.
	Workers int
	// Check, when set, sees every method call before it goes out: the hub
	// counts payloads that break the device's template (the call goes
	// ahead all the same; the device has the last word).
	Check func(ctx context.Context, org, device, method string, payload []byte)
}

// Kinds of per-device subjects.
const (
	kindMethod  = "method"
	kindDesired = "desired"
	kindC2D     = "c2d"
)

// changedSubject (under the prefix) carries "a device's credentials changed"
// to every hub process, whether or not it holds the device's connection:
// each drops its cached record, so a revoked key cannot connect to another
// process for the few seconds that record would otherwise live.
const changedSubject = ".devices.changed"

// NATS headers of a method call.
const (
	hdrMethod  = "Sf-Method"
	hdrTimeout = "Sf-Timeout-Ms"
	hdrStatus  = "Sf-Status"
	hdrError   = "Sf-Error"
	hdrDevice  = "Sf-Device"
	hdrVersion = "Sf-Version"
	hdrOrg     = "Sf-Org"
)

// Router routes cloud-to-device traffic over NATS.
type Router struct {
	nc      *nats.Conn
	prefix  string
	devices Devices
	log     *slog.Logger
	check   func(ctx context.Context, org, device, method string, payload []byte)
	in      []chan *nats.Msg // one per worker

	mu       sync.Mutex
	attached map[string]*attachment // org \x00 device
	pending  map[string]*call       // rid
	nextRID  atomic.Uint64
	closed   bool
	changes  *nats.Subscription // credential changes (SetDevices)
}

type attachment struct {
	sub *nats.Subscription
	n   int // connections of the device on this process (a takeover overlaps)
}

type call struct {
	device string
	reply  string      // NATS inbox of a remote caller
	done   chan answer // a caller in this process
	timer  *time.Timer // remote calls: forgets the call at its timeout
}

// answer completes a local call. Whoever removes a call from pending
// sends its one answer: the device's, or an error when the router closes.
type answer struct {
	status  int
	payload []byte
	err     error
}

// New creates a router; Run dispatches.
func New(cfg Config) (*Router, error) {
	if cfg.Conn == nil || cfg.Prefix == "" {
		return nil, fmt.Errorf("%w: a NATS connection and a subject prefix are required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 8192
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	in := make([]chan *nats.Msg, cfg.Workers)
	for i := range in {
		in[i] = make(chan *nats.Msg, max(cfg.Buffer/cfg.Workers, 64))
	}
	r := &Router{nc: cfg.Conn, prefix: cfg.Prefix, log: cfg.Logger, check: cfg.Check,
		in: in, attached: map[string]*attachment{}, pending: map[string]*call{}}
	if cfg.Devices != nil {
		if err := r.SetDevices(cfg.Devices); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// worker is the channel that dispatches key's traffic (FNV-1a).
func (r *Router) worker(key string) chan *nats.Msg {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return r.in[h%uint32(len(r.in))]
}

// SetDevices sets the local gateway (it is built after the router) and
// starts watching credential changes for it. Call it once, before Run.
func (r *Router) SetDevices(d Devices) error {
	r.devices = d
	sub, err := r.nc.Subscribe(r.prefix+changedSubject, func(m *nats.Msg) {
		if dev := m.Header.Get(hdrDevice); dev != "" {
			d.Revalidate(dev)
		}
	})
	if err != nil {
		return fmt.Errorf("watch device credential changes on the bus: %w", err)
	}
	r.mu.Lock()
	r.changes = sub
	r.mu.Unlock()
	return nil
}

// token escapes an id for one subject token: ids of only [A-Za-z0-9_-] stay
// as they are, any other is "~" and its hex (ids may hold '.', '*', '>').
func token(id string) string {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "~" + hex.EncodeToString([]byte(id))
		}
	}
	if id == "" {
		return "~"
	}
	return id
}

// Subject is a device's subject of one kind.
func (r *Router) Subject(org, device, kind string) string {
	return r.prefix + ".dev." + token(org) + "." + token(device) + "." + kind
}

// Attach subscribes a device connected to this process. Call Detach as
// often as Attach.
func (r *Router) Attach(org, device string) {
	key := org + "\x00" + device
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if a := r.attached[key]; a != nil {
		a.n++
		return
	}
	sub, err := r.nc.ChanSubscribe(r.prefix+".dev."+token(org)+"."+token(device)+".*", r.worker(key))
	if err != nil {
		r.log.Warn("cannot route methods and messages to a device", "device", device, "error", err)
		return
	}
	r.attached[key] = &attachment{sub: sub, n: 1}
}

// Detach drops a device's subscription when its last connection here ended.
func (r *Router) Detach(org, device string) {
	key := org + "\x00" + device
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.attached[key]
	if a == nil {
		return
	}
	if a.n--; a.n <= 0 {
		_ = a.sub.Unsubscribe()
		delete(r.attached, key)
	}
}

// Attached is how many devices are subscribed on this process.
func (r *Router) Attached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.attached)
}

// Run dispatches incoming messages until ctx ends, then unsubscribes.
func (r *Router) Run(ctx context.Context) error {
	defer r.close()
	var wg sync.WaitGroup
	for _, in := range r.in {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-in:
					r.dispatch(m)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

func (r *Router) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.changes != nil {
		_ = r.changes.Unsubscribe()
		r.changes = nil
	}
	for k, a := range r.attached {
		_ = a.sub.Unsubscribe()
		delete(r.attached, k)
	}
	for rid, c := range r.pending {
		if c.timer != nil {
			c.timer.Stop()
		}
		if c.done != nil {
			c.done <- answer{err: fmt.Errorf("%w: %s: the hub is shutting down", ErrOffline, c.device)}
		}
		delete(r.pending, rid)
	}
}

func (r *Router) dispatch(m *nats.Msg) {
	kind := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	device := m.Header.Get(hdrDevice)
	if device == "" || r.devices == nil {
		return
	}
	switch kind {
	case kindMethod:
		r.startCall(m, device)
	case kindDesired:
		v, err := strconv.ParseInt(m.Header.Get(hdrVersion), 10, 64)
		if err != nil {
			return
		}
		r.devices.NotifyDesired(device, v, m.Data)
	case kindC2D:
		r.devices.DeliverC2D(device)
	}
}

func (r *Router) startCall(m *nats.Msg, device string) {
	if m.Reply == "" {
		return
	}
	ms, err := strconv.Atoi(m.Header.Get(hdrTimeout))
	if err != nil || ms <= 0 {
		ms = 30_000
	}
	rid := strconv.FormatUint(r.nextRID.Add(1), 16)
	c := &call{device: device, reply: m.Reply}
	r.mu.Lock()
	r.pending[rid] = c
	c.timer = time.AfterFunc(time.Duration(ms)*time.Millisecond, func() { r.drop(rid) })
	r.mu.Unlock()
	if err := r.devices.SendMethod(device, rid, m.Header.Get(hdrMethod), m.Data); err != nil {
		if r.drop(rid) {
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set(hdrError, err.Error())
			_ = r.nc.PublishMsg(reply)
		}
	}
}

// drop forgets a pending call; it reports whether it was still pending.
func (r *Router) drop(rid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.pending[rid]
	if ok {
		if c.timer != nil {
			c.timer.Stop()
		}
		delete(r.pending, rid)
	}
	return ok
}

// Pending is how many method calls wait for their device.
func (r *Router) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// MethodResponse passes a device's answer to the caller. It reports false
// for a request id that is unknown, timed out or belongs to another device.
func (r *Router) MethodResponse(device, rid string, status int, payload []byte) bool {
	r.mu.Lock()
	c, ok := r.pending[rid]
	if ok && c.device == device {
		if c.timer != nil {
			c.timer.Stop()
		}
		delete(r.pending, rid)
	}
	r.mu.Unlock()
	if !ok || c.device != device {
		return false
	}
	if c.done != nil {
		// The gateway reuses its read buffer once this returns.
		c.done <- answer{status: status, payload: bytes.Clone(payload)}
		return true
	}
	reply := nats.NewMsg(c.reply)
	reply.Header.Set(hdrStatus, strconv.Itoa(status))
	reply.Data = payload
	if err := r.nc.PublishMsg(reply); err != nil {
		r.log.Warn("method response lost", "device", device, "error", err)
	}
	return true
}

// Invoke calls a direct method and waits up to timeout for the device's
// status and payload. ErrOffline: no hub process holds the device's
// connection, or the device does not listen for methods; ErrTimeout: it did
// not answer in time.
func (r *Router) Invoke(ctx context.Context, org, device, method string, payload []byte, timeout time.Duration) (int, []byte, error) {
	if r.check != nil {
		r.check(ctx, org, device, method, payload)
	}
	if r.local(org, device) {
		return r.invokeLocal(ctx, device, method, payload, timeout)
	}
	msg := nats.NewMsg(r.Subject(org, device, kindMethod))
	msg.Header.Set(hdrMethod, method)
	msg.Header.Set(hdrDevice, device)
	msg.Header.Set(hdrTimeout, strconv.FormatInt(timeout.Milliseconds(), 10))
	msg.Data = payload
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := r.nc.RequestMsgWithContext(cctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return 0, nil, fmt.Errorf("%w: %s has no connection to the hub", ErrOffline, device)
	case err != nil && ctx.Err() != nil:
		return 0, nil, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return 0, nil, fmt.Errorf("%w: %s did not answer method %q within %s", ErrTimeout, device, method, timeout)
	case err != nil:
		return 0, nil, fmt.Errorf("invoke %q on %s: %w", method, device, err)
	}
	if e := resp.Header.Get(hdrError); e != "" {
		return 0, nil, fmt.Errorf("%w: %s", ErrOffline, e)
	}
	status, err := strconv.Atoi(resp.Header.Get(hdrStatus))
	if err != nil {
		return 0, nil, fmt.Errorf("invoke %q on %s: the answer has no status", method, device)
	}
	return status, resp.Data, nil
}

// local reports whether the device is connected to this process. Its
// traffic then goes straight to the gateway: a round trip through the bus
// cost more CPU than the rest of a method call, and every hand-over between
// goroutines is a chance to wait for a busy CPU.
func (r *Router) local(org, device string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attached[org+"\x00"+device] != nil && r.devices != nil
}

// invokeLocal calls a method of a device connected to this process.
func (r *Router) invokeLocal(ctx context.Context, device, method string, payload []byte, timeout time.Duration) (int, []byte, error) {
	rid := strconv.FormatUint(r.nextRID.Add(1), 16)
	c := &call{device: device, done: make(chan answer, 1)}
	r.mu.Lock()
	r.pending[rid] = c
	r.mu.Unlock()
	// The write runs aside: a device that stopped reading can hold it up
	// to the gateway's write timeout, and the caller is promised an answer
	// within its own timeout.
	sent := make(chan error, 1)
	go func() { sent <- r.devices.SendMethod(device, rid, method, payload) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-sent:
		if err != nil {
			r.drop(rid)
			return 0, nil, fmt.Errorf("%w: %s", ErrOffline, err.Error())
		}
	case <-t.C:
		if r.drop(rid) {
			return 0, nil, fmt.Errorf("%w: %s did not take method %q within %s", ErrTimeout, device, method, timeout)
		}
		a := <-c.done
		return a.status, a.payload, a.err
	case <-ctx.Done():
		if r.drop(rid) {
			return 0, nil, ctx.Err()
		}
		a := <-c.done
		return a.status, a.payload, a.err
	}
	select {
	case a := <-c.done:
		return a.status, a.payload, a.err
	case <-t.C:
		if r.drop(rid) {
			return 0, nil, fmt.Errorf("%w: %s did not answer method %q within %s", ErrTimeout, device, method, timeout)
		}
	case <-ctx.Done():
		if r.drop(rid) {
			return 0, nil, ctx.Err()
		}
	}
	a := <-c.done // answered as the wait ended
	return a.status, a.payload, a.err
}

// NotifyDesired tells the process holding the device's connection about a
// desired-properties patch (patch includes $version). Nobody listening is
// not an error: the device reads its twin when it connects.
func (r *Router) NotifyDesired(org, device string, version int64, patch []byte) error {
	if r.local(org, device) {
		r.devices.NotifyDesired(device, version, patch)
		return nil
	}
	msg := nats.NewMsg(r.Subject(org, device, kindDesired))
	msg.Header.Set(hdrDevice, device)
	msg.Header.Set(hdrVersion, strconv.FormatInt(version, 10))
	msg.Data = patch
	if err := r.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("notify %s of desired properties: %w", device, err)
	}
	return nil
}

// NotifyC2D tells the process holding the device's connection that a
// message is queued for it.
func (r *Router) NotifyC2D(org, device string) error {
	msg := nats.NewMsg(r.Subject(org, device, kindC2D))
	msg.Header.Set(hdrDevice, device)
	if err := r.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("notify %s of a queued message: %w", device, err)
	}
	return nil
}

// CredentialsChanged tells every hub process that a device's credentials
// or state changed (a key regenerated, the device disabled or deleted):
// each re-checks the device (Devices.Revalidate), and the one holding its
// connection ends it if its credential no longer holds. The message goes
// over the bus even when the device is connected here, so a connection
// being taken over by another process is re-checked too.
func (r *Router) CredentialsChanged(org, device string) error {
	msg := nats.NewMsg(r.prefix + changedSubject)
	msg.Header.Set(hdrDevice, device)
	msg.Header.Set(hdrOrg, org)
	if err := r.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("tell the hub that the credentials of %s changed: %w", device, err)
	}
	return nil
}
