package platform

import (
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

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
// the default route to it, and the gateway as a process of its own. Stack
// instances and a gateway left running by an earlier owner of the data
// directory that died (kill -9) are adopted, not restarted: they kept
// serving meanwhile. A clean Close stops them all.
func (r *Running) StartApps(ctx context.Context, opts AppOptions) error {
	if opts.Instances == 0 {
		opts.Instances = 2
	}
	r.OnClose(func(ctx context.Context) {
		if err := r.Stacks.StopAll(ctx); err != nil {
			r.log.Warn("stop stacks", "err", err)
		}
	})
	snap, err := r.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	adopted, err := r.Stacks.Adopt(ctx, snap)
	if err != nil {
		return fmt.Errorf("adopt the stacks of an earlier run: %w", err)
	}
	if len(adopted) > 0 {
		r.log.Info("adopted running stacks", "stacks", adopted)
	}
	if !slices.Contains(adopted, SharedStack) {
		if _, err := r.Stacks.Deploy(ctx, stack.Spec{Name: SharedStack, Version: "v1", Instances: opts.Instances}); err != nil {
			return fmt.Errorf("deploy the shared stack: %w", err)
		}
	}
	if _, ok := snap.Routes[registry.DefaultRoute]; !ok {
		if err := r.Store.SetRoute(ctx, registry.Route{Tenant: registry.DefaultRoute,
			Backends: []registry.Backend{{Stack: SharedStack, Weight: 100}}}, 0); err != nil {
			return err
		}
	}
	gw, err := StartGateway(ctx, GatewayOptions{Dir: filepath.Join(r.Local.Dir, "gateway"), Binary: r.binary,
		Env: gatewayEnv(r.Stacks.Env, r.Local.State), Listen: opts.GatewayListen, AdminListen: opts.GatewayAdminListen, Logger: r.log,
		Exited: func(err error) { r.log.Error("gateway exited; not restarted", "err", err) }})
	if err != nil {
		return err
	}
	r.OnClose(func(ctx context.Context) {
		if err := gw.Stop(ctx); err != nil {
			r.log.Warn("stop gateway", "err", err)
		}
	})
	r.Gateway = gw
	r.GatewayURL, r.GatewayAdminURL = gw.URL(), gw.AdminURL()
	r.Plane.SetGatewayURL(r.GatewayURL) // rollouts preview through it
	r.Local.State.GatewayURL = r.GatewayURL
	r.Local.State.GatewayAdminURL = r.GatewayAdminURL
	return r.Local.Save()
}

// gatewayEnv is the gateway process's environment: the instances' shared
// environment (never the platform secret) plus the tenant-header root key,
// which is all the gateway needs to sign for every stack.
func gatewayEnv(shared []string, st *State) []string {
	env := slices.DeleteFunc(slices.Clone(shared), func(kv string) bool { return strings.HasPrefix(kv, "TENANTRY_SECRET=") })
	return append(env, "TENANTRY_HEADER_ROOT_KEY="+hex.EncodeToString(headerRoot(st)))
}
