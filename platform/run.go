package platform

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"tenantry/control"
	"tenantry/move"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/stack"
	"tenantry/tenantsig"
	"tenantry/workflow"
)

// PooledCluster and PooledAlias are what `tenantry up` creates first: the
// shared (pooled) cluster with one standby, and its alias.
const (
	PooledCluster = "pool-1"
	PooledAlias   = "pool-1"
)

// Options configures Run.
type Options struct {
	// Dir is the data directory.
	Dir string
	// APIListen is the control plane's address; default: the address this
	// data directory's control plane had before when it is free, else
	// 127.0.0.1:0.
	APIListen string
	// Binary is the tenantry executable that stack instances and the
	// gateway run; empty means this process's executable.
	Binary string
	// Moves tunes the move workflow of the control plane.
	Moves  MoveOptions
	Logger *slog.Logger
}

// MoveOptions tune the move workflow of a platform (tests shorten them).
type MoveOptions struct {
	// LeaseTTL of the workflow runner; default 10 s (a replica that hangs
	// is taken over after it; one that dies, at once).
	LeaseTTL time.Duration
	// Config is the base move configuration (see control.PlaneConfig.Move).
	Config move.Config
	// Logger is RunMoveWorker's logger; nil discards.
	Logger *slog.Logger
	// Manual creates the runner and the move service but does not start
	// the runner: the caller starts (and may stop and start again)
	// Running.Runner, e.g. while another control-plane replica owns the
	// moves.
	Manual bool
}

// Running is a started local platform: this machine's clusters (Local), a
// control-plane replica (the same control.Plane that `tenantry control`
// runs), and, after StartApps, the local stack provider and the gateway.
// Close stops it.
type Running struct {
	Local *Local
	Plane *control.Plane
	// Shortcuts into Plane.
	Store   *registry.Store
	Vault   *registry.Vault
	Service *control.Service
	API     *control.Server
	APIURL  string
	Runner  *workflow.Runner
	Moves   *move.Service
	// Stacks runs the OMS instances of this machine's stacks.
	Stacks *stack.LocalProvider
	// Set by StartApps.
	Gateway    *Gateway
	GatewayURL string
	// GatewayAdminURL serves the gateway's /metrics (not the public one).
	GatewayAdminURL string
	// Extensions started after the core (stacks, gateway) register their
	// own shutdown here.
	closers []func(context.Context)
	binary  string
	unlock  func()
	log     *slog.Logger
}

// PlaneConfig is the control-plane configuration of the platform in the
// data directory whose state is st: what `tenantry up` starts, and what a
// second replica (`tenantry control` with the values of platform.json)
// amounts to.
func PlaneConfig(dir string, st *State, opts MoveOptions, log *slog.Logger) control.PlaneConfig {
	return control.PlaneConfig{ControlDSN: st.ControlDSN, Secret: []byte(st.Secret), AdminToken: st.AdminToken,
		BackupDir: control.DefaultBackupDir(dir), Move: opts.Config, LeaseTTL: opts.LeaseTTL,
		ReaderRole: RegistryReader, ManualRunner: opts.Manual, Logger: log, GatewayURL: st.GatewayURL}
}

// Run opens (or creates) the local platform in opts.Dir: the control
// cluster and registry, the pooled cluster with a standby and its alias, and
// a control-plane replica with its API.
func Run(ctx context.Context, opts Options) (_ *Running, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	unlock, err := LockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	l, err := OpenLocal(ctx, opts.Dir, log)
	if err != nil {
		unlock()
		return nil, err
	}
	r := &Running{Local: l, log: log, binary: opts.Binary, unlock: unlock}
	defer func() {
		if err != nil {
			r.Close(context.Background())
		}
	}()
	st := l.State
	r.Stacks = &stack.LocalProvider{
		Binary: opts.Binary,
		Dir:    filepath.Join(l.Dir, "stacks"),
		// The instances (and the gateway) read the registry as its reader
		// role; no superuser or registry-owner credential, no platform
		// secret reaches them.
		Env:      []string{"TENANTRY_CONTROL_DSN=" + st.ReaderDSN},
		StackEnv: func(spec stack.Spec) []string { return stackEnv(st, spec) },
		Logger:   log,
	}
	cfg := PlaneConfig(l.Dir, st, opts.Moves, log)
	cfg.Listen = opts.APIListen
	if cfg.Listen == "" {
		cfg.Listen = reuseAddr(st.APIURL)
	}
	cfg.Provisioner = l
	cfg.Stacks = r.Stacks
	if r.Plane, err = control.StartPlane(ctx, cfg); err != nil {
		return nil, err
	}
	p := r.Plane
	r.Store, r.Vault, r.Service, r.API, r.APIURL, r.Runner, r.Moves = p.Store, p.Vault, p.Service, p.API, p.URL, p.Runner, p.Moves
	r.Stacks.Store = p.Store
	if err := r.ensurePooled(ctx); err != nil {
		return nil, err
	}
	st.APIURL = r.APIURL
	if err := l.Save(); err != nil {
		return nil, err
	}
	return r, nil
}

// ensurePooled creates the pooled cluster and alias on first run.
func (r *Running) ensurePooled(ctx context.Context) error {
	snap, err := r.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	if _, ok := snap.Clusters[PooledCluster]; !ok {
		if _, err := r.Service.CreateCluster(ctx, control.CreateClusterRequest{Name: PooledCluster, Standbys: 1}); err != nil {
			return err
		}
	}
	if _, ok := snap.Aliases[PooledAlias]; !ok {
		if err := r.Service.CreateAlias(ctx, registry.Alias{Name: PooledAlias, Cluster: PooledCluster, Database: "pool_1"}); err != nil {
			return err
		}
	}
	return nil
}

// RunMoveWorker runs a second control-plane replica of the local platform
// in dir (which must exist) until ctx ends: a control.Plane on the
// platform's registry, with no clusters started and no stacks of its own.
// It claims workflows whose owner died or whose lease expired, as every
// replica does; when ctx ends it hands its leases back. Crash tests run it
// in a child process and kill it.
func RunMoveWorker(ctx context.Context, dir string, opts MoveOptions) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	st, err := ReadState(abs)
	if err != nil {
		return fmt.Errorf("open platform %s: %w", abs, err)
	}
	if st.ControlDSN == "" {
		return fmt.Errorf("open platform %s: no control database recorded", abs)
	}
	opts.Manual = false
	p, err := control.StartPlane(ctx, PlaneConfig(abs, st, opts, opts.Logger))
	if err != nil {
		return err
	}
	<-ctx.Done()
	p.Stop(context.Background())
	return nil
}

// OnClose registers f to run first when the platform closes.
func (r *Running) OnClose(f func(context.Context)) { r.closers = append(r.closers, f) }

// Close stops what was registered with OnClose (in reverse order), the
// control plane and every cluster. The data directory stays.
func (r *Running) Close(ctx context.Context) {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i](ctx)
	}
	if r.Plane != nil {
		r.Plane.Stop(ctx)
	}
	r.Local.Stop(ctx)
	r.unlock()
}

// stackEnv is what only one stack's instances hold: their own tenant-header
// key and the credentials of their tenants — the tenant-password key for a
// shared stack, only its tenants' passwords for a dedicated one.
func stackEnv(st *State, spec stack.Spec) []string {
	env := []string{"TENANTRY_HEADER_KEY=" + hex.EncodeToString(tenantsig.StackKey(headerRoot(st), spec.Name))}
	if len(spec.Tenants) == 0 {
		return append(env, "TENANTRY_TENANT_KEY="+hex.EncodeToString(provision.TenantKey([]byte(st.Secret))))
	}
	pws := make(map[string]string, len(spec.Tenants))
	for _, t := range spec.Tenants {
		pws[t] = provision.Password([]byte(st.Secret), t)
	}
	b, _ := json.Marshal(pws) // a map of strings always encodes
	return append(env, "TENANTRY_TENANT_PASSWORDS="+string(b))
}
