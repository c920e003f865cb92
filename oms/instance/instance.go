// Package instance runs the reference OMS as one instance of a stack, the
// way `tenantry oms` (and so every stack provider) starts it: the OMS API
// over a tenant router (package route) that follows the registry, each
// tenant on its own role and pool, with metrics and health on a separate
// admin listener. Package oms itself reaches databases only through its DB
// interface; this is the production wiring of that interface.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tenantry/httpedge"
	"tenantry/oms"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/route"
)

// ShutdownTimeout bounds how long in-flight requests may take to drain once
// the instance is told to stop.
const ShutdownTimeout = 30 * time.Second

// Config configures Run. Zero values mean the documented defaults.
type Config struct {
	// ControlDSN is the registry's control database; the router follows
	// placements there, and registers, heartbeats and acknowledges epochs.
	// A reader role (registry.Store.GrantReader) is enough; the registry is
	// not migrated from here. Required.
	ControlDSN string
	// TenantKey derives each tenant's database password
	// (provision.TenantKey of the platform secret): the instances of a
	// shared stack hold it. TenantPasswords instead lists the passwords of
	// the only tenants this instance may serve (a dedicated stack): others
	// get no password, so their roles cannot log in from here. One of the
	// two is required.
	TenantKey       []byte
	TenantPasswords map[string]string
	// HeaderKey is the tenant-header key of Stack (tenantsig.StackKey):
	// only headers signed with it for Stack are accepted. Required.
	HeaderKey []byte
	// Stack is the stack this instance belongs to. Required.
	Stack string
	// Listeners: the public one serves the API, the admin one /metrics and
	// /healthz.
	Listeners httpedge.Listeners
	// Logger: nil discards.
	Logger *slog.Logger
}

// ErrInvalidConfig is returned (wrapped) by Run for a config it cannot run.
var ErrInvalidConfig = errors.New("invalid OMS instance config")

// Run serves the OMS until ctx ends, then drains in-flight requests (up to
// ShutdownTimeout).
func Run(ctx context.Context, cfg Config) error {
	if cfg.ControlDSN == "" || (len(cfg.TenantKey) == 0 && cfg.TenantPasswords == nil) || len(cfg.HeaderKey) == 0 || cfg.Stack == "" {
		return fmt.Errorf("%w: the control DSN, the tenant key or passwords, the header key and the stack are required", ErrInvalidConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	faults, err := oms.FaultsFromEnv()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if faults.Enabled() {
		log.Warn("test-only faults injected", "error_rate", faults.ErrorRate, "latency", faults.Latency)
	}
	store, err := registry.ConnectStore(ctx, cfg.ControlDSN, log)
	if err != nil {
		return fmt.Errorf("open registry: %w", err)
	}
	defer store.Close()
	watcher := registry.NewWatcher(cfg.ControlDSN, registry.WatcherOptions{Logger: log})
	if err := watcher.Start(ctx); err != nil {
		return err
	}
	defer watcher.Stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	router, err := route.New(route.Config{
		Source:      watcher,
		Registry:    store,
		Credentials: cfg.credentials,
		Logger:      log,
		Registerer:  reg,
	})
	if err != nil {
		return err
	}
	if err := router.Start(ctx); err != nil {
		return err
	}
	defer router.Stop()

	srv, err := oms.NewServer(oms.Config{
		DB:         router,
		HeaderKey:  cfg.HeaderKey,
		Stack:      cfg.Stack,
		Logger:     log,
		Registerer: reg,
		// A paused tenant is back within seconds; a fenced one is unavailable
		// until an operator acts: both are 503, not a server fault.
		Retryable: func(err error) bool {
			return errors.Is(err, route.ErrTenantPaused) || errors.Is(err, route.ErrTenantFenced)
		},
		NotFound: func(err error) bool { return errors.Is(err, route.ErrTenantNotFound) },
		Faults:   faults,
	})
	if err != nil {
		return err
	}
	serve := func(ctx context.Context, ln net.Listener) error {
		return httpedge.Serve(ctx, httpedge.NewServer(srv, httpedge.Limits{}, log), ln, ShutdownTimeout)
	}
	if err := cfg.Listeners.Serve(ctx, serve, srv.AdminHandler(), ShutdownTimeout, log); err != nil {
		return err
	}
	log.Info("oms drained")
	return nil
}

// credentials is the router's Credentials: the tenant's role and password
// (none for a tenant a dedicated stack was not given).
func (cfg *Config) credentials(tenant string) (string, string) {
	if cfg.TenantPasswords != nil {
		return provision.RoleName(tenant), cfg.TenantPasswords[tenant]
	}
	return provision.RoleName(tenant), provision.KeyedPassword(cfg.TenantKey, tenant)
}
