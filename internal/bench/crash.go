package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shopfloor/shopfloor/internal/simulate"
)

// CrashOptions configure RunCrash.
type CrashOptions struct {
	Binary   string        // the shopfloor binary to run as the hub
	Data     string        // the hub's data directory, kept across rounds
	Rounds   int           // stop-and-restart rounds
	Devices  int           // publishing devices; every other one sends no "ts"
	Inflight int           // unacknowledged QoS 1 messages per device
	MinRun   time.Duration // publishing time before a stop, drawn between MinRun and MaxRun
	MaxRun   time.Duration
	Signal   string   // kill (SIGKILL), term (SIGTERM) or mixed (each round at random)
	Seed     uint64   // for the run times and the mixed signals
	Args     []string // extra `serve` arguments, e.g. --fsync
	Progress io.Writer
	Logger   *slog.Logger
}

// CrashRound is what one round found.
type CrashRound struct {
	Round      int     `json:"round"`
	Signal     string  `json:"signal"`
	Acked      int     `json:"acked"`      // PUBACKs received in the round
	Stored     int     `json:"stored"`     // of them, found exactly once after the restart
	Lost       int     `json:"lost"`       // acknowledged, not stored
	Duplicated int     `json:"duplicated"` // stored more than once
	Extra      int     `json:"extra"`      // stored without a PUBACK (sent as the hub stopped): allowed
	StopSec    float64 `json:"stopSeconds"`
	RestartSec float64 `json:"restartSeconds"` // process start to /healthz 200
}

// CrashResult sums the rounds.
type CrashResult struct {
	Rounds     []CrashRound `json:"rounds"`
	Acked      int          `json:"acked"`
	Lost       int          `json:"lost"`
	Duplicated int          `json:"duplicated"`
}

const crashToken = "sft_crash-harness-admin-token-0000000000"

type crashDevice struct {
	id, key string
	stamped bool  // sends "ts" = base + seq
	next    int64 // next sequence number
	first   int64 // the first sequence number of the round
	round   map[int64]bool
}

type crashHub struct {
	cmd        *exec.Cmd
	http, mqtt string
	exited     chan struct{}
}

// RunCrash runs the hub binary on one data directory, loads it with QoS 1
// telemetry from several devices, stops it with SIGKILL or SIGTERM at a
// random moment, restarts it and checks, against the stored series, that
// every acknowledged message is stored exactly once.
func RunCrash(ctx context.Context, o CrashOptions) (CrashResult, error) {
	var res CrashResult
	if o.Binary == "" || o.Data == "" || o.Rounds <= 0 || o.Devices <= 0 {
		return res, fmt.Errorf("crash: binary, data directory, rounds and devices are required: %w", ErrOptions)
	}
	if o.Signal != "kill" && o.Signal != "term" && o.Signal != "mixed" {
		return res, fmt.Errorf("--signal %q: use kill, term or mixed: %w", o.Signal, ErrOptions)
	}
	o.Inflight = max(o.Inflight, 1)
	if o.MaxRun < o.MinRun {
		o.MaxRun = o.MinRun
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if err := os.MkdirAll(o.Data, 0o750); err != nil {
		return res, fmt.Errorf("crash: data directory: %w", err)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 12))
	hub, _, err := startCrashHub(ctx, o)
	if err != nil {
		return res, err
	}
	// hub is replaced by each restart: stop whichever runs at the end.
	defer func() { hub.kill() }()
	client := simulate.NewClient("http://"+hub.http, crashToken, nil)
	devs, err := crashDevices(ctx, client, o.Devices)
	if err != nil {
		return res, err
	}
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second).UnixMilli()
	for r := 1; r <= o.Rounds; r++ {
		sig := o.Signal
		if sig == "mixed" {
			sig = [2]string{"kill", "term"}[rng.IntN(2)]
		}
		run := o.MinRun + time.Duration(rng.Int64N(int64(o.MaxRun-o.MinRun)+1))
		from := time.Now()
		round := CrashRound{Round: r, Signal: sig}
		round.Acked, err = loadAndStop(ctx, hub, devs, base, o.Inflight, run, sig, &round.StopSec)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", r, err)
		}
		var restart time.Duration
		hub, restart, err = startCrashHub(ctx, o)
		if err != nil {
			return res, fmt.Errorf("round %d: restart: %w", r, err)
		}
		round.RestartSec = restart.Seconds()
		client = simulate.NewClient("http://"+hub.http, crashToken, nil)
		if err := verifyRound(ctx, client, devs, base, from, &round); err != nil {
			return res, fmt.Errorf("round %d: %w", r, err)
		}
		res.Rounds = append(res.Rounds, round)
		res.Acked += round.Acked
		res.Lost += round.Lost
		res.Duplicated += round.Duplicated
		fmt.Fprintf(o.Progress, "round %3d %-4s acked %6d stored %6d lost %d duplicated %d extra %d stop %.2fs restart %.2fs\n",
			r, sig, round.Acked, round.Stored, round.Lost, round.Duplicated, round.Extra, round.StopSec, round.RestartSec)
	}
	return res, nil
}

func crashDevices(ctx context.Context, client *simulate.Client, n int) ([]*crashDevice, error) {
	if err := client.EnsureSite(ctx, "crash", "Crash harness"); err != nil {
		return nil, err
	}
	devs := make([]*crashDevice, n)
	for i := range devs {
		id := fmt.Sprintf("crash-%02d", i+1)
		d, err := client.EnsureDevice(ctx, simulate.DeviceSpec{ID: id, Site: "crash"})
		if err != nil {
			return nil, err
		}
		devs[i] = &crashDevice{id: id, key: d.PrimaryKey, stamped: i%2 == 0}
	}
	return devs, nil
}

// startCrashHub starts `shopfloor serve` on free loopback ports and waits
// for /healthz.
func startCrashHub(ctx context.Context, o CrashOptions) (*crashHub, time.Duration, error) {
	h := &crashHub{http: freeAddr(), mqtt: freeAddr(), exited: make(chan struct{})}
	args := append([]string{"serve", "--data", o.Data, "--http", h.http, "--mqtt", h.mqtt,
		"--mqtts", "", "--https", "", "--log-level", "warn"}, o.Args...)
	h.cmd = exec.Command(o.Binary, args...)
	h.cmd.Env = append(os.Environ(), "SHOPFLOOR_ADMIN_TOKEN="+crashToken)
	logf, err := os.OpenFile(filepath.Join(o.Data, "crash-harness.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("hub log: %w", err)
	}
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	start := time.Now()
	if err := h.cmd.Start(); err != nil {
		logf.Close()
		return nil, 0, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	go func() { _ = h.cmd.Wait(); logf.Close(); close(h.exited) }()
	for {
		select {
		case <-ctx.Done():
			h.kill()
			return nil, 0, ctx.Err()
		case <-h.exited:
			return nil, 0, fmt.Errorf("the hub exited during start-up; see %s", filepath.Join(o.Data, "crash-harness.log"))
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := http.Get("http://" + h.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h, time.Since(start), nil
			}
		}
		if time.Since(start) > 2*time.Minute {
			h.kill()
			return nil, 0, errors.New("the hub did not answer /healthz within 2 minutes")
		}
	}
}

func (h *crashHub) kill() {
	_ = h.cmd.Process.Kill()
	<-h.exited
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// loadAndStop publishes from every device for run, then signals the hub and
// waits for it to exit; it returns how many PUBACKs arrived.
func loadAndStop(ctx context.Context, hub *crashHub, devs []*crashDevice, base int64, inflight int, run time.Duration, sig string, stopSec *float64) (int, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	stop := make(chan struct{})
	for _, d := range devs {
		d.round, d.first = map[int64]bool{}, d.next
		user, pass, err := simulate.Credentials("localhost", d.id, d.key, time.Now().Add(time.Hour))
		if err != nil {
			return 0, err
		}
		c, err := dial(ctx, hub.mqtt, nil, d.id, user, pass, 60*time.Second)
		if err != nil {
			return 0, fmt.Errorf("connect %s: %w", d.id, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := publishUntil(c, d, base, inflight, stop)
			mu.Lock()
			acked += n
			mu.Unlock()
		}()
	}
	select {
	case <-time.After(run):
	case <-ctx.Done():
	}
	signal := syscall.SIGKILL
	if sig == "term" {
		signal = syscall.SIGTERM
	}
	t0 := time.Now()
	_ = hub.cmd.Process.Signal(signal)
	select {
	case <-hub.exited:
	case <-time.After(60 * time.Second):
		hub.kill()
		return 0, errors.New("the hub did not stop within 60 s of SIGTERM")
	}
	*stopSec = time.Since(t0).Seconds()
	close(stop)
	wg.Wait()
	return acked, ctx.Err()
}

// publishUntil sends {"seq":n} (and "ts" for stamped devices) keeping
// inflight messages unacknowledged, until the connection ends; it records
// every acknowledged sequence number in d.round.
func publishUntil(c *conn, d *crashDevice, base int64, inflight int, stop chan struct{}) int {
	topic := "devices/" + d.id + "/messages/events/"
	window := make(chan struct{}, inflight)
	var mu sync.Mutex
	pending := map[uint16]int64{}
	acked := 0
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			typ, _, body, err := c.read()
			if err != nil {
				return
			}
			if typ != pktPuback || len(body) < 2 {
				continue
			}
			id := binary.BigEndian.Uint16(body)
			mu.Lock()
			if seq, ok := pending[id]; ok {
				delete(pending, id)
				d.round[seq] = true
				acked++
			}
			mu.Unlock()
			<-window
		}
	}()
	// Unstamped devices stay under one message per millisecond: faster, the
	// hub refuses them (0x96) rather than stamp them into the future.
	pace := time.NewTicker(2 * time.Millisecond)
	defer pace.Stop()
	var payload []byte
	for id := uint16(1); ; id = id%65535 + 1 {
		select {
		case window <- struct{}{}:
		case <-readerDone:
			c.nc.Close()
			return acked
		case <-stop:
			c.nc.Close()
			<-readerDone
			return acked
		}
		if !d.stamped {
			select {
			case <-pace.C:
			case <-stop:
			}
		}
		seq := d.next
		d.next++
		payload = append(payload[:0], `{"seq":`...)
		payload = strconv.AppendInt(payload, seq, 10)
		if d.stamped {
			payload = append(payload, `,"ts":`...)
			payload = strconv.AppendInt(payload, base+seq, 10)
		}
		payload = append(payload, '}')
		mu.Lock()
		pending[id] = seq
		mu.Unlock()
		c.publish(topic, 1, id, payload)
		if c.flush() != nil {
			<-readerDone
			return acked
		}
	}
}

// verifyRound reads every device's stored "seq" values since the round
// began and compares them with what was acknowledged. Messages of a round
// that was cut short may still be on their way into the tsdb after the
// restart, so it polls for up to a minute for missing ones.
func verifyRound(ctx context.Context, client *simulate.Client, devs []*crashDevice, base int64, from time.Time, r *CrashRound) error {
	deadline := time.Now().Add(time.Minute)
	for {
		r.Stored, r.Lost, r.Duplicated, r.Extra = 0, 0, 0, 0
		for _, d := range devs {
			lo, hi := from, time.Now().Add(2*time.Second)
			if d.stamped {
				minSeq, maxSeq := d.next, int64(-1)
				for s := range d.round {
					minSeq, maxSeq = min(minSeq, s), max(maxSeq, s)
				}
				if maxSeq < 0 {
					continue
				}
				lo, hi = time.UnixMilli(base+minSeq), time.UnixMilli(base+d.next)
			}
			counts, err := storedSeqs(ctx, client, d.id, lo, hi)
			if err != nil {
				return err
			}
			for seq := range d.round {
				switch counts[seq] {
				case 0:
					r.Lost++
				case 1:
					r.Stored++
				default:
					r.Stored++
					r.Duplicated++
				}
			}
			for seq, n := range counts {
				if !d.round[seq] && seq >= d.first {
					r.Extra++
					if n > 1 {
						r.Duplicated++
					}
				}
			}
		}
		if r.Lost == 0 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// storedSeqs counts the stored values of field seq between lo and hi,
// reading raw points in windows small enough for the API's limit.
func storedSeqs(ctx context.Context, client *simulate.Client, id string, lo, hi time.Time) (map[int64]int, error) {
	counts := map[int64]int{}
	const window = 5 * time.Second
	for t := lo; t.Before(hi); t = t.Add(window) {
		end := t.Add(window)
		series, err := client.Telemetry(ctx, id, simulate.TelemetryQuery{Names: []string{"seq"}, From: t, To: end.Add(-time.Millisecond), Agg: "raw"})
		if err != nil {
			return nil, fmt.Errorf("read back %s: %w", id, err)
		}
		for _, s := range series {
			for _, p := range s.Points {
				if v, ok := p.V.(float64); ok {
					counts[int64(v)]++
				}
			}
		}
	}
	return counts, nil
}

// crashHelp is the long help of `shopfloor bench crash`.
const crashHelp = `Crash starts the hub binary on a data directory, publishes QoS 1
telemetry from several devices (half of them without a "ts", so the hub
stamps them), and at a random moment stops the hub with SIGKILL or SIGTERM.
It restarts the hub on the same data and checks every acknowledged message
against the stored series: found exactly once, or lost, or duplicated. Each
round prints its counts, how long the stop took and the restart time
(process start to /healthz). It exits non-zero if anything was lost or
duplicated.`

// newCrashCommand returns `shopfloor bench crash`.
func newCrashCommand(logger *slog.Logger) *cobra.Command {
	o := CrashOptions{Logger: logger}
	var out string
	cmd := &cobra.Command{
		Use:   "crash",
		Short: "Kill and stop a hub under load, restart it, and count acknowledged messages lost or duplicated",
		Long:  crashHelp,
		Example: `  shopfloor bench crash --rounds 100 --signal mixed
  shopfloor bench crash --rounds 10 --fsync --data /tmp/crash`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find the shopfloor binary: %w", err)
				}
				o.Binary = exe
			}
			if o.Data == "" {
				dir, err := os.MkdirTemp("", "shopfloor-crash-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				o.Data = dir
			}
			o.Progress = cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			fmt.Fprintf(cmd.ErrOrStderr(), "crash: %d rounds, %d devices, signal %s, data in %s\n", o.Rounds, o.Devices, o.Signal, o.Data)
			res, err := RunCrash(ctx, o)
			if err != nil {
				return err
			}
			if out == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				writeCrashText(cmd.OutOrStdout(), res)
			}
			if res.Lost > 0 || res.Duplicated > 0 {
				return fmt.Errorf("%d acknowledged messages lost, %d duplicated: %w", res.Lost, res.Duplicated, ErrDurability)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Binary, "binary", "", "the shopfloor binary to run as the hub (default: this one)")
	fl.StringVar(&o.Data, "data", "", "the hub's data directory (default: a new temporary one, removed at the end)")
	fl.IntVar(&o.Rounds, "rounds", 10, "stop-and-restart rounds")
	fl.IntVar(&o.Devices, "devices", 4, "publishing devices (every other one sends no \"ts\")")
	fl.IntVar(&o.Inflight, "inflight", 16, "unacknowledged QoS 1 messages per device")
	fl.DurationVar(&o.MinRun, "min-run", 500*time.Millisecond, "shortest load before a stop")
	fl.DurationVar(&o.MaxRun, "max-run", 3*time.Second, "longest load before a stop")
	fl.StringVar(&o.Signal, "signal", "mixed", "kill (SIGKILL), term (SIGTERM) or mixed")
	fl.Uint64Var(&o.Seed, "seed", uint64(time.Now().UnixNano()), "random seed for run lengths and signals")
	fl.StringSliceVar(&o.Args, "serve-arg", nil, "extra argument for `shopfloor serve` (repeatable), e.g. --serve-arg=--fsync")
	fl.StringVar(&out, "out", "text", "text or json")
	return cmd
}

func writeCrashText(w io.Writer, r CrashResult) {
	var restart, stop float64
	bySig := map[string]int{}
	for _, x := range r.Rounds {
		restart = max(restart, x.RestartSec)
		stop = max(stop, x.StopSec)
		bySig[x.Signal]++
	}
	fmt.Fprintf(w, "rounds        %d (SIGKILL %d, SIGTERM %d)\n", len(r.Rounds), bySig["kill"], bySig["term"])
	fmt.Fprintf(w, "acknowledged  %d\n", r.Acked)
	fmt.Fprintf(w, "lost          %d\n", r.Lost)
	fmt.Fprintf(w, "duplicated    %d\n", r.Duplicated)
	fmt.Fprintf(w, "longest stop  %.2f s, longest restart %.2f s\n", stop, restart)
}
