package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shopfloor/shopfloor/internal/simulate"
)

// IdleOptions configure an idle-connections run: provision Devices devices
// on a hub, connect them all over MQTT, hold them idle and watch the hub's
// memory.
type IdleOptions struct {
	MQTTAddr    string      // host:port of the hub's MQTT listener
	TLS         *tls.Config // nil for plain TCP
	URL, Token  string      // hub REST API and an operator or admin token
	Devices     int         // connections to open, one device each
	Hold        time.Duration
	KeepAlive   time.Duration // MQTT keepalive; the generator pings every half of it
	Concurrency int           // connection attempts in flight
	Prefix      string        // device id prefix; ids are Prefix00001…
	Progress    io.Writer     // progress lines (stderr); nil for none
	Logger      *slog.Logger
}

// HubSample is the hub's process figures from its /metrics at one moment.
type HubSample struct {
	Phase              string  `json:"phase"`
	Seconds            float64 `json:"seconds"` // since the run started
	RSSBytes           float64 `json:"rss_bytes"`
	HeapInuseBytes     float64 `json:"heap_inuse_bytes"`
	Goroutines         float64 `json:"goroutines"`
	OpenFDs            float64 `json:"open_fds"`
	MaxFDs             float64 `json:"max_fds"`
	GatewayConnections float64 `json:"gateway_connections"`
	// Where the Go runtime's memory is: goroutine stacks, and heap
	// memory that is free but not yet returned to the OS (it counts in RSS).
	StackInuseBytes   float64  `json:"stack_inuse_bytes"`
	HeapIdleBytes     float64  `json:"heap_idle_bytes"`
	HeapReleasedBytes float64  `json:"heap_released_bytes"`
	SysBytes          float64  `json:"go_sys_bytes"`      // everything the Go runtime obtained from the OS
	Missing           []string `json:"missing,omitempty"` // metrics the hub did not export (their fields are 0)
}

// IdleResult is what an idle run measured.
type IdleResult struct {
	Target    string  `json:"target"`
	Addr      string  `json:"addr"`
	Devices   int     `json:"devices"`
	KeepAlive float64 `json:"keepalive_seconds"`

	Created          int     `json:"created"` // devices this run created; the rest existed already
	Existing         int     `json:"existing"`
	ProvisionSeconds float64 `json:"provision_seconds"` // import plus reading the keys

	Connected      int     `json:"connected"` // CONNACK accepted
	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectRate    float64 `json:"connect_rate"` // accepted connections per second
	ConnectLatency Latency `json:"connect_latency"`
	// GaveUp is set when connecting stopped early after too many
	// consecutive failures.
	GaveUp string `json:"gave_up,omitempty"`

	HoldSeconds float64 `json:"hold_seconds"`
	Alive       int     `json:"alive"`   // connections that answered the last PINGREQ, at the end of the hold
	Dropped     int     `json:"dropped"` // connections lost after they were accepted

	Hub []HubSample `json:"hub"` // before, provisioned, connected, end of hold
	// Per connection, from before connecting to the end of the hold,
	// divided by the connections alive at the end.
	RSSPerConnection   float64 `json:"rss_per_connection_bytes"`
	HeapPerConnection  float64 `json:"heap_per_connection_bytes"`
	StackPerConnection float64 `json:"stack_per_connection_bytes"`

	Failures       uint64            `json:"failures"`
	FailuresByKind map[string]uint64 `json:"failures_by_kind,omitempty"`
	FirstFailure   string            `json:"first_failure,omitempty"`
	// Diagnosis explains failures and limits in plain words.
	Diagnosis []string `json:"diagnosis,omitempty"`

	GeneratorRSSBytes float64 `json:"generator_rss_bytes"` // this process, at the end of the hold
	FileLimit         uint64  `json:"generator_file_limit"`
	CPUs              int     `json:"cpus"`
	LoadStart         string  `json:"load_average_start"` // 1, 5 and 15 minute load averages
	LoadEnd           string  `json:"load_average_end"`
}

// Sample returns the hub sample of a phase, if taken.
func (r IdleResult) Sample(phase string) (HubSample, bool) {
	for _, s := range r.Hub {
		if s.Phase == phase {
			return s, true
		}
	}
	return HubSample{}, false
}

// Phases of the hub samples.
const (
	PhaseBefore      = "before"
	PhaseProvisioned = "provisioned"
	PhaseConnected   = "connected"
	PhaseEnd         = "end of hold"
)

// Tuning of the idle run.
const (
	maxIdleDevices   = 200000
	importChunk      = 1000 // rows per POST /api/v1/devices/import
	keyReaders       = 16   // concurrent GET /api/v1/devices/{id}
	pingWorkers      = 64
	pingTimeout      = 20 * time.Second
	giveUpAfter      = 500 // consecutive connection failures
	idleReadBuffer   = 256 // CONNACK and PINGRESP are a few bytes
	idleWriteBuffer  = 512 // CONNECT with a SAS token fits
	fdMargin         = 256 // descriptors besides the connections
	metricsBodyLimit = 16 << 20
)

func (o *IdleOptions) validate() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Prefix == "" {
		o.Prefix = "bench-idle-"
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 60 * time.Second
	}
	if o.Concurrency == 0 {
		o.Concurrency = 64
	}
	switch {
	case o.Devices <= 0 || o.Devices > maxIdleDevices:
		return fmt.Errorf("--idle %d: use 1 to %d devices: %w", o.Devices, maxIdleDevices, ErrOptions)
	case o.Hold < 0 || o.Hold > 24*time.Hour:
		return fmt.Errorf("--hold %s: use 0 to 24h: %w", o.Hold, ErrOptions)
	case o.KeepAlive < 2*time.Second || o.KeepAlive > 65535*time.Second:
		return fmt.Errorf("--keepalive %s: use 2s to 18h (MQTT allows at most 65535 s): %w", o.KeepAlive, ErrOptions)
	case o.Concurrency < 1 || o.Concurrency > 10000:
		return fmt.Errorf("--connect-concurrency %d: use 1 to 10000: %w", o.Concurrency, ErrOptions)
	case o.URL == "" || o.Token == "":
		return fmt.Errorf("--idle needs the hub's --url and an operator --token (or SHOPFLOOR_URL and SHOPFLOOR_TOKEN) to provision devices and read /metrics: %w", ErrOptions)
	}
	if _, _, err := net.SplitHostPort(o.MQTTAddr); err != nil {
		return fmt.Errorf("--mqtt %q is not host:port: %w", o.MQTTAddr, ErrOptions)
	}
	return nil
}

type idleRun struct {
	o      IdleOptions
	log    *slog.Logger
	hc     *http.Client
	client *simulate.Client
	start  time.Time
	ids    []string
	conns  []atomic.Pointer[conn]

	errMu sync.Mutex
	errs  map[string]uint64
	first string

	histMu sync.Mutex
	hist   *Histogram

	connected atomic.Int64
	dropped   atomic.Int64
}

func (r *idleRun) fail(kind string, err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.errs[kind]++
	if r.first == "" {
		r.first = kind + ": " + err.Error()
		r.log.Warn("idle benchmark failure", "kind", kind, "err", err)
	}
}

func (r *idleRun) say(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "bench: "+format+"\n", args...)
	}
}

// every calls f every interval until the returned stop is called.
func every(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// RunIdle provisions the devices, connects them all, holds them idle for
// the hold time while keeping them alive, and reports connection figures
// and the hub's memory. Connections that fail are counted, not fatal.
func RunIdle(ctx context.Context, o IdleOptions) (IdleResult, error) {
	if err := o.validate(); err != nil {
		return IdleResult{}, err
	}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: keyReaders + 2, IdleConnTimeout: 30 * time.Second, TLSClientConfig: o.TLS}}
	defer hc.CloseIdleConnections()
	r := &idleRun{o: o, log: o.Logger, hc: hc, client: simulate.NewClient(o.URL, o.Token, hc), start: time.Now(),
		errs: map[string]uint64{}, hist: NewHistogram()}
	res := IdleResult{Target: TargetShopfloor, Addr: o.MQTTAddr, Devices: o.Devices, KeepAlive: o.KeepAlive.Seconds(),
		CPUs: runtime.NumCPU(), LoadStart: loadAverage()}

	soft, hard, err := raiseFileLimit()
	res.FileLimit = soft
	switch {
	case err != nil:
		res.Diagnosis = append(res.Diagnosis, "could not read or raise this process's open-file limit: "+err.Error())
	case soft < uint64(o.Devices+fdMargin):
		msg := fmt.Sprintf("this generator may open only %d files (hard limit %d) but needs one per connection, %d, plus a margin: "+
			"raise the hard limit (ulimit -Hn as root, LimitNOFILE= under systemd, nofile in /etc/security/limits.conf) and run again",
			soft, hard, o.Devices)
		res.Diagnosis = append(res.Diagnosis, msg)
		r.say("warning: %s", msg)
	}

	before, err := r.sample(ctx, PhaseBefore)
	if err != nil {
		return res, err
	}
	res.Hub = append(res.Hub, before)
	if before.MaxFDs > 0 && before.MaxFDs < float64(o.Devices+fdMargin) {
		msg := fmt.Sprintf("the hub may open only %.0f files (process_max_fds) but needs one per connection, %d, plus its own: "+
			"start it with a higher limit (ulimit -n before shopfloor serve, LimitNOFILE= in its systemd unit)", before.MaxFDs, o.Devices)
		res.Diagnosis = append(res.Diagnosis, msg)
		r.say("warning: %s", msg)
	}

	width := max(5, len(strconv.Itoa(o.Devices)))
	r.ids = make([]string, o.Devices)
	for i := range r.ids {
		r.ids[i] = fmt.Sprintf("%s%0*d", o.Prefix, width, i+1)
	}
	t0 := time.Now()
	keys, created, err := r.provision(ctx)
	if err != nil {
		return res, err
	}
	res.Created, res.Existing = created, o.Devices-created
	res.ProvisionSeconds = time.Since(t0).Seconds()
	r.say("provisioned %d devices (%d created, %d existed) in %.1fs", o.Devices, res.Created, res.Existing, res.ProvisionSeconds)
	if s, err := r.sample(ctx, PhaseProvisioned); err == nil {
		res.Hub = append(res.Hub, s)
	}

	// Keep every accepted connection alive from the moment it is accepted:
	// connecting may take longer than the keepalive.
	r.conns = make([]atomic.Pointer[conn], o.Devices)
	defer r.closeAll()
	stopPing := every(o.KeepAlive/2, func() { r.sweep(ctx) })
	pingStopped := false
	defer func() {
		if !pingStopped {
			stopPing()
		}
	}()

	t1 := time.Now()
	res.GaveUp = r.connectAll(ctx, keys)
	res.ConnectSeconds = time.Since(t1).Seconds()
	res.Connected = int(r.connected.Load())
	if res.ConnectSeconds > 0 {
		res.ConnectRate = float64(res.Connected) / res.ConnectSeconds
	}
	r.histMu.Lock()
	res.ConnectLatency = summarize(r.hist)
	r.histMu.Unlock()
	r.say("connected %d of %d in %.1fs (%.0f/s)", res.Connected, o.Devices, res.ConnectSeconds, res.ConnectRate)
	connected, err := r.sample(ctx, PhaseConnected)
	if err == nil {
		res.Hub = append(res.Hub, connected)
	}

	// Hold.
	t2 := time.Now()
	stopSay := every(10*time.Second, func() {
		r.say("holding %d connections, %.0fs of %s", res.Connected-int(r.dropped.Load()), time.Since(t2).Seconds(), o.Hold)
	})
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
	}
	stopSay()
	res.HoldSeconds = time.Since(t2).Seconds()
	stopPing()
	pingStopped = true

	// The last ping proves which connections the hub still serves.
	res.Alive = r.sweep(ctx)
	res.Dropped = int(r.dropped.Load())
	end, err := r.sample(ctx, PhaseEnd)
	if err == nil {
		res.Hub = append(res.Hub, end)
	}
	res.GeneratorRSSBytes = selfRSS()
	base, ok := res.Sample(PhaseProvisioned)
	if !ok {
		base = before
	}
	if res.Alive > 0 && err == nil {
		res.RSSPerConnection = (end.RSSBytes - base.RSSBytes) / float64(res.Alive)
		res.HeapPerConnection = (end.HeapInuseBytes - base.HeapInuseBytes) / float64(res.Alive)
		res.StackPerConnection = (end.StackInuseBytes - base.StackInuseBytes) / float64(res.Alive)
	}
	res.LoadEnd = loadAverage()

	r.errMu.Lock()
	for k, v := range r.errs {
		if res.FailuresByKind == nil {
			res.FailuresByKind = map[string]uint64{}
		}
		res.FailuresByKind[k] = v
		res.Failures += v
	}
	res.FirstFailure = r.first
	r.errMu.Unlock()
	res.Diagnosis = append(res.Diagnosis, diagnose(res)...)
	if ctx.Err() != nil {
		return res, fmt.Errorf("idle benchmark interrupted after %.0fs of holding: %w", res.HoldSeconds, ctx.Err())
	}
	return res, nil
}

// provision creates the devices through CSV imports of importChunk rows
// and reads back their keys, which the import report does not carry.
// Devices that exist already are reused. It returns the keys by index and
// how many devices it created.
func (r *idleRun) provision(ctx context.Context) ([]string, int, error) {
	if err := r.client.EnsureSite(ctx, "bench", "Benchmark"); err != nil {
		return nil, 0, fmt.Errorf("provision benchmark site: %w", err)
	}
	rowErr := map[string]string{}
	created := 0
	for lo := 0; lo < len(r.ids); lo += importChunk {
		hi := min(lo+importChunk, len(r.ids))
		var b bytes.Buffer
		b.WriteString("id,site,template,tags,auth,thumbprint\n")
		for _, id := range r.ids[lo:hi] {
			b.WriteString(id)
			b.WriteString(",bench,,benchmark=idle,sas,\n")
		}
		rep, err := r.importCSV(ctx, b.Bytes())
		if err != nil {
			return nil, 0, err
		}
		created += rep.Created
		for _, row := range rep.Rows {
			if row.Error != "" {
				rowErr[row.ID] = row.Error
			}
		}
		r.say("provisioning: imported %d of %d devices", hi, len(r.ids))
	}

	keys := make([]string, len(r.ids))
	var next, done atomic.Int64
	stopSay := every(2*time.Second, func() { r.say("provisioning: read %d of %d device keys", done.Load(), len(r.ids)) })
	defer stopSay()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range keyReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.ids) || ctx.Err() != nil {
					return
				}
				id := r.ids[i]
				d, err := r.client.Device(ctx, id)
				switch {
				case errors.Is(err, simulate.ErrNotFound) && rowErr[id] != "":
					err = fmt.Errorf("create benchmark device %s: the hub's import refused it: %s", id, rowErr[id])
				case err == nil && d.PrimaryKey == "":
					err = fmt.Errorf("benchmark device %s has no primaryKey: it must use SAS authentication and the token must be an operator's: %w", id, simulate.ErrAPI)
				}
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					cancel()
					return
				}
				keys[i] = d.PrimaryKey
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, 0, first
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("provisioning interrupted: %w", err)
	}
	return keys, created, nil
}

// importReport is the answer of POST /api/v1/devices/import.
type importReport struct {
	Created int `json:"created"`
	Failed  int `json:"failed"`
	Rows    []struct {
		Line  int    `json:"line"`
		ID    string `json:"id"`
		Error string `json:"error"`
	} `json:"rows"`
}

func (r *idleRun) importCSV(ctx context.Context, body []byte) (importReport, error) {
	u := strings.TrimRight(r.o.URL, "/") + "/api/v1/devices/import"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return importReport{}, fmt.Errorf("hub URL %q: %w", r.o.URL, err)
	}
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.o.Token)
	resp, err := r.hc.Do(req)
	if err != nil {
		return importReport{}, fmt.Errorf("import benchmark devices: POST %s: is the hub running and the URL right? %w", u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return importReport{}, fmt.Errorf("import benchmark devices: reading the answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return importReport{}, fmt.Errorf("import benchmark devices: HTTP %d %s: use an admin or operator token (--token or SHOPFLOOR_TOKEN): %w",
			resp.StatusCode, clip(raw), simulate.ErrUnauthorized)
	case resp.StatusCode != http.StatusOK:
		return importReport{}, fmt.Errorf("import benchmark devices: HTTP %d %s: %w", resp.StatusCode, clip(raw), simulate.ErrAPI)
	}
	var rep importReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return importReport{}, fmt.Errorf("import benchmark devices: unreadable report %s: %w", clip(raw), err)
	}
	return rep, nil
}

func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// connectAll connects every device with Concurrency attempts in flight.
// It returns why it stopped early, or "".
func (r *idleRun) connectAll(ctx context.Context, keys []string) string {
	host, _, _ := net.SplitHostPort(r.o.MQTTAddr)
	expiry := time.Now().Add(r.o.Hold + 24*time.Hour)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next, attempted, consecutive atomic.Int64
		gaveUp                       atomic.Pointer[string]
		wg                           sync.WaitGroup
	)
	last, lastAt := int64(0), time.Now()
	stopSay := every(time.Second, func() {
		n := r.connected.Load()
		now := time.Now()
		r.say("connecting: %d of %d connected, %.0f/s, %d failed", n, len(r.ids),
			float64(n-last)/now.Sub(lastAt).Seconds(), attempted.Load()-n)
		last, lastAt = n, now
	})
	defer stopSay()
	for range min(r.o.Concurrency, len(r.ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.ids) || ctx.Err() != nil {
					return
				}
				id := r.ids[i]
				user, pass, err := simulate.Credentials(host, id, keys[i], expiry)
				if err != nil {
					attempted.Add(1)
					r.fail("credentials", err)
					continue
				}
				t := time.Now()
				c, err := dialSized(ctx, r.o.MQTTAddr, r.o.TLS, id, user, pass, r.o.KeepAlive, idleReadBuffer, idleWriteBuffer)
				attempted.Add(1)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					r.fail(connectKind(err), err)
					if n := consecutive.Add(1); n >= giveUpAfter {
						msg := fmt.Sprintf("stopped connecting after %d consecutive failures (%d of %d attempted)", n, attempted.Load(), len(r.ids))
						gaveUp.CompareAndSwap(nil, &msg)
						cancel()
					}
					continue
				}
				consecutive.Store(0)
				d := time.Since(t)
				r.histMu.Lock()
				r.hist.Record(d)
				r.histMu.Unlock()
				r.conns[i].Store(c)
				r.connected.Add(1)
			}
		}()
	}
	wg.Wait()
	if p := gaveUp.Load(); p != nil {
		return *p
	}
	return ""
}

// connectKind names the kind of a failed connection for the report.
func connectKind(err error) string {
	switch {
	case errors.Is(err, ErrRefused):
		return "refused"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "generator_fd_limit"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "generator_ports"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

// sweep pings every open connection once and returns how many answered;
// the ones that did not are closed and counted as dropped.
func (r *idleRun) sweep(ctx context.Context) int {
	var next, alive atomic.Int64
	var wg sync.WaitGroup
	for range pingWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.conns) || ctx.Err() != nil {
					return
				}
				c := r.conns[i].Load()
				if c == nil {
					continue
				}
				if err := c.ping(pingTimeout); err != nil {
					c.nc.Close()
					r.conns[i].Store(nil)
					r.dropped.Add(1)
					r.fail("dropped", fmt.Errorf("%s: %w", r.ids[i], err))
					continue
				}
				alive.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(alive.Load())
}

func (r *idleRun) closeAll() {
	for i := range r.conns {
		if c := r.conns[i].Swap(nil); c != nil {
			c.close()
		}
	}
}

// sample reads the hub's process figures from its /metrics.
func (r *idleRun) sample(ctx context.Context, phase string) (HubSample, error) {
	u := strings.TrimRight(r.o.URL, "/") + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return HubSample{}, fmt.Errorf("hub URL %q: %w", r.o.URL, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.o.Token) // /metrics needs an operator-organization token
	resp, err := r.hc.Do(req)
	if err != nil {
		return HubSample{}, fmt.Errorf("read the hub's memory from %s: is the hub running and the URL right? %w", u, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return HubSample{}, fmt.Errorf("read the hub's memory from %s: HTTP %d %s: /metrics needs a token of the operator organization: %w",
			u, resp.StatusCode, clip(raw), simulate.ErrUnauthorized)
	default:
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return HubSample{}, fmt.Errorf("read the hub's memory from %s: HTTP %d %s: the idle benchmark needs the hub's /metrics endpoint: %w",
			u, resp.StatusCode, clip(raw), simulate.ErrAPI)
	}
	m, err := parseMetrics(io.LimitReader(resp.Body, metricsBodyLimit), hubMetricNames)
	if err != nil {
		return HubSample{}, fmt.Errorf("read the hub's memory from %s: %w", u, err)
	}
	s := HubSample{Phase: phase, Seconds: time.Since(r.start).Seconds(),
		RSSBytes: m[metricRSS], HeapInuseBytes: m[metricHeap], Goroutines: m[metricGoroutines],
		OpenFDs: m[metricOpenFDs], MaxFDs: m[metricMaxFDs], GatewayConnections: m[metricGateway],
		StackInuseBytes: m[metricStack], HeapIdleBytes: m[metricHeapIdle], HeapReleasedBytes: m[metricReleased], SysBytes: m[metricSys]}
	for _, n := range hubMetricNames {
		if _, ok := m[n]; !ok {
			s.Missing = append(s.Missing, n)
		}
	}
	return s, nil
}

// diagnose turns failure counts into advice.
func diagnose(res IdleResult) []string {
	var out []string
	k := res.FailuresByKind
	var end HubSample
	if s, ok := res.Sample(PhaseEnd); ok {
		end = s
	} else if s, ok := res.Sample(PhaseConnected); ok {
		end = s
	}
	if n := k["generator_fd_limit"]; n > 0 {
		out = append(out, fmt.Sprintf("%d connections failed because this generator ran out of file descriptors (limit %d): raise ulimit -n for it", n, res.FileLimit))
	}
	if n := k["generator_ports"]; n > 0 {
		out = append(out, fmt.Sprintf("%d connections failed for lack of local ports: widen net.ipv4.ip_local_port_range or connect from more source addresses", n))
	}
	if end.MaxFDs > 0 && end.OpenFDs >= end.MaxFDs-16 {
		out = append(out, fmt.Sprintf("the hub has %.0f of its %.0f file descriptors open: it cannot accept more connections; raise its ulimit -n", end.OpenFDs, end.MaxFDs))
	}
	if n := k["refused"]; n > 0 {
		out = append(out, fmt.Sprintf("the hub answered CONNECT with a refusal %d times (first: %s)", n, res.FirstFailure))
	}
	if n := k["timeout"]; n > 0 {
		out = append(out, fmt.Sprintf("%d connections timed out (10 s to connect and receive CONNACK): the hub accepted too slowly; lower --connect-concurrency or look at the hub's CPU and log", n))
	}
	if n := k["reset"] + k["connection_refused"]; n > 0 {
		out = append(out, fmt.Sprintf("the hub closed or refused %d connections at the TCP level: look at its log (accept errors, listen backlog net.core.somaxconn)", n))
	}
	if res.Dropped > 0 {
		out = append(out, fmt.Sprintf("%d accepted connections were lost before the end of the hold (no PINGRESP within %s)", res.Dropped, pingTimeout))
	}
	if end.GatewayConnections > 0 && int(end.GatewayConnections) != res.Alive {
		out = append(out, fmt.Sprintf("the hub counts %.0f connected devices, this generator %d alive connections", end.GatewayConnections, res.Alive))
	}
	return out
}

// raiseFileLimit raises this process's open-file limit to its hard limit
// and returns both.
func raiseFileLimit() (soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, fmt.Errorf("getrlimit: %w", err)
	}
	if l.Cur < l.Max {
		want := l
		want.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return uint64(l.Cur), uint64(l.Max), fmt.Errorf("setrlimit to %d: %w", l.Max, err)
		}
		l = want
	}
	return uint64(l.Cur), uint64(l.Max), nil
}

// selfRSS is this process's resident memory in bytes, 0 if unknown.
func selfRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseFloat(f[0], 64)
				return n * 1024
			}
		}
	}
	return 0
}

// loadAverage is the 1, 5 and 15 minute load averages, "" if unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
