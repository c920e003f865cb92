package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/dbconn"
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
	// Workers run transactions concurrently on each side; default 8.
	Workers int
	// Duration is the measuring time of each side, split into Rounds;
	// default 5s.
	Duration time.Duration
	// Rounds each run both sides for Duration/Rounds, one after the other,
	// the first side alternating (router, direct; direct, router; ...), so
	// that a burst of other work on the machine hits both sides of a round
	// alike; default 50 (100 ms slices: on the shared 2-core machine 50
	// rounds gave medians within ±0.03 of 1 where 20 rounds of 250 ms
	// strayed to 1.2).
	Rounds int
	// Warmup runs each side this long before the rounds (connections open,
	// statement caches filled); default 1s.
	Warmup time.Duration
	// Tenants is how many tenants the router's registry holds: the
	// benchmark's own and Tenants-1 more on the same alias; default 1.
	// With more than one, Route also times snapshot swaps.
	Tenants int
	// Active is how many of them (the benchmark's own first) run a
	// transaction before the measurements, so that they have pools;
	// default 1.
	Active int
	// Swaps is how many snapshot swaps are timed when Tenants > 1;
	// default 21.
	Swaps  int
	Logger *slog.Logger
}

// RouteResult is what Route measured. Both sides run the same one-row read
// transaction in the same run, in interleaved rounds. Ratio is the median of
// the per-round ratios (router round / direct round): on a shared machine
// one disturbed round would otherwise swing a ratio of totals
// (RatioOfTotals, reported too).
type RouteResult struct {
	Workers       int       `json:"workers"`
	Rounds        int       `json:"rounds"`
	DurationS     float64   `json:"duration_s"` // measured, per side
	RouterTx      int64     `json:"router_tx"`
	DirectTx      int64     `json:"direct_tx"`
	RouterTPS     float64   `json:"router_tps"`
	DirectTPS     float64   `json:"direct_tps"`
	Ratio         float64   `json:"ratio"`
	RatioOfTotals float64   `json:"ratio_of_totals"`
	RoundRatios   []float64 `json:"round_ratios"`

	Tenants int `json:"tenants"`
	Active  int `json:"active"`
	// ActivateS is how long the Active tenants' first transactions took
	// (a pool and a connection each, within the router's connection cap).
	ActivateS float64 `json:"activate_s,omitempty"`
	// Swaps, SnapshotSwapMs and SnapshotSwapMaxMs: Router.Apply of a new
	// registry snapshot (a fresh copy of every entry, as the registry
	// watcher loads it, with one tenant's placement moved on, one tenant
	// added and one removed), median and max wall-clock time over Swaps.
	// SnapshotSwapCPUMs is the median CPU time of the thread each swap ran
	// on: what a swap costs, without the waits for a CPU that a busy
	// machine adds to the wall-clock figures (0 where not measurable).
	Swaps             int     `json:"swaps,omitempty"`
	SnapshotSwapMs    float64 `json:"snapshot_swap_ms,omitempty"`
	SnapshotSwapMaxMs float64 `json:"snapshot_swap_max_ms,omitempty"`
	SnapshotSwapCPUMs float64 `json:"snapshot_swap_cpu_ms,omitempty"`
	// MoveAllSwapMs is one more swap, in which every tenant moves to
	// another alias (of the same database), so that every pool is retired.
	MoveAllSwapMs float64 `json:"move_all_swap_ms,omitempty"`
	// RSSMB is the resident memory of the whole benchmark process (router,
	// direct pool, harness) after the swaps, before the rounds; RSSStartMB
	// the same when Route began. RSSSource says where they were read.
	RSSMB      float64 `json:"rss_mb"`
	RSSStartMB float64 `json:"rss_start_mb"`
	RSSSource  string  `json:"rss_source"`
	// HeapMB is the Go heap's objects at the same moment as RSSMB.
	HeapMB float64 `json:"heap_mb"`
}

// routeQuery is the one-row read both sides run in a transaction.
const routeQuery = "SELECT v FROM kv WHERE k = $1"

// Route measures route.Router.Tx against a bare pgxpool running the same
// one-row read transaction on the same database, in interleaved rounds;
// with Tenants > 1 it first registers that many tenants with the router,
// gives Active of them pools, and times snapshot swaps.
func Route(ctx context.Context, cfg RouteConfig) (RouteResult, error) {
	setRouteDefaults(&cfg)
	if cfg.Active > cfg.Tenants {
		return RouteResult{}, fmt.Errorf("route bench: %d active tenants of %d", cfg.Active, cfg.Tenants)
	}
	res := RouteResult{Workers: cfg.Workers, Rounds: cfg.Rounds, Tenants: cfg.Tenants, Active: cfg.Active}
	res.RSSStartMB, _ = residentMB()
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
	reg := newRouteRegistry(c, db, cfg.Tenants)
	r, err := route.New(route.Config{
		Source: registry.StaticSource{Snapshot: reg.snapshot()},
		// Every tenant connects as the benchmark's role: the router does
		// not care, and one role spares creating thousands.
		Credentials:    func(string) (string, string) { return user, password },
		TenantMaxConns: cfg.Workers,
		ClusterConnCap: max(cfg.Workers, route.DefaultClusterConnCap),
		Logger:         log,
	})
	if err != nil {
		return RouteResult{}, err
	}
	if err := r.Start(ctx); err != nil {
		return RouteResult{}, err
	}
	defer r.Stop()
	if cfg.Tenants > 1 {
		if err := routeScale(ctx, cfg, r, reg, &res, log); err != nil {
			return RouteResult{}, err
		}
	}
	res.RSSMB, res.RSSSource = residentMB()
	res.HeapMB = heapMB()
	// The swaps' snapshot copies are garbage: collect it now rather than
	// in the middle of a round.
	runtime.GC()

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
	if err := routeRounds(ctx, cfg, routerTx, directTx, &res, log); err != nil {
		return RouteResult{}, err
	}
	return res, nil
}

func setRouteDefaults(cfg *RouteConfig) {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 50
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = time.Second
	}
	if cfg.Tenants <= 0 {
		cfg.Tenants = 1
	}
	if cfg.Active <= 0 {
		cfg.Active = 1
	}
	if cfg.Swaps <= 0 {
		cfg.Swaps = 21
	}
}

// routeRounds warms both sides up, then runs cfg.Rounds interleaved rounds
// and fills res's throughput figures.
func routeRounds(ctx context.Context, cfg RouteConfig, routerTx, directTx func(context.Context) error, res *RouteResult, log *slog.Logger) error {
	log.Info("warming up", "per_side", cfg.Warmup)
	for _, f := range []func(context.Context) error{routerTx, directTx} {
		if _, _, err := runWorkers(ctx, cfg.Workers, cfg.Warmup, f); err != nil {
			return err
		}
	}
	log.Info("measuring", "workers", cfg.Workers, "duration", cfg.Duration, "rounds", cfg.Rounds)
	slice := cfg.Duration / time.Duration(cfg.Rounds)
	var routerTime, directTime time.Duration
	for i := range cfg.Rounds {
		var rn, dn int64
		var rd, dd time.Duration
		var err error
		if i%2 == 0 {
			if rn, rd, err = runWorkers(ctx, cfg.Workers, slice, routerTx); err == nil {
				dn, dd, err = runWorkers(ctx, cfg.Workers, slice, directTx)
			}
		} else {
			if dn, dd, err = runWorkers(ctx, cfg.Workers, slice, directTx); err == nil {
				rn, rd, err = runWorkers(ctx, cfg.Workers, slice, routerTx)
			}
		}
		if err != nil {
			return err
		}
		res.RouterTx += rn
		res.DirectTx += dn
		routerTime += rd
		directTime += dd
		if rr, dr := rate(rn, rd), rate(dn, dd); dr > 0 {
			res.RoundRatios = append(res.RoundRatios, math.Round(rr/dr*1000)/1000)
		}
	}
	res.DurationS = routerTime.Seconds()
	res.RouterTPS = math.Round(rate(res.RouterTx, routerTime))
	res.DirectTPS = math.Round(rate(res.DirectTx, directTime))
	res.RatioOfTotals = math.Round(ratio(rate(res.RouterTx, routerTime), rate(res.DirectTx, directTime))*1000) / 1000
	res.Ratio = math.Round(median(res.RoundRatios)*1000) / 1000
	return nil
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// routeScale gives the first cfg.Active tenants of reg pools (one read
// each, the benchmark's tenant first) and times cfg.Swaps snapshot swaps of
// r, each to reg's next snapshot.
func routeScale(ctx context.Context, cfg RouteConfig, r *route.Router, reg *routeRegistry, res *RouteResult, log *slog.Logger) error {
	log.Info("activating tenants", "tenants", cfg.Tenants, "active", cfg.Active)
	start := time.Now()
	var next atomic.Int64
	err := forWorkers(cfg.Workers, func() error {
		for i := int(next.Add(1)) - 1; i < cfg.Active; i = int(next.Add(1)) - 1 {
			id := reg.tenants[i].ID
			if err := r.ReadTx(ctx, id, readOne); err != nil {
				return fmt.Errorf("activate %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	res.ActivateS = round2(time.Since(start).Seconds())
	log.Info("timing snapshot swaps", "swaps", cfg.Swaps)
	var (
		took, cpu []float64
		snap      *registry.Snapshot
	)
	for i := range cfg.Swaps {
		reg.change(i, cfg.Active)
		snap = reg.snapshot()
		// The copies are the harness's garbage (the watcher's, in a real
		// process): collect it before the clock starts.
		runtime.GC()
		wall, used, ok := timeSwap(r, snap)
		took = append(took, ms(wall))
		if ok {
			cpu = append(cpu, ms(used))
		}
	}
	if r.Snapshot() != snap {
		return fmt.Errorf("route bench: the router did not take snapshot version %d", snap.Version)
	}
	res.Swaps = len(took)
	res.SnapshotSwapMs = math.Round(median(took)*1000) / 1000
	res.SnapshotSwapMaxMs = math.Round(slicesMax(took)*1000) / 1000
	res.SnapshotSwapCPUMs = math.Round(median(cpu)*1000) / 1000

	// Last, every tenant moves to the other alias (as a switchover
	// repoints them all): every pool is retired in one swap.
	reg.moveAll()
	snap = reg.snapshot()
	runtime.GC()
	wall, _, _ := timeSwap(r, snap)
	res.MoveAllSwapMs = math.Round(ms(wall)*1000) / 1000
	return nil
}

// timeSwap applies snap to r and returns the wall-clock time it took and
// the CPU time of the thread it ran on (ok false where that cannot be
// read). On a busy machine the wall-clock time includes waiting for a
// CPU; the CPU time does not.
func timeSwap(r *route.Router, snap *registry.Snapshot) (wall, cpu time.Duration, ok bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, ok := threadCPU()
	t0 := time.Now()
	r.Apply(snap)
	wall = time.Since(t0)
	c1, ok1 := threadCPU()
	return wall, c1 - c0, ok && ok1
}

func slicesMax(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// forWorkers runs f in n goroutines and returns the first error.
func forWorkers(n int, f func() error) error {
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range n {
		wg.Go(func() {
			if err := f(); err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		})
	}
	wg.Wait()
	return firstErr
}

// routeRegistry is the registry the benchmark's router sees: every
// tenant on one alias of the one cluster (bench, or after moveAll
// bench-b, the same database).
type routeRegistry struct {
	c       *localpg.Cluster
	db      string
	version int64
	tenants []registry.Tenant // the benchmark's own first
}

// newRouteRegistry places n tenants on database db of c: the benchmark's
// own, then bench-00001, ...
func newRouteRegistry(c *localpg.Cluster, db string, n int) *routeRegistry {
	g := &routeRegistry{c: c, db: db, tenants: make([]registry.Tenant, n)}
	for i := range g.tenants {
		id := tenant
		if i > 0 {
			id = fmt.Sprintf("%s-%05d", tenant, i)
		}
		g.tenants[i] = registry.Tenant{ID: id, Alias: "bench", State: registry.StateActive, Epoch: 1}
	}
	return g
}

// snapshot returns the registry at its next version, every entry newly
// allocated, as the registry watcher loads it.
func (g *routeRegistry) snapshot() *registry.Snapshot {
	g.version++
	s := &registry.Snapshot{
		Version: g.version,
		// TLS as the direct pool's connections (localpg's DSN): disabled.
		Clusters: map[string]*registry.Cluster{"bench": {Name: "bench", TLS: dbconn.TLS{Mode: dbconn.SSLDisable},
			Members: []registry.Member{{Name: "bench-1", Host: g.c.Host, Port: g.c.Port, Role: registry.RolePrimary}}}},
		Aliases: map[string]*registry.Alias{
			"bench":   {Name: "bench", Cluster: "bench", Database: g.db},
			"bench-b": {Name: "bench-b", Cluster: "bench", Database: g.db},
		},
		Tenants: make(map[string]*registry.Tenant, len(g.tenants)),
	}
	for _, t := range g.tenants {
		s.Tenants[t.ID] = &t
	}
	return s
}

// change is swap i's change: one tenant other than the benchmark's (an
// active one if there are any) is paused (even i) or resumed (odd i) at a
// new epoch, and, while idle tenants remain, one of them leaves and a new
// tenant arrives.
func (g *routeRegistry) change(i, active int) {
	flip := &g.tenants[1+(i/2)%max(active-1, 1)]
	flip.Epoch++
	flip.State = registry.StatePaused
	if i%2 == 1 {
		flip.State = registry.StateActive
	}
	if gone := len(g.tenants) - 1 - i; gone > max(active, 1) {
		g.tenants[gone] = registry.Tenant{ID: fmt.Sprintf("%s-new-%05d", tenant, i), Alias: "bench", State: registry.StateActive, Epoch: 1}
	}
}

// moveAll moves every tenant to the other alias at a new epoch.
func (g *routeRegistry) moveAll() {
	for i := range g.tenants {
		t := &g.tenants[i]
		t.Alias = map[string]string{"bench": "bench-b", "bench-b": "bench"}[t.Alias]
		t.Epoch++
	}
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

func readOne(tx pgx.Tx) error {
	var v string
	return tx.QueryRow(context.Background(), routeQuery, 1).Scan(&v)
}

// runWorkers runs f in n goroutines for d and returns how many calls
// succeeded and how long the run took (until the last call ended); the
// first error stops the run.
func runWorkers(ctx context.Context, n int, d time.Duration, f func(context.Context) error) (int64, time.Duration, error) {
	var (
		count    atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(d)
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
	elapsed := time.Since(start)
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return 0, 0, fmt.Errorf("bench transaction: %w", firstErr)
	}
	return count.Load(), elapsed, nil
}
