package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/localpg"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/route"
)

// RouteConfig configures Route. Zero values mean the documented defaults.
type RouteConfig struct {
	// Cluster holds the benchmark's database (created on it); nil means a
	// temporary local cluster, destroyed afterwards.
	Cluster *localpg.Cluster
	// Workers run transactions concurrently; default 8.
	Workers int
	// Duration is the measuring time of each side; default 5s.
	Duration time.Duration
	// Rounds interleave the two sides (router, direct, direct, router, ...)
	// so that machine noise hits both alike; default 10.
	Rounds int
	Logger *slog.Logger
}

// RouteResult is what Route measured: transactions per second through a
// route.Router and through a bare pgxpool of the same size, and their ratio.
type RouteResult struct {
	Workers   int           `json:"workers"`
	Duration  time.Duration `json:"duration_ns"`
	RouterTx  int64         `json:"router_tx"`
	DirectTx  int64         `json:"direct_tx"`
	RouterTPS float64       `json:"router_tps"`
	DirectTPS float64       `json:"direct_tps"`
	Ratio     float64       `json:"ratio"`
}

// routeQuery is the one-row read both sides run in a transaction.
const routeQuery = "SELECT v FROM kv WHERE k = $1"

// Route measures route.Router.Tx against a bare pgxpool running the same
// one-row read transaction on the same database, in interleaved rounds.
func Route(ctx context.Context, cfg RouteConfig) (RouteResult, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 10
	}
	log := logger(cfg.Logger)
	c, release, err := clusterFor(ctx, cfg.Cluster, "bench-route", log)
	if err != nil {
		return RouteResult{}, err
	}
	defer release()
	db, password, err := routeDatabase(ctx, c)
	if err != nil {
		return RouteResult{}, err
	}
	user := provision.RoleName(tenant)
	r, err := route.New(route.Config{
		Source:         registry.StaticSource{Snapshot: routeSnapshot(c, db)},
		Credentials:    func(string) (string, string) { return user, password },
		TenantMaxConns: cfg.Workers,
		ClusterConnCap: cfg.Workers,
		Logger:         log,
	})
	if err != nil {
		return RouteResult{}, err
	}
	defer r.Stop()
	pcfg, err := pgxpool.ParseConfig(c.DSN(db))
	if err != nil {
		return RouteResult{}, fmt.Errorf("direct pool config: %w", err)
	}
	pcfg.ConnConfig.User, pcfg.ConnConfig.Password = user, password
	pcfg.MaxConns = int32(cfg.Workers)
	direct, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return RouteResult{}, fmt.Errorf("direct pool: %w", err)
	}
	defer direct.Close()

	routerTx := func(ctx context.Context) error { return r.Tx(ctx, tenant, readOne) }
	directTx := func(ctx context.Context) error { return pgx.BeginTxFunc(ctx, direct, pgx.TxOptions{}, readOne) }
	// Warm up: open every connection on both sides.
	for _, f := range []func(context.Context) error{routerTx, directTx} {
		if _, err := runWorkers(ctx, cfg.Workers, 200*time.Millisecond, f); err != nil {
			return RouteResult{}, err
		}
	}
	log.Info("measuring", "workers", cfg.Workers, "duration", cfg.Duration, "rounds", cfg.Rounds)
	res := RouteResult{Workers: cfg.Workers, Duration: cfg.Duration}
	slice := cfg.Duration / time.Duration(cfg.Rounds)
	for i := range cfg.Rounds {
		counts := []*int64{&res.RouterTx, &res.DirectTx}
		fs := []func(context.Context) error{routerTx, directTx}
		if i%2 == 1 {
			counts[0], counts[1] = counts[1], counts[0]
			fs[0], fs[1] = fs[1], fs[0]
		}
		for j := range fs {
			n, err := runWorkers(ctx, cfg.Workers, slice, fs[j])
			if err != nil {
				return RouteResult{}, err
			}
			*counts[j] += n
		}
	}
	secs := (slice * time.Duration(cfg.Rounds)).Seconds()
	res.RouterTPS = float64(res.RouterTx) / secs
	res.DirectTPS = float64(res.DirectTx) / secs
	res.Ratio = ratio(res.RouterTPS, res.DirectTPS)
	return res, nil
}

// routeDatabase creates a database with the kv table on c and the tenant's
// login role with a random password, which it returns.
func routeDatabase(ctx context.Context, c *localpg.Cluster) (db, password string, err error) {
	db, user := "bench_route", provision.RoleName(tenant)
	password = rand.Text()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return "", "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		conn.Close(ctx)
		return "", "", fmt.Errorf("create database: %w", err)
	}
	// rand.Text is base32 (letters and digits): safe as a literal.
	_, err = conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{user}.Sanitize()+" LOGIN PASSWORD '"+password+"'")
	conn.Close(ctx)
	if err != nil {
		return "", "", fmt.Errorf("create role: %w", err)
	}
	conn, err = c.Connect(ctx, db)
	if err != nil {
		return "", "", err
	}
	defer conn.Close(ctx)
	for _, s := range []string{
		"CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)",
		"INSERT INTO kv SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
		"GRANT SELECT ON kv TO " + pgx.Identifier{user}.Sanitize(),
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return "", "", fmt.Errorf("%s: %w", s, err)
		}
	}
	return db, password, nil
}

// routeSnapshot places the tenant on database db of c, the only member of
// the only cluster.
func routeSnapshot(c *localpg.Cluster, db string) *registry.Snapshot {
	return &registry.Snapshot{
		Version: 1,
		Clusters: map[string]*registry.Cluster{"bench": {Name: "bench", Members: []registry.Member{
			{Name: "bench-1", Host: c.Host, Port: c.Port, Role: registry.RolePrimary}}}},
		Aliases: map[string]*registry.Alias{"bench": {Name: "bench", Cluster: "bench", Database: db}},
		Tenants: map[string]*registry.Tenant{tenant: {ID: tenant, Alias: "bench", State: registry.StateActive, Epoch: 1}},
	}
}

func readOne(tx pgx.Tx) error {
	var v string
	return tx.QueryRow(context.Background(), routeQuery, 1).Scan(&v)
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
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := f(ctx); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				count.Add(1)
			}
		})
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
