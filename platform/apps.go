package platform

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tenantry/gateway"
	"tenantry/httpedge"
	"tenantry/registry"
	"tenantry/stack"
)

// SharedStack is the stack `tenantry up` deploys for the pooled tenants; the
// default route points at it.
const SharedStack = "shared"

// AppOptions configures StartApps.
type AppOptions struct {
	// Instances of the shared stack; default 2.
	Instances int
	// GatewayListen is the gateway's address; default: the address this
	// data directory's gateway had before when it is free, else
	// 127.0.0.1:0.
	GatewayListen string
	// GatewayAdminListen is the address of the gateway's admin listener
	// (/metrics, /healthz, /instances); default like GatewayListen's.
	GatewayAdminListen string
}

// StartApps starts the application tier on a running platform: the shared
// stack (OMS instances as processes, through the local stack provider) with
// the default route to it, and the gateway.
func (r *Running) StartApps(ctx context.Context, opts AppOptions) error {
	if opts.Instances == 0 {
		opts.Instances = 2
	}
	if opts.GatewayListen == "" {
		opts.GatewayListen = reuseAddr(r.Local.State.GatewayURL)
	}
	if opts.GatewayAdminListen == "" {
		opts.GatewayAdminListen = reuseAddr(r.Local.State.GatewayAdminURL)
	}
	r.OnClose(func(ctx context.Context) {
		snap, err := r.Store.Snapshot(ctx)
		if err != nil {
			return
		}
		for name := range snap.Stacks {
			_ = r.Stacks.Stop(ctx, name)
		}
	})
	// Stacks recorded by an earlier run have no processes any more.
	snap, err := r.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	for name, s := range snap.Stacks {
		if s.Status != registry.StackStopped {
			if err := r.Store.SetStackStatus(ctx, name, registry.StackStopped); err != nil {
				return err
			}
		}
	}
	if _, err := r.Stacks.Deploy(ctx, stack.Spec{Name: SharedStack, Version: "v1", Instances: opts.Instances}); err != nil {
		return fmt.Errorf("deploy the shared stack: %w", err)
	}
	if _, ok := snap.Routes[registry.DefaultRoute]; !ok {
		if err := r.Store.SetRoute(ctx, registry.Route{Tenant: registry.DefaultRoute,
			Backends: []registry.Backend{{Stack: SharedStack, Weight: 100}}}, 0); err != nil {
			return err
		}
	}
	return r.startGateway(ctx, opts.GatewayListen, opts.GatewayAdminListen)
}

func (r *Running) startGateway(ctx context.Context, listen, adminListen string) error {
	w := registry.NewWatcher(r.Local.State.ControlDSN, registry.WatcherOptions{Logger: r.log})
	if err := w.Start(ctx); err != nil {
		return err
	}
	r.Watcher = w
	reg := prometheus.NewRegistry()
	g, err := gateway.New(gateway.Config{Source: w, Secret: []byte(r.Local.State.Secret), Logger: r.log,
		Registerer: reg, Gatherer: reg})
	if err != nil {
		w.Stop()
		return err
	}
	g.Start()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		g.Stop()
		w.Stop()
		return fmt.Errorf("gateway listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", adminListen)
	if err != nil {
		ln.Close()
		g.Stop()
		w.Stop()
		return fmt.Errorf("gateway admin listen: %w", err)
	}
	r.GatewayURL = "http://" + ln.Addr().String()
	r.GatewayAdminURL = "http://" + adminLn.Addr().String()
	gctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		if err := g.Serve(gctx, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("gateway", "err", err)
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		admin := httpedge.NewServer(g.AdminHandler(), httpedge.Limits{}, r.log)
		if err := httpedge.Serve(gctx, admin, adminLn, 5*time.Second); err != nil {
			r.log.Error("gateway admin listener", "err", err)
		}
	}()
	r.OnClose(func(context.Context) {
		cancel()
		timeout := time.After(35 * time.Second)
		for range 2 {
			select {
			case <-done:
			case <-timeout:
			}
		}
		g.Stop()
		w.Stop()
	})
	r.Local.State.GatewayURL = r.GatewayURL
	r.Local.State.GatewayAdminURL = r.GatewayAdminURL
	return r.Local.Save()
}
