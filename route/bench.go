package route

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
)

var _ SnapshotSource = registry.StaticSource{}

// SingleTenantSnapshot returns a snapshot with one cluster member (primary
// at host:port), one alias "bench" on database, and tenant active on it.
func SingleTenantSnapshot(host string, port int, database, tenant string) *registry.Snapshot {
	return &registry.Snapshot{
		Version: 1,
		Clusters: map[string]*registry.Cluster{"bench": {Name: "bench", Members: []registry.Member{
			{Name: "bench-1", Host: host, Port: port, Role: registry.RolePrimary}}}},
		Aliases: map[string]*registry.Alias{"bench": {Name: "bench", Cluster: "bench", Database: database}},
		Tenants: map[string]*registry.Tenant{tenant: {ID: tenant, Alias: "bench", State: registry.StateActive, Epoch: 1}},
	}
}

// BenchConfig configures Bench. The database must hold a table
// kv(k int primary key, v text) with a row k=1 readable by the tenant's role.
type BenchConfig struct {
	Host     string
	Port     int
	Database string
	Tenant   string
	User     string
	Password string
	// Workers run transactions concurrently; default 8.
	Workers int
	// Duration is the measuring time of each side; default 5s.
	Duration time.Duration
	// Rounds interleave the two sides (router, direct, direct, router, ...)
	// so that machine noise hits both alike; default 10.
	Rounds int
}

// BenchResult is what Bench measured: transactions per second through a
// Router and through a bare pgxpool of the same size, and their ratio.
type BenchResult struct {
	Workers   int           `json:"workers"`
	Duration  time.Duration `json:"duration_ns"`
	RouterTx  int64         `json:"router_tx"`
	DirectTx  int64         `json:"direct_tx"`
	RouterTPS float64       `json:"router_tps"`
	DirectTPS float64       `json:"direct_tps"`
	Ratio     float64       `json:"ratio"`
}

// BenchQuery is the one-row read both sides run in a transaction.
const BenchQuery = "SELECT v FROM kv WHERE k = $1"

// Bench measures Router.Tx against a bare pgxpool running the same one-row
// read transaction on the same database, in interleaved rounds.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 10
	}
	r, err := New(Config{
		Source:         registry.StaticSource{Snapshot: SingleTenantSnapshot(cfg.Host, cfg.Port, cfg.Database, cfg.Tenant)},
		Credentials:    func(string) (string, string) { return cfg.User, cfg.Password },
		TenantMaxConns: cfg.Workers,
		ClusterConnCap: cfg.Workers,
	})
	if err != nil {
		return BenchResult{}, err
	}
	defer r.Stop()
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s password=%s sslmode=disable",
		quoteDSN(cfg.Host), cfg.Port, quoteDSN(cfg.Database), quoteDSN(cfg.User), quoteDSN(cfg.Password))
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return BenchResult{}, fmt.Errorf("direct pool config: %w", errors.Unwrap(err))
	}
	pcfg.MaxConns = int32(cfg.Workers)
	direct, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return BenchResult{}, fmt.Errorf("direct pool: %w", err)
	}
	defer direct.Close()

	routerTx := func(ctx context.Context) error { return r.Tx(ctx, cfg.Tenant, readOne) }
	directTx := func(ctx context.Context) error { return pgx.BeginTxFunc(ctx, direct, pgx.TxOptions{}, readOne) }
	// Warm up: open every connection on both sides.
	for _, f := range []func(context.Context) error{routerTx, directTx} {
		if _, err := runWorkers(ctx, cfg.Workers, 200*time.Millisecond, f); err != nil {
			return BenchResult{}, err
		}
	}
	res := BenchResult{Workers: cfg.Workers, Duration: cfg.Duration}
	slice := cfg.Duration / time.Duration(cfg.Rounds)
	for i := range cfg.Rounds {
		order := []*int64{&res.RouterTx, &res.DirectTx}
		fs := []func(context.Context) error{routerTx, directTx}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
			fs[0], fs[1] = fs[1], fs[0]
		}
		for j := range fs {
			n, err := runWorkers(ctx, cfg.Workers, slice, fs[j])
			if err != nil {
				return BenchResult{}, err
			}
			*order[j] += n
		}
	}
	secs := (slice * time.Duration(cfg.Rounds)).Seconds()
	res.RouterTPS = float64(res.RouterTx) / secs
	res.DirectTPS = float64(res.DirectTx) / secs
	if res.DirectTPS > 0 {
		res.Ratio = res.RouterTPS / res.DirectTPS
	}
	return res, nil
}

func readOne(tx pgx.Tx) error {
	var v string
	return tx.QueryRow(context.Background(), BenchQuery, 1).Scan(&v)
}

// runWorkers runs f in n goroutines for d and returns how many calls
// succeeded; the first error stops the run.
func runWorkers(ctx context.Context, n int, d time.Duration, f func(context.Context) error) (int64, error) {
	var (
		count    atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	deadline := time.Now().Add(d)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := f(ctx); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return 0, fmt.Errorf("bench transaction: %w", firstErr)
	}
	return count.Load(), nil
}
