package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/simulate"
)

// NewLogger builds the process logger at the configured level.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ServeCommand is `shopfloor serve`.
func ServeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub: MQTT gateway, bus, registry, time-series store, REST API",
		Long: `Run the hub with zero configuration: data in ./shopfloor-data, MQTT on :1883,
MQTT over TLS on :8883, HTTP (REST API, Prometheus API, MQTT over WebSocket at /mqtt)
on :8080. Every setting also comes from an SHOPFLOOR_* environment variable or a
YAML file given with --config. On first start the hub prints an admin token once;
set SHOPFLOOR_ADMIN_TOKEN to choose it yourself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), os.Getenv)
			if err != nil {
				return err
			}
			logger := NewLogger(cmd.ErrOrStderr(), cfg.LogLevel)
			ctx, cancel := signalContext()
			defer cancel()
			if path, _ := cmd.Flags().GetString("cpu-profile"); path != "" {
				stop, err := startCPUProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			hub, err := NewHub(ctx, cfg, logger)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if hub.AdminSecret != "" {
				fmt.Fprintf(out, "First start: admin token for the operator organization (shown once, only its hash is stored):\n\n  %s\n\n", hub.AdminSecret)
			}
			fmt.Fprintf(out, "Shopfloor hub\n  API:        http://%s/api/v1  (OpenAPI at /api/openapi.json)\n  MQTT:       %s\n  MQTT/TLS:   %s  (CA: %s)\n  WebSocket:  ws://%s/mqtt\n  HTTPS:      %s\n  Console:    http://%s/\n  Prometheus: http://%s/prometheus\n",
				displayAddr(hub.HTTPAddr()), orNone(hub.MQTTAddr()), orNone(hub.MQTTSAddr()), hub.CAFile(), displayAddr(hub.HTTPAddr()), orNone(hub.HTTPSAddr()), displayAddr(hub.HTTPAddr()), displayAddr(hub.HTTPAddr()))
			return hub.Run(ctx)
		},
	}
	config.Flags(cmd.Flags())
	cmd.Flags().String("cpu-profile", "", "write a Go CPU profile to this file until the hub stops (for performance work)")
	return cmd
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func orNone(s string) string {
	if s == "" {
		return "disabled"
	}
	return displayAddr(s)
}

// displayAddr turns a wildcard listen address into one a user can click.
func displayAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// freeAddr returns addr when it can be bound, otherwise a free port on the
// same host; moved says which.
func freeAddr(addr string) (string, bool, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		_ = ln.Close()
		return addr, false, nil
	}
	host, _, _ := net.SplitHostPort(addr)
	ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", false, fmt.Errorf("no free port on %q: %w", host, err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a, true, nil
}

// DemoCommand is `shopfloor demo`: a hub plus a simulated factory.
func DemoCommand() *cobra.Command {
	var devices int
	var rate float64
	var data string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a hub and a simulated factory (2 sites, about 40 machines) for a first look",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			return runDemo(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), data, devices, rate)
		},
	}
	cmd.Flags().IntVar(&devices, "devices", 40, "number of simulated machines")
	cmd.Flags().Float64Var(&rate, "rate", 1, "messages per second per machine")
	cmd.Flags().StringVar(&data, "data", filepath.Join(os.TempDir(), "shopfloor-demo"), "data directory for the demo hub")
	return cmd
}

func runDemo(ctx context.Context, out, errw io.Writer, data string, devices int, rate float64) error {
	cfg := config.Default()
	cfg.Data = data
	cfg.LogLevel = "warn"
	for _, p := range []*string{&cfg.HTTP, &cfg.HTTPS, &cfg.MQTT, &cfg.MQTTS} {
		addr, moved, err := freeAddr(*p)
		if err != nil {
			return err
		}
		if moved {
			fmt.Fprintf(out, "Port %s is taken; using %s instead.\n", *p, displayAddr(addr))
		}
		*p = addr
	}
	logger := NewLogger(errw, cfg.LogLevel)
	hub, err := NewHub(ctx, cfg, logger)
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- hub.Run(ctx) }()
	for !hub.Ready() {
		select {
		case err := <-runErr:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
	org, token, err := demoTenant(ctx, hub.Registry, hub.OperatorOrg)
	if err != nil {
		return err
	}
	base := "http://" + displayAddr(hub.HTTPAddr())
	fleet, err := simulate.New(simulate.Config{
		URL: base, Token: token, MQTTAddr: displayAddr(hub.MQTTAddr()), Sites: []string{"plant-north", "plant-south"},
		Devices: devices, Rate: rate, QoS: 1, Seed: time.Now().UnixNano(), FaultRate: 0.02, Logger: logger,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Provisioning %d simulated machines in organization %q...\n", devices, org)
	if err := fleet.Provision(ctx); err != nil {
		return fmt.Errorf("provision the simulated factory: %w", err)
	}
	fmt.Fprintf(out, `
Shopfloor demo is running. Press Ctrl-C to stop.

  API:        %s/api/v1   (OpenAPI: %s/api/openapi.json)
  MQTT:       mqtt://%s
  MQTT/TLS:   mqtts://%s   (CA: %s)
  WebSocket:  ws://%s/mqtt
  HTTPS:      https://%s   (Azure IoT SDK MqttWs: /$iothub/websocket)
  Console:    %s/   (sign in with the token below)
  Prometheus: %s/prometheus
  Org:        %s
  Token:      %s

Try:
  export SHOPFLOOR_URL=%s SHOPFLOOR_TOKEN=%s
  shopfloor device list
  shopfloor query latest <device id>
`, base, base, displayAddr(hub.MQTTAddr()), displayAddr(hub.MQTTSAddr()), hub.CAFile(), displayAddr(hub.HTTPAddr()), orNone(hub.HTTPSAddr()), base, base, org, token, base, token)
	go func() {
		if err := fleet.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("simulated factory stopped", "err", err)
		}
	}()
	go func() {
		// The factory dashboard charts machines that report, so wait for data.
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
		if err := hub.EnsureFactoryDashboard(ctx, org); err != nil {
			logger.Warn("factory dashboard not created", "err", err)
		}
	}()
	return <-runErr
}

// demoTenant makes (or reuses) the demo customer organization and a fresh
// admin token for it.
func demoTenant(ctx context.Context, reg *registry.Service, operator string) (string, string, error) {
	const id = "acme-demo"
	if _, err := reg.GetOrg(ctx, id); err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			return "", "", err
		}
		if _, err := reg.CreateOrg(ctx, operator, registry.Org{ID: id, Name: "ACME Manufacturing (demo)"}); err != nil {
			return "", "", fmt.Errorf("create demo organization: %w", err)
		}
	}
	tok, err := reg.CreateToken(ctx, id, "demo", registry.RoleAdmin)
	if err != nil {
		return "", "", fmt.Errorf("create demo token: %w", err)
	}
	return id, tok.Secret, nil
}
