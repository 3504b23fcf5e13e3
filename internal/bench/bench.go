package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/simulate"
)

// Targets.
const (
	TargetShopfloor = "shopfloor" // a hub: SAS-authenticated devices, visibility through the REST API
	TargetMQTT      = "mqtt"      // a plain broker: no auth, visibility through a subscriber
)

// ErrOptions is wrapped by every invalid option.
var ErrOptions = errors.New("invalid benchmark options")

// ErrDurability is what the crash harness returns when an acknowledged
// message was lost or stored twice.
var ErrDurability = errors.New("the hub broke its durability promise")

// Options configure one run.
type Options struct {
	Target       string
	MQTTAddr     string      // host:port
	TLS          *tls.Config // nil for plain TCP
	URL, Token   string      // hub REST API (shopfloor target)
	Connections  int
	Rate         float64       // total messages per second over all connections; 0 = as fast as possible
	Duration     time.Duration // publishing time
	QoS          byte
	Fields       int           // numeric fields per message (f0 is the connection's sequence number)
	PayloadSize  int           // pad each message to this many bytes with JSON white space (0: no padding)
	Inflight     int           // unacknowledged QoS 1 messages allowed per connection
	Probes       int           // concurrent visibility probes (shopfloor target)
	PollInterval time.Duration // how often a probe asks the REST API
	Drain        time.Duration // longest wait after publishing for acks and visibility
	Verify       int           // devices whose stored series are counted after the run (shopfloor target)
	NoSubscriber bool          // mqtt target: measure publishing alone, without the subscriber
	Prefix       string        // device and client id prefix
	Logger       *slog.Logger
}

// Latency summarizes a histogram in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *Histogram) Latency {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return Latency{Count: h.Count(), Mean: ms(h.Mean()), P50: ms(h.Quantile(0.5)), P95: ms(h.Quantile(0.95)),
		P99: ms(h.Quantile(0.99)), Max: ms(h.Max())}
}

// Result is what one run measured.
type Result struct {
	Target       string  `json:"target"`
	Addr         string  `json:"addr"`
	Connections  int     `json:"connections"`
	Connected    int     `json:"connected"`
	QoS          byte    `json:"qos"`
	Fields       int     `json:"fields"`
	PayloadBytes int     `json:"payload_bytes"`
	Inflight     int     `json:"inflight"`
	Rate         float64 `json:"rate_target"`
	Seconds      float64 `json:"seconds"` // from the first publish to the last acknowledgement

	Sent       uint64  `json:"sent"`
	Acked      uint64  `json:"acked"`      // QoS 1: acknowledged; QoS 0: sent
	Throughput float64 `json:"throughput"` // acked per second
	Ack        Latency `json:"ack_latency"`

	// Queryable is the latency from publish until the data can be read
	// back; QueryMethod says how it was measured.
	Queryable   Latency `json:"queryable_latency"`
	QueryMethod string  `json:"queryable_method"`
	Delivered   uint64  `json:"delivered,omitempty"` // mqtt target: messages the subscriber received
	// DrainSeconds is how long after the last publish it took until every
	// acknowledged message was delivered (mqtt) or visible (shopfloor);
	// DrainComplete is false when the wait gave up.
	DrainSeconds  float64 `json:"drain_seconds"`
	DrainComplete bool    `json:"drain_complete"`

	// Verified counts, for a few devices, the acknowledged messages found
	// in the stored series afterwards (shopfloor target).
	VerifiedDevices int    `json:"verified_devices,omitempty"`
	VerifiedFound   uint64 `json:"verified_found,omitempty"`
	VerifiedAcked   uint64 `json:"verified_acked,omitempty"`
	VerifyError     string `json:"verify_error,omitempty"`

	Errors       uint64            `json:"errors"`
	ErrorsByKind map[string]uint64 `json:"errors_by_kind,omitempty"`
	FirstError   string            `json:"first_error,omitempty"`
	// GeneratorCPU is the CPU the load generator itself used, in cores.
	GeneratorCPU float64 `json:"generator_cpu_cores"`
}

// ringSize is how many recent send times each connection remembers; it
// bounds Inflight and lets a subscriber lagging by fewer messages than this
// compute its latency at full resolution.
const ringSize = 1 << 14

type slot struct {
	seq atomic.Uint64 // seq+1 of the message whose time is in t; 0 while written
	t   atomic.Int64  // unix nanoseconds of the publish
}

// publisher is one connection.
type publisher struct {
	idx     int
	id      string
	topic   string
	c       *conn
	ring    []slot
	sent    atomic.Uint64
	acked   atomic.Uint64
	window  chan struct{}
	ackHist *Histogram // owned by the reader goroutine
	lastAck atomic.Int64
	lastTS  int64 // ts of the last message, owned by the publishing goroutine
	dead    chan struct{}
	dieOnce sync.Once
}

func (p *publisher) die() { p.dieOnce.Do(func() { close(p.dead) }) }

// sendTime returns when message seq was published, if still remembered.
func (p *publisher) sendTime(seq uint64) (int64, bool) {
	s := &p.ring[seq%ringSize]
	a := s.seq.Load()
	t := s.t.Load()
	return t, a == seq+1 && s.seq.Load() == a
}

type runner struct {
	o       Options
	log     *slog.Logger
	pubs    []*publisher
	errMu   sync.Mutex
	errs    map[string]uint64
	first   string
	probeMu sync.Mutex
	probes  *Histogram
	start   time.Time
}

func (r *runner) fail(kind string, err error) { r.failN(kind, 1, err) }

// failN counts n errors of a kind and remembers the first error message.
func (r *runner) failN(kind string, n uint64, err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.errs[kind] += n
	if r.first == "" && err != nil {
		r.first = kind + ": " + err.Error()
		r.log.Warn("benchmark error", "kind", kind, "err", err)
	}
}

func (o *Options) validate() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Prefix == "" {
		o.Prefix = "bench-"
	}
	if o.Inflight <= 0 {
		o.Inflight = 1
	}
	if o.Probes <= 0 {
		o.Probes = 2
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Millisecond
	}
	if o.Drain <= 0 {
		o.Drain = 30 * time.Second
	}
	if o.Fields <= 0 {
		o.Fields = 1
	}
	switch {
	case o.Target != TargetShopfloor && o.Target != TargetMQTT:
		return fmt.Errorf("--target %q: use shopfloor or mqtt: %w", o.Target, ErrOptions)
	case o.Connections <= 0 || o.Connections > 100000:
		return fmt.Errorf("--connections %d: use 1 to 100000: %w", o.Connections, ErrOptions)
	case o.Duration <= 0 || o.Duration > time.Hour:
		return fmt.Errorf("--duration %s: use more than 0 and at most 1h: %w", o.Duration, ErrOptions)
	case o.QoS > 1:
		return fmt.Errorf("--qos %d: use 0 or 1: %w", o.QoS, ErrOptions)
	case o.Rate < 0:
		return fmt.Errorf("--rate %g must not be negative (0 means as fast as possible): %w", o.Rate, ErrOptions)
	case o.Inflight > 1024:
		return fmt.Errorf("--inflight %d: use at most 1024: %w", o.Inflight, ErrOptions)
	case o.Fields > 1000:
		return fmt.Errorf("--fields %d: use at most 1000: %w", o.Fields, ErrOptions)
	case o.Target == TargetShopfloor && (o.URL == "" || o.Token == ""):
		return fmt.Errorf("the shopfloor target needs --url and --token (or SHOPFLOOR_URL and SHOPFLOOR_TOKEN) to provision its devices: %w", ErrOptions)
	}
	if _, _, err := net.SplitHostPort(o.MQTTAddr); err != nil {
		return fmt.Errorf("--mqtt %q is not host:port: %w", o.MQTTAddr, ErrOptions)
	}
	return nil
}

// Run provisions (shopfloor), connects, publishes for the duration, waits
// for the stragglers and returns what it measured. It stops by itself.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	r := &runner{o: o, log: o.Logger, errs: map[string]uint64{}, probes: NewHistogram()}
	res := Result{Target: o.Target, Addr: o.MQTTAddr, Connections: o.Connections, QoS: o.QoS, Fields: o.Fields,
		Inflight: o.Inflight, Rate: o.Rate}
	if o.QoS == 0 {
		res.Inflight = 0
	}

	ids := make([]string, o.Connections)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%04d", o.Prefix, i+1)
	}
	var client *simulate.Client
	creds := func(string) (string, string, error) { return "", "", nil }
	if o.Target == TargetShopfloor {
		client = simulate.NewClient(o.URL, o.Token, nil)
		keys, err := provision(ctx, client, ids)
		if err != nil {
			return res, err
		}
		host, _, _ := net.SplitHostPort(o.MQTTAddr)
		creds = func(id string) (string, string, error) {
			return simulate.Credentials(host, id, keys[id], time.Now().Add(24*time.Hour))
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := r.connect(runCtx, ids, creds); err != nil {
		return res, err
	}
	defer func() {
		cancel() // first, so readers take the closing for the end, not a drop
		for _, p := range r.pubs {
			p.c.close()
		}
	}()
	res.Connected = len(r.pubs)

	var sub *subscriber
	switch {
	case o.Target == TargetMQTT && o.NoSubscriber:
		res.QueryMethod = "not measured: no subscriber (publishing alone)"
	case o.Target == TargetMQTT:
		var err error
		sub, err = r.subscribe(runCtx)
		if err != nil {
			return res, err
		}
		defer func() {
			cancel()
			sub.c.close()
		}()
		res.QueryMethod = "every message: publish until a subscriber on devices/+/messages/events/ (same broker, QoS " +
			strconv.Itoa(int(o.QoS)) + ") receives it"
	default:
		res.QueryMethod = fmt.Sprintf("sampled: %d probes in turn pick a connection, take its last published sequence number (field f0) "+
			"and poll GET /api/v1/devices/{id}/latest every %s until f0 reaches it; the time of the answer that shows it "+
			"(an upper bound, resolution about the poll interval) minus the publish time", o.Probes, o.PollInterval)
	}

	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	wall0 := time.Now()

	// Publish.
	r.start = time.Now()
	stop := make(chan struct{})
	var pubWG sync.WaitGroup
	for _, p := range r.pubs {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			r.publishLoop(p, stop)
		}()
	}
	var probeWG sync.WaitGroup
	if o.Target == TargetShopfloor {
		var next atomic.Uint64
		for range o.Probes {
			probeWG.Add(1)
			go func() {
				defer probeWG.Done()
				r.probeLoop(runCtx, client, &next, stop)
			}()
		}
	}
	select {
	case <-time.After(o.Duration):
	case <-ctx.Done():
	}
	close(stop)
	stopped := time.Now()
	pubWG.Wait()
	probeWG.Wait()
	res.PayloadBytes = len(r.payload(nil, time.Now().UnixMilli(), 0, rand.New(rand.NewPCG(0, 0)), make([]float64, o.Fields)))

	// Drain: acknowledgements, then delivery or visibility.
	drainCtx, drainCancel := context.WithTimeout(ctx, o.Drain)
	defer drainCancel()
	poll(drainCtx, 5*time.Millisecond, func() bool {
		for _, p := range r.pubs {
			if o.QoS > 0 && p.acked.Load() < p.sent.Load() && !isClosed(p.dead) {
				return false
			}
		}
		return true
	})
	var sent, acked uint64
	lastAck := r.start.UnixNano()
	for _, p := range r.pubs {
		s, a := p.sent.Load(), p.acked.Load()
		if o.QoS == 0 {
			a = s
		}
		sent += s
		acked += a
		if s > a {
			r.failN("unacknowledged", s-a, fmt.Errorf("%s: %d messages never acknowledged", p.id, s-a))
		}
		lastAck = max(lastAck, p.lastAck.Load())
	}
	res.Sent, res.Acked = sent, acked
	end := time.Unix(0, lastAck)
	if o.QoS == 0 || end.Before(stopped) {
		end = stopped
	}
	res.Seconds = end.Sub(r.start).Seconds()
	if res.Seconds > 0 {
		res.Throughput = float64(acked) / res.Seconds
	}
	ack := NewHistogram()
	for _, p := range r.pubs {
		ack.Merge(p.ackHist)
	}
	if o.QoS > 0 {
		res.Ack = summarize(ack)
	}

	switch {
	case sub == nil && o.Target == TargetMQTT:
		res.DrainComplete = true
		res.DrainSeconds = time.Since(stopped).Seconds()
	case o.Target == TargetMQTT:
		res.DrainComplete = poll(drainCtx, 5*time.Millisecond, func() bool { return sub.delivered.Load() >= acked })
		res.DrainSeconds = time.Since(stopped).Seconds()
		sub.c.nc.Close() // stops the reader
		<-sub.done
		res.Delivered = sub.delivered.Load()
		res.Queryable = summarize(sub.hist)
		if res.Delivered < acked {
			r.failN("undelivered", acked-res.Delivered, fmt.Errorf("the subscriber received %d of %d acknowledged messages", res.Delivered, acked))
		}
	default:
		res.DrainComplete = r.awaitVisible(drainCtx, client)
		res.DrainSeconds = time.Since(stopped).Seconds()
		r.probeMu.Lock()
		res.Queryable = summarize(r.probes)
		r.probeMu.Unlock()
		r.verify(ctx, client, &res)
	}

	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	res.GeneratorCPU = cpu.Seconds() / time.Since(wall0).Seconds()

	r.errMu.Lock()
	for k, v := range r.errs {
		res.Errors += v
		if res.ErrorsByKind == nil {
			res.ErrorsByKind = map[string]uint64{}
		}
		res.ErrorsByKind[k] = v
	}
	res.FirstError = r.first
	r.errMu.Unlock()
	return res, nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// poll checks cond until it holds (true) or ctx ends (false).
func poll(ctx context.Context, every time.Duration, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(every):
		}
	}
	return true
}

// provision creates the benchmark devices on the hub and returns their keys.
func provision(ctx context.Context, client *simulate.Client, ids []string) (map[string]string, error) {
	if err := client.EnsureSite(ctx, "bench", "Benchmark"); err != nil {
		return nil, fmt.Errorf("provision benchmark site: %w", err)
	}
	keys := make(map[string]string, len(ids))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			d, err := client.EnsureDevice(gctx, simulate.DeviceSpec{ID: id, Site: "bench", Tags: map[string]string{"benchmark": "true"}})
			if err != nil {
				return fmt.Errorf("provision benchmark device %s: %w", id, err)
			}
			if d.PrimaryKey == "" {
				return fmt.Errorf("benchmark device %s: the hub returned no primaryKey: %w", id, simulate.ErrAPI)
			}
			mu.Lock()
			keys[id] = d.PrimaryKey
			mu.Unlock()
			return nil
		})
	}
	return keys, g.Wait()
}

// connect opens every publisher connection; connections that fail are
// counted as errors, and the run goes on with the rest.
func (r *runner) connect(ctx context.Context, ids []string, creds func(string) (string, string, error)) error {
	pubs := make([]*publisher, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i, id := range ids {
		g.Go(func() error {
			user, pass, err := creds(id)
			if err != nil {
				r.fail("connect", err)
				return nil
			}
			c, err := dial(gctx, r.o.MQTTAddr, r.o.TLS, id, user, pass, 60*time.Second)
			if err != nil {
				r.fail("connect", err)
				return nil
			}
			pubs[i] = &publisher{idx: i, id: id, topic: "devices/" + id + "/messages/events/", c: c,
				ring: make([]slot, ringSize), window: make(chan struct{}, r.o.Inflight), ackHist: NewHistogram(), dead: make(chan struct{})}
			return nil
		})
	}
	_ = g.Wait()
	for _, p := range pubs {
		if p != nil {
			r.pubs = append(r.pubs, p)
		}
	}
	if len(r.pubs) == 0 {
		r.errMu.Lock()
		defer r.errMu.Unlock()
		return fmt.Errorf("no connection to %s succeeded (first error: %s)", r.o.MQTTAddr, r.first)
	}
	for _, p := range r.pubs {
		go r.readAcks(ctx, p)
		go p.c.keepAlive(ctx, 30*time.Second)
	}
	return nil
}

// readAcks consumes a publisher's incoming packets: PUBACKs at QoS 1.
func (r *runner) readAcks(ctx context.Context, p *publisher) {
	defer p.die()
	for {
		typ, _, body, err := p.c.read()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				r.fail("disconnected", fmt.Errorf("%s: %w", p.id, err))
			}
			return
		}
		if typ != pktPuback || len(body) < 2 {
			continue
		}
		now := time.Now().UnixNano()
		id := uint64(binary.BigEndian.Uint16(body))
		// Packet ids are seq%65535+1 and fewer than 65535 are in flight, so
		// the id names exactly one recent sequence number.
		last := p.sent.Load() - 1
		seq := last - (last%65535+1+65535-id)%65535
		if t, ok := p.sendTime(seq); ok {
			p.ackHist.Record(time.Duration(now - t))
		}
		p.acked.Add(1)
		p.lastAck.Store(now)
		select {
		case <-p.window:
		default:
		}
	}
}

// publishLoop sends messages until stop, keeping at most Inflight
// unacknowledged at QoS 1 and pacing to the rate when one is set.
func (r *runner) publishLoop(p *publisher, stop chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(p.idx), 7))
	values := make([]float64, r.o.Fields)
	for i := range values {
		values[i] = 20 + 10*float64(i)
	}
	var interval time.Duration
	if r.o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(r.o.Connections) / r.o.Rate)
	}
	// Start the connections spread over one interval, not all at once.
	start := r.start.Add(time.Duration(float64(interval) * float64(p.idx) / float64(r.o.Connections)))
	buf := make([]byte, 0, 256)
	seq := uint64(0)
	for {
		select {
		case <-stop:
			return
		case <-p.dead:
			return
		default:
		}
		if r.o.QoS > 0 {
			select {
			case p.window <- struct{}{}:
			case <-stop:
				return
			case <-p.dead:
				return
			}
		}
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(seq) * interval)); d > 0 {
				select {
				case <-time.After(d):
				case <-stop:
					return
				}
			}
		}
		// Write this message and, unpaced, as many more as the window
		// allows right now; then send them in one write.
		for batch := 0; ; batch++ {
			// The hub keeps the first sample per series and millisecond,
			// so each message gets its own ts.
			p.lastTS = max(time.Now().UnixMilli(), p.lastTS+1)
			buf = r.payload(buf[:0], p.lastTS, seq, rng, values)
			s := &p.ring[seq%ringSize]
			s.seq.Store(0)
			s.t.Store(time.Now().UnixNano())
			s.seq.Store(seq + 1)
			p.sent.Store(seq + 1)
			p.c.publish(p.topic, r.o.QoS, uint16(seq%65535)+1, buf)
			seq++
			if interval > 0 || batch+1 >= r.o.Inflight {
				break
			}
			if r.o.QoS > 0 {
				select {
				case p.window <- struct{}{}:
					continue
				default:
				}
				break
			}
		}
		if err := p.c.flush(); err != nil {
			r.fail("publish", fmt.Errorf("%s: %w", p.id, err))
			p.die()
			return
		}
	}
}

// payload writes one telemetry message: ts (unix ms, strictly increasing per
// connection), f0 = sequence number,
// f1… random walks around plausible sensor values, padded with white space
// to PayloadSize.
func (r *runner) payload(b []byte, ts int64, seq uint64, rng *rand.Rand, values []float64) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"f0":`...)
	b = strconv.AppendUint(b, seq, 10)
	for i := 1; i < len(values); i++ {
		values[i] += rng.NormFloat64() * 0.1
		b = append(b, `,"f`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `":`...)
		b = strconv.AppendFloat(b, values[i], 'f', 2, 64)
	}
	for len(b)+1 < r.o.PayloadSize {
		b = append(b, ' ')
	}
	return append(b, '}')
}

// subscriber receives everything the publishers send (mqtt target).
type subscriber struct {
	c         *conn
	hist      *Histogram
	delivered atomic.Uint64
	done      chan struct{}
}

func (r *runner) subscribe(ctx context.Context) (*subscriber, error) {
	c, err := dial(ctx, r.o.MQTTAddr, r.o.TLS, r.o.Prefix+"subscriber", "", "", 60*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect the subscriber: %w", err)
	}
	if err := c.subscribe("devices/+/messages/events/", r.o.QoS); err != nil {
		c.close()
		return nil, err
	}
	s := &subscriber{c: c, hist: NewHistogram(), done: make(chan struct{})}
	byID := make(map[string]*publisher, len(r.pubs))
	for _, p := range r.pubs {
		byID[p.id] = p
	}
	go c.keepAlive(ctx, 30*time.Second)
	go func() {
		defer close(s.done)
		for {
			typ, flags, body, err := c.read()
			if err != nil {
				return
			}
			if typ != pktPublish || len(body) < 2 {
				continue
			}
			now := time.Now()
			n := int(binary.BigEndian.Uint16(body))
			if 2+n > len(body) {
				continue
			}
			topic, rest := body[2:2+n], body[2+n:]
			qos := (flags >> 1) & 3
			if qos > 0 && len(rest) >= 2 {
				_ = c.control(pktPuback<<4, []byte{rest[0], rest[1]}, false)
				rest = rest[2:]
				if c.br.Buffered() == 0 {
					_ = c.flush()
				}
			}
			s.delivered.Add(1)
			if lat, ok := latencyOf(byID, topic, rest, now); ok {
				s.hist.Record(lat)
			}
		}
	}()
	return s, nil
}

// latencyOf finds the publisher and sequence number of a delivered message
// and returns how long it took: exactly from the send-time ring, or from
// its ts field (millisecond resolution) when the ring has moved on.
func latencyOf(byID map[string]*publisher, topic, payload []byte, now time.Time) (time.Duration, bool) {
	id, _, ok := strings.Cut(strings.TrimPrefix(string(topic), "devices/"), "/")
	p := byID[id]
	if !ok || p == nil {
		return 0, false
	}
	if seq, ok := jsonUint(payload, `"f0":`); ok {
		if t, ok := p.sendTime(seq); ok {
			return now.Sub(time.Unix(0, t)), true
		}
	}
	if ms, ok := jsonUint(payload, `"ts":`); ok {
		return now.Sub(time.UnixMilli(int64(ms))), true
	}
	return 0, false
}

func jsonUint(b []byte, key string) (uint64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	var v uint64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n > 0
}

// probeLoop measures publish-to-queryable latency on the hub, one sampled
// message at a time.
func (r *runner) probeLoop(ctx context.Context, client *simulate.Client, next *atomic.Uint64, stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		p := r.pubs[next.Add(1)%uint64(len(r.pubs))]
		n := p.sent.Load()
		if n == 0 {
			select {
			case <-stop:
				return
			case <-time.After(r.o.PollInterval):
			}
			continue
		}
		seq := n - 1
		sentAt, ok := p.sendTime(seq)
		if !ok {
			continue
		}
		deadline := time.Unix(0, sentAt).Add(10 * time.Second)
		for {
			seen, err := r.visible(ctx, client, p.id, seq)
			now := time.Now()
			if err != nil && ctx.Err() == nil {
				r.fail("probe", err)
			}
			if seen {
				r.probeMu.Lock()
				r.probes.Record(now.Sub(time.Unix(0, sentAt)))
				r.probeMu.Unlock()
				break
			}
			if now.After(deadline) {
				r.fail("probe_timeout", fmt.Errorf("%s: message %d not visible through the REST API after 10s", p.id, seq))
				break
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(r.o.PollInterval)
		}
	}
}

// visible reports whether the hub's latest f0 of a device has reached seq.
func (r *runner) visible(ctx context.Context, client *simulate.Client, id string, seq uint64) (bool, error) {
	l, err := client.Latest(ctx, id)
	if err != nil {
		if errors.Is(err, simulate.ErrNotFound) {
			return false, nil // no data yet
		}
		return false, err
	}
	v, ok := l.Value("f0")
	if !ok {
		return false, nil
	}
	f, ok := v.(float64)
	return ok && f >= float64(seq), nil
}

// awaitVisible waits until every connection's last acknowledged message
// can be read back.
func (r *runner) awaitVisible(ctx context.Context, client *simulate.Client) bool {
	var missing atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, p := range r.pubs {
		n := p.acked.Load()
		if r.o.QoS == 0 {
			n = p.sent.Load()
		}
		if n == 0 {
			continue
		}
		g.Go(func() error {
			ok := poll(gctx, 20*time.Millisecond, func() bool {
				seen, _ := r.visible(gctx, client, p.id, n-1)
				return seen
			})
			if !ok {
				missing.Add(1)
				r.fail("not_visible", fmt.Errorf("%s: message %d not visible within the drain time", p.id, n-1))
			}
			return nil
		})
	}
	_ = g.Wait()
	return missing.Load() == 0
}

// verify counts the stored f0 samples of a few devices: every acknowledged
// message must be there (and nothing twice).
func (r *runner) verify(ctx context.Context, client *simulate.Client, res *Result) {
	for _, p := range r.pubs[:min(r.o.Verify, len(r.pubs))] {
		acked := p.acked.Load()
		if r.o.QoS == 0 {
			acked = p.sent.Load()
		}
		// Count the stored samples of f0 in buckets covering the run.
		from, to := r.start.Add(-time.Minute), time.Now().Add(time.Minute)
		if last := time.UnixMilli(p.lastTS); last.After(to) {
			to = last.Add(time.Minute)
		}
		series, err := client.Telemetry(ctx, p.id, simulate.TelemetryQuery{Names: []string{"f0"}, From: from, To: to,
			Step: (to.Sub(from)/100 + time.Second).Truncate(time.Second), Agg: "count"})
		if err != nil {
			res.VerifyError = err.Error()
			return
		}
		var found uint64
		for _, s := range series {
			if s.Field != "f0" {
				continue
			}
			for _, pt := range s.Points {
				if f, ok := pt.V.(float64); ok && f > 0 {
					found += uint64(f)
				}
			}
		}
		res.VerifiedDevices++
		res.VerifiedAcked += acked
		res.VerifiedFound += found
	}
}
