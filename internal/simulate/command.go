package simulate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// NewCommand returns the `simulate` command.
func NewCommand(logger *slog.Logger) *cobra.Command {
	var (
		cfg       Config
		sites     string
		qos       int
		useTLS    bool
		caFile    string
		insecure  bool
		duration  time.Duration
		provision bool
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run a simulated factory fleet (CNC machines, compressors, robots, AGVs) against a hub",
		Long: `Simulate provisions sites and devices on the hub over its REST API, connects
every device over MQTT as an Azure IoT Hub device (SAS token) and publishes
realistic telemetry: shift patterns, noise and occasional faults (bearing wear,
air leaks, stuck sensors, spikes). The same seed gives the same fleet.

Without --url it connects to any MQTT broker without credentials.`,
		Example: `  shopfloor simulate --devices 40 --sites plant-1,plant-2 --rate 1
  SHOPFLOOR_URL=http://127.0.0.1:8080 SHOPFLOOR_TOKEN=sft_... shopfloor simulate --fault-rate 4`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.URL == "" {
				cfg.URL = os.Getenv("SHOPFLOOR_URL")
			}
			if cfg.Token == "" {
				cfg.Token = os.Getenv("SHOPFLOOR_TOKEN")
			}
			if cfg.URL != "" && cfg.Token == "" {
				return fmt.Errorf("no API token: pass --token or set SHOPFLOOR_TOKEN (an admin or operator token): %w", ErrConfig)
			}
			if cfg.MQTTAddr == "" {
				addr, err := defaultMQTTAddr(cfg.URL, useTLS)
				if err != nil {
					return err
				}
				cfg.MQTTAddr = addr
			}
			if qos < 0 || qos > 1 {
				return fmt.Errorf("--qos %d: use 0 or 1: %w", qos, ErrConfig)
			}
			cfg.QoS = byte(qos)
			for _, s := range strings.Split(sites, ",") {
				if s = strings.TrimSpace(s); s != "" {
					cfg.Sites = append(cfg.Sites, s)
				}
			}
			if useTLS || caFile != "" || insecure {
				tc, err := clientTLS(cfg.MQTTAddr, caFile, insecure)
				if err != nil {
					return err
				}
				cfg.TLS = tc
			}
			cfg.Logger = logger
			if cfg.Logger == nil {
				cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			}
			fleet, err := New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			if err := fleet.Provision(ctx); err != nil {
				return err
			}
			if provision {
				fmt.Fprintf(cmd.OutOrStdout(), "provisioned %d devices on %d sites\n", len(fleet.devices), len(fleet.cfg.Sites))
				return nil
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				progress(ctx, cmd.ErrOrStderr(), fleet)
			}()
			started := time.Now()
			err = fleet.Run(ctx)
			<-done
			s := fleet.Stats()
			fmt.Fprintf(cmd.ErrOrStderr(), "simulate: stopped after %s: %d sent, %d errors, %d reconnects, %d faults\n",
				time.Since(started).Round(time.Second), s.Sent, s.Errors, s.Reconnects, s.Faults)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.URL, "url", "", "hub REST API URL (env SHOPFLOOR_URL); empty connects to any broker without credentials")
	fl.StringVar(&cfg.Token, "token", "", "API token (env SHOPFLOOR_TOKEN)")
	fl.StringVar(&cfg.MQTTAddr, "mqtt", "", "MQTT host:port (default: the URL's host, port 1883, or 8883 with --tls)")
	fl.IntVar(&cfg.Devices, "devices", 10, "number of devices")
	fl.Float64Var(&cfg.Rate, "rate", 1, "messages per second per device")
	fl.IntVar(&qos, "qos", 1, "MQTT QoS for telemetry (0 or 1)")
	fl.Int64Var(&cfg.Seed, "seed", 1, "random seed: the same seed gives the same fleet and signals")
	fl.StringVar(&sites, "sites", "plant-1", "comma-separated site ids; devices are spread evenly")
	fl.Float64Var(&cfg.FaultRate, "fault-rate", 0.5, "mean faults started per device per hour (0 disables)")
	fl.StringVar(&cfg.Prefix, "prefix", "sim-", "device id prefix")
	fl.BoolVar(&useTLS, "tls", false, "connect with TLS (MQTTS)")
	fl.StringVar(&caFile, "ca", "", "PEM file of the CA that signed the hub's certificate (implies --tls)")
	fl.BoolVar(&insecure, "insecure", false, "do not verify the hub's TLS certificate (implies --tls; for a self-signed test hub only)")
	fl.DurationVar(&duration, "duration", 0, "stop after this long (0 runs until interrupted)")
	fl.BoolVar(&provision, "provision-only", false, "create the sites and devices, then exit")
	return cmd
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// defaultMQTTAddr takes the host of the REST URL and the standard MQTT port.
func defaultMQTTAddr(rawURL string, useTLS bool) (string, error) {
	port := "1883"
	if useTLS {
		port = "8883"
	}
	if rawURL == "" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("--url %q is not a URL like http://127.0.0.1:8080: %w", rawURL, ErrConfig)
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// clientTLS builds the TLS configuration for connecting to addr.
func clientTLS(addr, caFile string, insecure bool) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // opt-in for self-signed test hubs
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s holds no PEM certificate: %w", caFile, ErrConfig)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// progress prints the fleet's counters: in place on a terminal, as a line
// every 10 s otherwise.
func progress(ctx context.Context, w io.Writer, f *Fleet) {
	tty := false
	if fi, ok := w.(*os.File); ok {
		if st, err := fi.Stat(); err == nil {
			tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	every := 10 * time.Second
	if tty {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastSent uint64
	last := time.Now()
	show := func() {
		s := f.Stats()
		now := time.Now()
		rate := float64(s.Sent-lastSent) / now.Sub(last).Seconds()
		lastSent, last = s.Sent, now
		line := fmt.Sprintf("simulate: %d/%d connected, %d sent (%.1f msg/s), %d errors, %d reconnects, %d faults",
			s.Connected, s.Devices, s.Sent, rate, s.Errors, s.Reconnects, s.Faults)
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w) // keep the last in-place line
			}
			return
		case <-tick.C:
			show()
		}
	}
}
