package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/backup"
	"tenantry/dashboard"
	"tenantry/ha"
	"tenantry/httpedge"
	"tenantry/isolate"
	"tenantry/jsonapi"
	"tenantry/move"
	"tenantry/oms"
	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/stack"
	"tenantry/workflow"
)

// PlaneConfig configures a Plane: one replica of the control-plane service.
// Zero values mean the documented defaults. Several replicas may run against
// one registry at once: workflow leases decide which one acts on a workflow,
// any replica answers the API.
type PlaneConfig struct {
	// ControlDSN is the registry's control database. It is created (on the
	// same server, through its "postgres" database) when missing, and
	// migrated on every start. Required.
	ControlDSN string
	// Secret is the platform secret. Required.
	Secret []byte
	// AdminToken authenticates the API. Required.
	AdminToken string
	// Listen is the API's address; default 127.0.0.1:0 (any free port).
	Listen string
	// Provisioner creates clusters (the local platform's localpg clusters);
	// nil means clusters are only registered by address.
	Provisioner Provisioner
	// Stacks deploys stacks; nil means stack.ExternalProvider (stacks
	// deployed elsewhere, recorded by their URLs).
	Stacks stack.Provider
	// BackupDir holds the backups moves take; default "backups" under the
	// working directory.
	BackupDir string
	// Move is the base configuration of the move workflow (its Hook is the
	// isolations' too: points "isolate:..."); Registry,
	// Secret, BackupDir, Backup, VerifyBackup, Parity and SchemaVersion are
	// filled in.
	Move move.Config
	// LeaseTTL of the workflow runner; default 10 s. A replica that dies is
	// noticed at once through its liveness session (workflow package), so
	// this bounds takeover only when a replica hangs or is cut off.
	LeaseTTL time.Duration
	// PollInterval of the workflow runner; default 200 ms. It bounds how
	// long a dead replica's workflows wait for another one.
	PollInterval time.Duration
	// ReaderRole, when set, is granted what gateways and application
	// instances need of the registry (registry.Store.GrantReader) on every
	// start: they connect as it, never as the registry's owner.
	ReaderRole string
	// Failover tunes the failover monitor: it fails over the clusters the
	// Provisioner runs when it implements ha.Servers (local clusters), and
	// follows the primary of every other cluster.
	Failover ha.MonitorConfig
	// ManualRunner creates the runner but does not start it: the caller
	// starts (and may stop and start again) Plane.Runner. Tests use it.
	ManualRunner bool
	Logger       *slog.Logger
	// GatewayURL is a gateway's base URL, through which rollouts and
	// `stack smoke` send previews; empty: set later by SetGatewayURL (the
	// local platform starts its gateway after the plane), and until then
	// rollouts are refused.
	GatewayURL string
}

// Plane is a running control-plane replica: the registry store, the
// operations (Service), the workflow runner with the move workflow, and the
// HTTP API with /metrics and the operator dashboard (/ui/, DashboardURL). `tenantry control` runs one anywhere; `tenantry
// up` runs one as part of the local platform.
type Plane struct {
	Store *registry.Store
	// Vault opens the clusters' admin credentials (sealed in the registry).
	Vault   *registry.Vault
	Service *Service
	API     *Server
	Runner  *workflow.Runner
	Moves   *move.Service
	// Rollouts runs blue/green rollouts (package rollout).
	Rollouts *rollout.Service
	// HA runs switchovers; its Servers are the Provisioner's when it
	// implements ha.Servers (local clusters), else switchovers answer
	// ha.ErrNotSupported.
	HA *ha.Service
	// Monitor fails over dead primaries of the clusters HA's Servers run
	// and follows the primaries of externally managed clusters.
	Monitor *ha.Monitor
	// Isolations runs `tenantry isolate` (package isolate).
	Isolations *isolate.Service
	// URL is the API's base URL ("http://127.0.0.1:PORT").
	URL string
	// Dashboard is the operator dashboard, served at URL + dashboard.Prefix.
	Dashboard *dashboard.Dashboard

	gatewayURL atomic.Pointer[string]
	// service is Service once made, for the workflows started before it.
	service atomic.Pointer[Service]

	cfg   PlaneConfig
	srv   *http.Server
	serve chan struct{}
}

// StartPlane starts a control-plane replica. On error nothing is left
// running.
func StartPlane(ctx context.Context, cfg PlaneConfig) (_ *Plane, err error) {
	if cfg.ControlDSN == "" || len(cfg.Secret) == 0 || cfg.AdminToken == "" {
		return nil, errors.New("control plane: ControlDSN, Secret and AdminToken are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.BackupDir == "" {
		cfg.BackupDir = "backups"
	}
	p := &Plane{cfg: cfg}
	p.SetGatewayURL(cfg.GatewayURL)
	defer func() {
		if err != nil {
			p.Stop(context.Background())
		}
	}()
	if err := EnsureDatabase(ctx, cfg.ControlDSN); err != nil {
		return nil, err
	}
	if p.Store, err = registry.OpenStore(ctx, cfg.ControlDSN, cfg.Logger); err != nil {
		return nil, err
	}
	if p.Vault, err = registry.NewVault(p.Store, cfg.Secret); err != nil {
		return nil, err
	}
	if err := p.startRunner(ctx); err != nil {
		return nil, err
	}
	if cfg.ReaderRole != "" {
		if err := p.Store.GrantReader(ctx, cfg.ReaderRole); err != nil {
			return nil, err
		}
	}
	if p.Service, err = NewService(Config{Store: p.Store, Secret: cfg.Secret, Credentials: p.Vault, PrepareDatabase: PrepareDatabase,
		Provisioner: cfg.Provisioner, Workflows: p.Runner, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	p.service.Store(p.Service)
	if p.API, err = NewServer(p.Service, cfg.AdminToken); err != nil {
		return nil, err
	}
	p.API.EnableMoves(p.Moves)
	p.API.EnableHA(p.HA)
	p.API.EnableStacks(p.stacks(), p.Store)
	p.API.EnableRollouts(p.Rollouts)
	p.API.EnableIsolations(p.Isolations)
	if p.Dashboard, err = dashboard.New(dashboard.Config{Registry: p.Store, Operations: p.Runner, Moves: p.Moves, Rollouts: p.Rollouts, Isolations: p.Isolations,
		ClusterProbe: p.probeCluster, Secret: cfg.Secret, AdminToken: cfg.AdminToken, ErrorText: ErrorText, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	p.API.Mount(dashboard.Prefix, p.Dashboard)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("control plane listen: %w", err)
	}
	p.URL = "http://" + ln.Addr().String()
	p.srv = httpedge.NewServer(p.API, Limits, cfg.Logger)
	p.serve = make(chan struct{})
	go func() {
		defer close(p.serve)
		if err := p.srv.Serve(jsonapi.Listener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("control plane server", "err", err)
		}
	}()
	cfg.Logger.Info("control plane listening", "url", p.URL, "runner", p.Runner.Owner())
	return p, nil
}

// probeCluster is the dashboard's view of ClusterStatus.
func (p *Plane) probeCluster(ctx context.Context, name string) ([]dashboard.MemberHealth, error) {
	st, err := p.Service.ClusterStatus(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.MemberHealth, len(st.Members))
	for i, m := range st.Members {
		out[i] = dashboard.MemberHealth{Member: m.Member, Reachable: m.Reachable, InRecovery: m.InRecovery,
			Replication: m.Replication, LagBytes: m.LagBytes, LagSeconds: m.LagSeconds, Error: m.Error}
	}
	return out, nil
}

// SetGatewayURL sets the gateway previews go through (see
// PlaneConfig.GatewayURL).
func (p *Plane) SetGatewayURL(url string) { p.gatewayURL.Store(&url) }

// stacks is the stack provider: PlaneConfig.Stacks or an ExternalProvider.
func (p *Plane) stacks() stack.Provider {
	if p.cfg.Stacks == nil {
		p.cfg.Stacks = &stack.ExternalProvider{Store: p.Store}
	}
	return p.cfg.Stacks
}

// startRunner makes the workflow runner with the move, rollout and
// switchover workflows and, unless
// ManualRunner, starts it.
func (p *Plane) startRunner(ctx context.Context) error {
	pool := p.Store.Pool()
	if err := workflow.Migrate(ctx, pool); err != nil {
		return err
	}
	mc := p.cfg.Move
	mc.Registry = p.Store
	mc.Secret = p.cfg.Secret
	mc.Credentials = p.Vault
	mc.BackupDir = p.cfg.BackupDir
	backups := Backups{Key: backup.Key(mc.Secret)}
	mc.Backup = backups.Take
	mc.VerifyBackup = backups.Verify
	mc.Parity = Parity
	mc.SchemaVersion = func(ctx context.Context, db *pgxpool.Pool) (int, error) { return oms.SchemaVersion(ctx, db) }
	if _, ok := p.cfg.Provisioner.(StandbyProvisioner); ok && mc.EnsureStandbys == nil {
		// The Service is made after the runner starts: a move resumed
		// before it is set retries its step.
		mc.EnsureStandbys = func(ctx context.Context, cluster string, want int) error {
			svc := p.service.Load()
			if svc == nil {
				return errors.New("control plane still starting")
			}
			return svc.EnsureStandbys(ctx, cluster, want)
		}
	}
	m, err := move.NewMover(mc)
	if err != nil {
		return err
	}
	runner, err := workflow.NewRunner(pool, workflow.Config{LeaseTTL: p.cfg.LeaseTTL, PollInterval: p.cfg.PollInterval,
		ProgressInterval: 250 * time.Millisecond, Logger: p.cfg.Logger})
	if err != nil {
		return err
	}
	if p.Moves, err = move.NewService(m, runner); err != nil {
		return err
	}
	if p.Rollouts, err = rollout.NewService(rollout.Config{Store: p.Store, Stacks: p.stacks(), Logger: p.cfg.Logger,
		Gateway: func() string { return *p.gatewayURL.Load() }}, runner); err != nil {
		return err
	}
	servers, _ := p.cfg.Provisioner.(ha.Servers)
	if p.HA, err = ha.NewService(ha.Config{Registry: p.Store, Connect: memberConnector(p.Vault), Servers: servers,
		AckTimeout: mc.AckTimeout, RouterLive: mc.RouterLive, Logger: p.cfg.Logger, Hook: mc.Hook}, runner); err != nil {
		return err
	}
	p.Monitor = p.HA.NewMonitor(pool, p.cfg.Failover)
	p.Monitor.Start()
	if p.Isolations, err = isolate.NewService(isolate.Config{Store: p.Store, Moves: p.Moves, Rollouts: p.Rollouts,
		Stacks: p.stacks(), Provisioner: isolationProvisioner{p}, BackupDir: p.cfg.BackupDir, Logger: p.cfg.Logger, Hook: p.cfg.Move.Hook}, runner); err != nil {
		return err
	}
	p.Runner = runner
	if !p.cfg.ManualRunner {
		runner.Start(context.Background())
	}
	return nil
}

// Stop stops the API (draining requests for up to 5 s), then the runner,
// which hands its leases back so another replica takes over at once, and
// closes the store. Safe on a partly started Plane.
func (p *Plane) Stop(ctx context.Context) {
	if p.Dashboard != nil {
		p.Dashboard.Close()
	}
	if p.srv != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = p.srv.Shutdown(sctx)
		cancel()
		<-p.serve
	}
	if p.Monitor != nil {
		p.Monitor.Stop()
	}
	if p.Runner != nil {
		p.Runner.Stop()
	}
	if p.Store != nil {
		p.Store.Close()
	}
}

// EnsureDatabase creates the database dsn names when it does not exist, by
// connecting to the same server's "postgres" database as the same user
// (which then needs CREATEDB).
func EnsureDatabase(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("%w: control database DSN: %v", registry.ErrInvalid, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to the control database: %w", err)
	}
	db := cfg.Database
	if err := registry.ValidateName("database", db); err != nil {
		return err
	}
	cfg.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create control database %s: %w", db, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42P04" { // created meanwhile by another replica
			return fmt.Errorf("create control database %s: %w", db, err)
		}
	}
	return nil
}

// DefaultBackupDir is where a control plane with a data directory keeps
// move backups.
func DefaultBackupDir(dataDir string) string { return filepath.Join(dataDir, "backups") }
