package platform

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/move"
	"tenantry/oms"
	"tenantry/registry"
	"tenantry/workflow"
)

// RunMoveWorker runs a control-plane replica of the local platform in dir
// (which must exist): a workflow runner with the move workflow on the
// platform's control database, and nothing else (no API, no clusters
// started, no applications). It claims moves whose lease is free or
// expired, as every control-plane replica does, until ctx ends; then it
// stops the runner, handing back its leases. Crash tests run it in a child
// process and kill it.
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
	log := opts.Config.Logger
	store, err := registry.OpenStore(ctx, st.ControlDSN, log)
	if err != nil {
		return err
	}
	defer store.Close()
	runner, _, err := newMoveRunner(ctx, store, st.Secret, abs, opts, log)
	if err != nil {
		return err
	}
	runner.Start(ctx)
	<-ctx.Done()
	runner.Stop()
	return nil
}

// newMoveRunner makes a workflow runner (not started) with the move
// workflow of the platform in dir registered, and the move service on it.
func newMoveRunner(ctx context.Context, store *registry.Store, secret, dir string, opts MoveOptions, log *slog.Logger) (*workflow.Runner, *move.Service, error) {
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool := store.Pool()
	if err := workflow.Migrate(ctx, pool); err != nil {
		return nil, nil, err
	}
	cfg := opts.Config
	cfg.Registry = store
	cfg.Secret = []byte(secret)
	cfg.BackupDir = filepath.Join(dir, "backups")
	cfg.Backup = TakeBackup
	cfg.VerifyBackup = VerifyBackup
	cfg.Parity = Parity
	cfg.SchemaVersion = func(ctx context.Context, db *pgxpool.Pool) (int, error) { return oms.SchemaVersion(ctx, db) }
	if cfg.Logger == nil {
		cfg.Logger = log
	}
	m, err := move.NewMover(cfg)
	if err != nil {
		return nil, nil, err
	}
	runner, err := workflow.NewRunner(pool, workflow.Config{LeaseTTL: opts.LeaseTTL, PollInterval: 200 * time.Millisecond,
		ProgressInterval: 250 * time.Millisecond, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	svc, err := move.NewService(m, runner)
	if err != nil {
		return nil, nil, err
	}
	return runner, svc, nil
}
