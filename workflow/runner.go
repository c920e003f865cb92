package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures a Runner. Zero values mean the documented defaults.
type Config struct {
	// Owner identifies this runner in leases. Default: hostname-pid-random.
	Owner string
	// LeaseTTL is how long a claim lasts without renewal; it is renewed
	// every LeaseTTL/3 while a step runs. Default 30 s.
	LeaseTTL time.Duration
	// PollInterval is how often Start's loop looks for runnable workflows.
	// Default 1 s.
	PollInterval time.Duration
	// MaxConcurrent bounds the workflows this runner runs at once. Default 8.
	MaxConcurrent int
	// ProgressInterval is the least time between two progress events of
	// one run. Default 1 s.
	ProgressInterval time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Runner creates, claims and runs workflows of its registered kinds from
// the control database. It is safe for concurrent use.
type Runner struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger

	mu     sync.Mutex
	defs   map[string]*Def
	active map[string]bool // workflows this runner is running
	live   *liveness       // nil until Start's loop opens it

	wakeCh   chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
	runs     sync.WaitGroup
	stopping atomic.Bool
}

// NewRunner returns a runner on the control database pool (migrated with
// Migrate) that runs the given definitions.
func NewRunner(pool *pgxpool.Pool, cfg Config, defs ...*Def) (*Runner, error) {
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), newID()[3:9])
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 8
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rn := &Runner{pool: pool, cfg: cfg, log: log.With("runner", cfg.Owner),
		defs: map[string]*Def{}, active: map[string]bool{}, wakeCh: make(chan struct{}, 1)}
	for _, d := range defs {
		if err := rn.Register(d); err != nil {
			return nil, err
		}
	}
	return rn, nil
}

// Owner is the id this runner writes into leases.
func (rn *Runner) Owner() string { return rn.cfg.Owner }

// Register adds a workflow definition.
func (rn *Runner) Register(d *Def) error {
	if err := d.Validate(); err != nil {
		return err
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.defs[d.Kind] = d
	return nil
}

func (rn *Runner) def(kind string) (*Def, bool) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	d, ok := rn.defs[kind]
	return d, ok
}

func (rn *Runner) kinds() []string {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	ks := make([]string, 0, len(rn.defs))
	for k := range rn.defs {
		ks = append(ks, k)
	}
	return ks
}

func (rn *Runner) wake() {
	select {
	case rn.wakeCh <- struct{}{}:
	default:
	}
}

// Start runs the claim loop in the background until Stop.
func (rn *Runner) Start(ctx context.Context) {
	ctx, rn.cancel = context.WithCancel(ctx)
	rn.done = make(chan struct{})
	go func() {
		defer close(rn.done)
		t := time.NewTicker(rn.cfg.PollInterval)
		defer t.Stop()
		for {
			rn.checkLiveness(ctx)
			if _, err := rn.tick(ctx, false); err != nil && ctx.Err() == nil {
				rn.log.Warn("workflow tick", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-rn.wakeCh:
			}
		}
	}()
}

// Stop ends the loop, cancels running steps, waits for them, and releases
// their leases so that another runner can take over at once.
func (rn *Runner) Stop() {
	if rn.cancel == nil {
		return
	}
	rn.stopping.Store(true)
	rn.cancel()
	<-rn.done
	rn.runs.Wait()
	rn.closeLiveness()
}

// Tick claims the runnable workflows of this runner's kinds (up to
// MaxConcurrent) and runs each until it ends, waits, backs off or loses its
// lease; it returns how many it ran. Tests call it to step the runner.
func (rn *Runner) Tick(ctx context.Context) (int, error) { return rn.tick(ctx, true) }

func (rn *Runner) tick(ctx context.Context, wait bool) (int, error) {
	rn.mu.Lock()
	free := rn.cfg.MaxConcurrent - len(rn.active)
	rn.mu.Unlock()
	if free <= 0 {
		return 0, nil
	}
	rows, _ := rn.pool.Query(ctx, `SELECT id FROM workflows
		WHERE status = 'running' AND kind = ANY($1) AND run_after <= now() AND `+claimable+`
		ORDER BY run_after, id LIMIT $3`, rn.kinds(), rn.cfg.Owner, free+len(rn.active))
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("find runnable workflows: %w", err)
	}
	var wg sync.WaitGroup
	n := 0
	for _, id := range ids {
		if n == free || !rn.markActive(id) {
			continue
		}
		gen, err := rn.Claim(ctx, id)
		if err != nil {
			rn.unmarkActive(id)
			if !errors.Is(err, ErrLeaseHeld) {
				return n, err
			}
			continue
		}
		n++
		rn.runs.Add(1)
		wg.Add(1)
		go func() {
			defer rn.runs.Done()
			defer wg.Done()
			defer rn.unmarkActive(id)
			if err := rn.run(ctx, id, gen); err != nil && ctx.Err() == nil {
				rn.log.Warn("workflow run", "workflow", id, "err", err)
			}
		}()
	}
	if wait {
		wg.Wait()
	}
	return n, nil
}

func (rn *Runner) markActive(id string) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.active[id] {
		return false
	}
	rn.active[id] = true
	return true
}

func (rn *Runner) unmarkActive(id string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	delete(rn.active, id)
}

// Claim takes the lease of workflow id for this runner if it is free,
// expired, already this runner's, or held by a runner that died (see
// liveness.go), and returns the new generation. Every
// claim increments the generation, fencing out writes of earlier holders.
// ErrLeaseHeld if another runner holds a live lease, ErrNotFound if there is
// no such running workflow.
func (rn *Runner) Claim(ctx context.Context, id string) (int64, error) {
	var gen int64
	err := rn.pool.QueryRow(ctx, `UPDATE workflows
		SET lease_owner = $2, lease_generation = lease_generation + 1, lease_expires = now() + $3::interval
		WHERE id = $1 AND status = 'running' AND `+claimable+`
		RETURNING lease_generation`, id, rn.cfg.Owner, rn.cfg.LeaseTTL).Scan(&gen)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := rn.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM workflows WHERE id = $1 AND status = 'running')", id).Scan(&exists); err != nil {
			return 0, fmt.Errorf("claim workflow: %w", err)
		}
		if !exists {
			return 0, fmt.Errorf("%w: no running workflow %s", ErrNotFound, id)
		}
		return 0, fmt.Errorf("%w: %s", ErrLeaseHeld, id)
	}
	if err != nil {
		return 0, fmt.Errorf("claim workflow: %w", err)
	}
	return gen, nil
}

// release gives up the lease so that any runner may claim the workflow.
func (rn *Runner) release(ctx context.Context, id string, gen int64) error {
	_, err := rn.pool.Exec(ctx, `UPDATE workflows SET lease_owner = NULL, lease_expires = NULL
		WHERE id = $1 AND lease_generation = $2`, id, gen)
	return err
}

// exec1 runs a fenced statement that must touch exactly one row; zero rows
// means the lease generation moved on: ErrLeaseLost.
func (rn *Runner) exec1(ctx context.Context, sql string, args ...any) error {
	tag, err := rn.pool.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// event appends an event, fenced by the run's lease.
func (rn *Runner) event(ctx context.Context, r *Run, kind, msg string, data any) error {
	var raw []byte
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("encode event data: %w", err)
		}
		raw = b
	}
	return rn.exec1(ctx, `INSERT INTO workflow_events (workflow, step, kind, message, data)
		SELECT id, $3, $4, $5, $6 FROM workflows WHERE id = $1 AND lease_generation = $2`,
		r.ID, r.generation, r.Step, kind, msg, raw)
}
