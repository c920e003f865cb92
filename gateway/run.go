package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tenantry/httpedge"
	"tenantry/registry"
)

// RunConfig configures Run. Zero values mean the documented defaults.
type RunConfig struct {
	// ControlDSN is the registry's control database, which the gateway
	// follows (routes, stacks, API keys). Required.
	ControlDSN string
	// HeaderKey is the tenant-header root key (tenantsig.RootKey of the
	// platform secret), from which the gateway derives each stack's key.
	// Required.
	HeaderKey []byte
	// Listeners: the public one serves the gateway, the admin one /metrics.
	Listeners httpedge.Listeners
	// Logger: nil discards.
	Logger *slog.Logger
}

// ErrInvalidRunConfig is returned (wrapped) by Run for a config it cannot
// run.
var ErrInvalidRunConfig = errors.New("invalid gateway run config")

// Run is the gateway as its own process, as `tenantry gateway` runs it: it
// follows the registry through a registry.Watcher, swapping its routing
// table on every change, and serves on the public listener (metrics on the
// admin one) until ctx ends; then it stops accepting connections and drains
// in-flight requests (Config.DrainTimeout's default). Four times a second it
// publishes its per-stack request outcomes to the registry (stack_stats).
func Run(ctx context.Context, cfg RunConfig) error {
	if cfg.ControlDSN == "" || len(cfg.HeaderKey) == 0 {
		return fmt.Errorf("%w: the control DSN and the header key are required", ErrInvalidRunConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := registry.NewWatcher(cfg.ControlDSN, registry.WatcherOptions{Logger: log})
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer w.Stop()
	// The store receives this gateway's per-stack stats (stack_stats).
	store, err := registry.ConnectStore(ctx, cfg.ControlDSN, log)
	if err != nil {
		return fmt.Errorf("open registry: %w", err)
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g, err := New(Config{Source: w, HeaderKey: cfg.HeaderKey, Logger: log, Registerer: reg, Stats: store})
	if err != nil {
		return err
	}
	g.Start()
	defer g.Stop()
	log.Info("following the registry", "registry_version", w.Current().Version)
	if err := cfg.Listeners.Serve(ctx, g.Serve, g.AdminHandler(), g.cfg.DrainTimeout, log); err != nil {
		return err
	}
	log.Info("gateway drained")
	return nil
}
