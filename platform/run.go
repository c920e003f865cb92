package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/control"
	"tenantry/httpedge"
	"tenantry/move"
	"tenantry/oms"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/stack"
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
	// APIListen is the control plane's address; default 127.0.0.1:0.
	APIListen string
	Logger    *slog.Logger
}

// Running is a started local platform. Close stops it.
type Running struct {
	Local   *Local
	Store   *registry.Store
	Service *control.Service
	API     *control.Server
	APIURL  string
	// Set by StartApps.
	Stacks     *stack.LocalProvider
	Watcher    *registry.Watcher
	GatewayURL string
	// Set by StartMoves.
	Runner *workflow.Runner
	Moves  *move.Service
	// Extensions started after the core (stacks, gateway) register their
	// own shutdown here.
	closers []func(context.Context)
	apiSrv  *http.Server
	log     *slog.Logger
}

// PrepareDatabase brings a tenant database to the current OMS schema, adds
// the move marker table, and sets up tenant roles' grants and row-level
// security on its tables.
func PrepareDatabase(ctx context.Context, conn *pgx.Conn) error {
	if err := oms.Migrate(ctx, conn); err != nil {
		return err
	}
	if err := move.EnsureMarkerTable(ctx, conn); err != nil {
		return err
	}
	return provision.SetupDatabase(ctx, conn)
}

// Run opens (or creates) the local platform in opts.Dir: the control
// cluster and registry, the pooled cluster with a standby and its alias, and
// the control plane API.
func Run(ctx context.Context, opts Options) (*Running, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.APIListen == "" {
		opts.APIListen = "127.0.0.1:0"
	}
	l, err := OpenLocal(ctx, opts.Dir, log)
	if err != nil {
		return nil, err
	}
	r := &Running{Local: l, log: log}
	ok := false
	defer func() {
		if !ok {
			r.Close(context.Background())
		}
	}()
	if r.Store, err = registry.OpenStore(ctx, l.State.ControlDSN, log); err != nil {
		return nil, err
	}
	r.Service, err = control.NewService(control.Config{
		Store: r.Store, Secret: []byte(l.State.Secret), PrepareDatabase: PrepareDatabase,
		Provisioner: l, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if err := r.ensurePooled(ctx); err != nil {
		return nil, err
	}
	if r.API, err = control.NewServer(r.Service, l.State.AdminToken); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.APIListen)
	if err != nil {
		return nil, fmt.Errorf("control plane listen: %w", err)
	}
	r.APIURL = "http://" + ln.Addr().String()
	r.apiSrv = httpedge.NewServer(r.API, control.Limits, log)
	go func() {
		if err := r.apiSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control plane server", "err", err)
		}
	}()
	l.State.APIURL = r.APIURL
	if err := l.Save(); err != nil {
		return nil, err
	}
	ok = true
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

// OnClose registers f to run first when the platform closes.
func (r *Running) OnClose(f func(context.Context)) { r.closers = append(r.closers, f) }

// Close stops the API, what was registered with OnClose (in reverse
// order), the registry store and every cluster. The data directory stays.
func (r *Running) Close(ctx context.Context) {
	if r.apiSrv != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = r.apiSrv.Shutdown(sctx)
		cancel()
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i](ctx)
	}
	if r.Store != nil {
		r.Store.Close()
	}
	r.Local.Stop(ctx)
}
