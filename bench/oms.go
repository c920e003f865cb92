package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/load"
	"tenantry/localpg"
	"tenantry/oms"
	"tenantry/tenantsig"
)

// OMSConfig configures OMS. Zero values mean the documented defaults.
type OMSConfig struct {
	// Cluster holds the OMS database (created on it); nil means a temporary
	// local cluster, destroyed afterwards.
	Cluster *localpg.Cluster
	// Duration is how long orders are placed; default 5s.
	Duration time.Duration
	// Workers place orders concurrently; default 8.
	Workers int
	Logger  *slog.Logger
}

// OMSResult is what OMS measured.
type OMSResult struct {
	Workers    int     `json:"workers"`
	DurationS  float64 `json:"duration_s"`
	Orders     int64   `json:"orders"`
	OrdersPerS float64 `json:"orders_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
}

// omsProducts is how many products OMS stocks; each order takes one to
// three of them at random, so orders contend on positions the way a busy
// tenant's do.
const omsProducts = 20

// OMS measures place-order throughput and latency of one OMS instance over
// real HTTP on loopback, with load's client placing orders as fast as the
// workers go, each with its idempotency key, none retried.
func OMS(ctx context.Context, cfg OMSConfig) (OMSResult, error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	log := logger(cfg.Logger)
	inst, err := startOMS(ctx, cfg.Cluster, "bench_oms", cfg.Workers, 1, log)
	if err != nil {
		return OMSResult{}, err
	}
	defer inst.close()
	lc := inst.loadConfig(inst.urls[0], cfg.Workers)
	cat, err := load.Setup(ctx, lc, load.SetupOptions{Products: omsProducts, Locations: 1, Stock: oms.MaxStock})
	if err != nil {
		return OMSResult{}, fmt.Errorf("stock products: %w", err)
	}
	log.Info("placing orders", "workers", cfg.Workers, "duration", cfg.Duration)
	lc.Duration, lc.Mix = cfg.Duration, load.Mix{PlaceOrder: 1}
	sum, err := load.Run(ctx, lc, cat, nil)
	if err != nil {
		return OMSResult{}, err
	}
	el := time.Duration(sum.Elapsed)
	return OMSResult{
		Workers:    cfg.Workers,
		DurationS:  el.Seconds(),
		Orders:     sum.Acknowledged,
		OrdersPerS: float64(sum.Acknowledged) / el.Seconds(),
		P50Ms:      ms(time.Duration(sum.Latency.P50)),
		P99Ms:      ms(time.Duration(sum.Latency.P99)),
		Errors:     sum.Failures,
	}, nil
}

// omsInstances are in-process OMS servers on loopback sharing one database,
// which they reach through a superuser pool (no router: what is measured is
// the service).
type omsInstances struct {
	urls  []string
	root  []byte // tenant-header root key
	key   []byte // the tenant-header key of omsStack, the instances' stack
	close func()
}

// omsStack is the stack the benchmarks' OMS instances belong to.
const omsStack = "oms"

// startOMS creates and migrates database db on c (a temporary cluster when
// c is nil) and starts n OMS instances over a pool sized for workers.
func startOMS(ctx context.Context, c *localpg.Cluster, db string, workers, n int, log *slog.Logger) (*omsInstances, error) {
	c, release, err := clusterFor(ctx, c, "bench-oms", log)
	if err != nil {
		return nil, err
	}
	pool, err := omsDatabase(ctx, c, db, workers)
	if err != nil {
		release()
		return nil, err
	}
	var servers []*httptest.Server
	inst := &omsInstances{root: []byte(rand.Text())}
	inst.key = tenantsig.StackKey(inst.root, omsStack)
	inst.close = func() {
		for _, hs := range servers {
			hs.Close()
		}
		pool.Close()
		release()
	}
	for range n {
		srv, err := oms.NewServer(oms.Config{DB: oms.PoolDB{Pool: pool}, HeaderKey: inst.key, Stack: omsStack, Logger: log})
		if err != nil {
			inst.close()
			return nil, err
		}
		hs := httptest.NewServer(srv)
		servers = append(servers, hs)
		inst.urls = append(inst.urls, hs.URL)
	}
	return inst, nil
}

// loadConfig is a load config for calling the instance at url directly as
// the tenant: requests carry the tenant header signed as the gateway signs
// it, and are not retried, so that every failure counts.
func (o *omsInstances) loadConfig(url string, workers int) load.Config {
	return load.Config{
		BaseURL: url, Targets: []load.Target{{Tenant: tenant}}, Concurrency: workers,
		Authorize: func(r *http.Request, t load.Target) { tenantsig.SignRequest(r, o.key, t.Tenant, omsStack, time.Now()) },
		Retry:     load.RetryPolicy{MaxAttempts: 1},
	}
}

// omsDatabase creates and migrates database db on c.
func omsDatabase(ctx context.Context, c *localpg.Cluster, db string, workers int) (*pgxpool.Pool, error) {
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(c.DSN(db))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(workers + 2)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := oms.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
