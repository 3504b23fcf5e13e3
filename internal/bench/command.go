package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// NewCommand returns the `bench` command.
func NewCommand(logger *slog.Logger) *cobra.Command {
	var (
		o        Options
		qos      int
		out      string
		useTLS   bool
		insecure bool
		idle     IdleOptions
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a hub or an MQTT broker with telemetry and measure throughput and latency",
		Long: `Bench opens many MQTT connections, publishes JSON telemetry on
devices/{id}/messages/events/ as fast as possible (or at --rate messages per
second in total) for --duration, and reports:

  throughput   acknowledged messages per second (QoS 0: sent per second)
  ack latency  publish to PUBACK, every message (QoS 1)
  queryable    publish until the data can be read back:
               --target shopfloor: sampled; probes poll GET /api/v1/devices/{id}/latest
                 until the message's sequence number (field f0) shows (an upper bound)
               --target mqtt: every message; a subscriber on the same topics receives it
  drain        after the last publish, how long until everything acknowledged
               was delivered or visible

For the shopfloor target it provisions devices bench-0001… on the hub (site
"bench") and connects with their SAS tokens; for a plain broker it connects
without credentials. It stops by itself after --duration plus at most --drain.

With --idle N it measures idle connections instead: it provisions N devices
bench-idle-00001… on the hub (CSV import, then their keys), connects them all
with SAS tokens (--connect-concurrency attempts in flight), holds them for
--hold while pinging each every half --keepalive, and reports the connected
count, the connect rate, failures with their causes, and the hub's memory
(process_resident_memory_bytes, go_memstats_heap_inuse_bytes from its
/metrics) before connecting, after connecting and at the end of the hold, per
connection too. It raises its own open-file limit to the hard limit.`,
		Example: `  shopfloor bench --target mqtt --mqtt 127.0.0.1:18830 --connections 200 --qos 1 --duration 20s
  shopfloor bench --target shopfloor --url http://127.0.0.1:8080 --token sft_... --mqtt 127.0.0.1:1883
  shopfloor bench --idle 10000 --hold 30s --url http://127.0.0.1:8080 --token sft_... --mqtt 127.0.0.1:1883`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.URL == "" {
				o.URL = os.Getenv("SHOPFLOOR_URL")
			}
			if o.Token == "" {
				o.Token = os.Getenv("SHOPFLOOR_TOKEN")
			}
			if qos < 0 || qos > 1 {
				return fmt.Errorf("--qos %d: use 0 or 1: %w", qos, ErrOptions)
			}
			o.QoS = byte(qos)
			if out != "text" && out != "json" {
				return fmt.Errorf("--out %q: use text or json: %w", out, ErrOptions)
			}
			if useTLS || insecure {
				host, _, _ := net.SplitHostPort(o.MQTTAddr)
				o.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // opt-in for self-signed test hubs
			}
			o.Logger = logger
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if cmd.Flags().Changed("idle") {
				if o.Target != TargetShopfloor {
					return fmt.Errorf("--idle measures a hub's memory: use it with --target shopfloor: %w", ErrOptions)
				}
				idle.MQTTAddr, idle.TLS, idle.URL, idle.Token, idle.Logger = o.MQTTAddr, o.TLS, o.URL, o.Token, logger
				idle.Progress = cmd.ErrOrStderr()
				if cmd.Flags().Changed("prefix") {
					idle.Prefix = o.Prefix
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "bench: %d idle connections to %s, held %s…\n", idle.Devices, o.MQTTAddr, idle.Hold)
				res, err := RunIdle(ctx, idle)
				if err != nil && res.Connected == 0 {
					return err
				}
				if out == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					if e := enc.Encode(res); e != nil {
						return e
					}
				} else {
					WriteIdleText(cmd.OutOrStdout(), res)
				}
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "bench: %s at %s, %d connections, QoS %d, %s…\n", o.Target, o.MQTTAddr, o.Connections, o.QoS, o.Duration)
			res, err := Run(ctx, o)
			if err != nil {
				return err
			}
			if out == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			WriteText(cmd.OutOrStdout(), res)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Target, "target", TargetShopfloor, "shopfloor (a hub) or mqtt (a plain broker such as Mosquitto)")
	fl.StringVar(&o.MQTTAddr, "mqtt", "127.0.0.1:1883", "MQTT host:port")
	fl.StringVar(&o.URL, "url", "", "hub REST API URL for the shopfloor target (env SHOPFLOOR_URL)")
	fl.StringVar(&o.Token, "token", "", "API token for the shopfloor target (env SHOPFLOOR_TOKEN)")
	fl.IntVar(&o.Connections, "connections", 200, "MQTT connections (one device each)")
	fl.Float64Var(&o.Rate, "rate", 0, "total messages per second over all connections (0 = as fast as possible)")
	fl.DurationVar(&o.Duration, "duration", 30*time.Second, "how long to publish")
	fl.IntVar(&qos, "qos", 1, "QoS of the published messages (0 or 1)")
	fl.IntVar(&o.Fields, "fields", 5, "numeric fields per message (f0 is a sequence number)")
	fl.IntVar(&o.PayloadSize, "payload-size", 0, "pad every message to this many bytes with JSON white space (0 = no padding)")
	fl.IntVar(&o.Inflight, "inflight", 1, "unacknowledged QoS 1 messages allowed per connection")
	fl.IntVar(&o.Probes, "probes", 2, "concurrent visibility probes against the REST API (shopfloor target)")
	fl.DurationVar(&o.PollInterval, "poll-interval", 5*time.Millisecond, "how often a probe polls the REST API")
	fl.DurationVar(&o.Drain, "drain", 30*time.Second, "longest wait after publishing for acknowledgements, delivery or visibility")
	fl.IntVar(&o.Verify, "verify", 3, "devices whose stored series are counted afterwards to check nothing acknowledged was lost (shopfloor target)")
	fl.BoolVar(&o.NoSubscriber, "no-subscriber", false, "mqtt target: do not subscribe (measures publishing alone; no queryable latency)")
	fl.StringVar(&o.Prefix, "prefix", "bench-", "device and client id prefix")
	fl.StringVar(&out, "out", "text", "output format: text or json")
	fl.BoolVar(&useTLS, "tls", false, "connect with TLS")
	fl.BoolVar(&insecure, "insecure", false, "do not verify the server certificate (implies --tls)")
	fl.IntVar(&idle.Devices, "idle", 0, "measure N idle connections and the hub's memory instead of throughput (shopfloor target)")
	fl.DurationVar(&idle.Hold, "hold", 30*time.Second, "--idle: how long to hold the connections once all are connected")
	fl.DurationVar(&idle.KeepAlive, "keepalive", 60*time.Second, "--idle: MQTT keepalive of the idle connections")
	fl.IntVar(&idle.Concurrency, "connect-concurrency", 64, "--idle: connection attempts in flight")
	cmd.AddCommand(newCrashCommand(logger))
	return cmd
}

// WriteText prints a result for people.
func WriteText(w io.Writer, r Result) {
	lat := func(l Latency) string {
		if l.Count == 0 {
			return "no samples"
		}
		return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s  (mean %s, %d samples)",
			ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max), ms(l.Mean), l.Count)
	}
	inflight := ""
	if r.QoS > 0 {
		inflight = fmt.Sprintf(", inflight %d", r.Inflight)
	}
	rate := "as fast as possible"
	if r.Rate > 0 {
		rate = fmt.Sprintf("target %.0f msg/s", r.Rate)
	}
	fmt.Fprintf(w, "target       %s at %s: %d/%d connections, QoS %d%s, %d fields, %d-byte payloads, %s\n",
		r.Target, r.Addr, r.Connected, r.Connections, r.QoS, inflight, r.Fields, r.PayloadBytes, rate)
	what := "acknowledged"
	if r.QoS == 0 {
		what = "sent (QoS 0: no acknowledgement)"
	}
	fmt.Fprintf(w, "throughput   %.0f msg/s %s (%d of %d messages in %.2fs)\n", r.Throughput, what, r.Acked, r.Sent, r.Seconds)
	if r.QoS > 0 {
		fmt.Fprintf(w, "ack latency  %s\n", lat(r.Ack))
	}
	fmt.Fprintf(w, "queryable    %s\n", lat(r.Queryable))
	fmt.Fprintf(w, "             method: %s\n", r.QueryMethod)
	if r.Target == TargetMQTT && r.Queryable.Count > 0 {
		fmt.Fprintf(w, "delivered    %d of %d\n", r.Delivered, r.Acked)
	}
	state := "complete"
	if !r.DrainComplete {
		state = "gave up"
	}
	fmt.Fprintf(w, "drain        %.2fs after the last publish (%s)\n", r.DrainSeconds, state)
	if r.VerifiedDevices > 0 {
		fmt.Fprintf(w, "verified     %d of %d acknowledged messages found stored (%d devices)\n", r.VerifiedFound, r.VerifiedAcked, r.VerifiedDevices)
	}
	if r.VerifyError != "" {
		fmt.Fprintf(w, "verify       could not read stored series: %s\n", r.VerifyError)
	}
	var kinds []string
	for k, v := range r.ErrorsByKind {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "errors       %d %s\n", r.Errors, strings.Join(kinds, ", "))
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error  %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "generator    %.2f CPU cores used by this load generator\n", r.GeneratorCPU)
}

// WriteIdleText prints an idle result for people.
func WriteIdleText(w io.Writer, r IdleResult) {
	fmt.Fprintf(w, "idle         %d of %d devices connected to the hub at %s, held %.0fs, keepalive %.0fs\n",
		r.Connected, r.Devices, r.Addr, r.HoldSeconds, r.KeepAlive)
	fmt.Fprintf(w, "provision    %d created, %d existed, in %.1fs (CSV import, then one GET per device for its key)\n",
		r.Created, r.Existing, r.ProvisionSeconds)
	fmt.Fprintf(w, "connect      %d in %.1fs: %.0f/s; CONNECT to CONNACK p50 %s  p99 %s  max %s\n",
		r.Connected, r.ConnectSeconds, r.ConnectRate, ms(r.ConnectLatency.P50), ms(r.ConnectLatency.P99), ms(r.ConnectLatency.Max))
	if r.GaveUp != "" {
		fmt.Fprintf(w, "             %s\n", r.GaveUp)
	}
	fmt.Fprintf(w, "hold         %d answered the last ping at the end, %d dropped during the run\n", r.Alive, r.Dropped)
	fmt.Fprintf(w, "hub          %-12s %8s %8s %9s %9s %8s %11s %9s %8s\n", "phase", "RSS MB", "heap MB", "stacks MB",
		"idle heap", "Go sys", "goroutines", "open fds", "devices")
	for _, s := range r.Hub {
		fmt.Fprintf(w, "             %-12s %8.1f %8.1f %9.1f %9.1f %8.1f %11.0f %9.0f %8.0f\n", s.Phase, s.RSSBytes/1e6, s.HeapInuseBytes/1e6,
			s.StackInuseBytes/1e6, (s.HeapIdleBytes-s.HeapReleasedBytes)/1e6, s.SysBytes/1e6, s.Goroutines, s.OpenFDs, s.GatewayConnections)
	}
	fmt.Fprintf(w, "             (idle heap: free heap not yet returned to the OS, part of RSS; Go sys: all the runtime obtained)\n")
	if end, ok := r.Sample(PhaseEnd); ok && r.Alive > 0 {
		fmt.Fprintf(w, "per conn     %.1f KB RSS, %.1f KB heap in use, %.1f KB goroutine stacks (end of hold minus before connecting, over %d connections); "+
			"total RSS %.1f KB per connection\n", r.RSSPerConnection/1e3, r.HeapPerConnection/1e3, r.StackPerConnection/1e3, r.Alive, end.RSSBytes/float64(r.Alive)/1e3)
		if len(end.Missing) > 0 {
			fmt.Fprintf(w, "             the hub does not export %s (shown as 0)\n", strings.Join(end.Missing, ", "))
		}
	}
	var kinds []string
	for k, v := range r.FailuresByKind {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "failures     %d %s\n", r.Failures, strings.Join(kinds, ", "))
	if r.FirstFailure != "" {
		fmt.Fprintf(w, "first        %s\n", r.FirstFailure)
	}
	for _, d := range r.Diagnosis {
		fmt.Fprintf(w, "diagnosis    %s\n", d)
	}
	fmt.Fprintf(w, "generator    %.1f MB RSS, open-file limit %d\n", r.GeneratorRSSBytes/1e6, r.FileLimit)
	fmt.Fprintf(w, "machine      %d CPUs, load average %s at the start, %s at the end\n", r.CPUs, r.LoadStart, r.LoadEnd)
}

func ms(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}
