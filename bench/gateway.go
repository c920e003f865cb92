package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"tenantry/gateway"
	"tenantry/load"
	"tenantry/localpg"
	"tenantry/oms"
	"tenantry/registry"
)

// GatewayConfig configures Gateway. Zero values mean the documented
// defaults.
type GatewayConfig struct {
	// Cluster holds the OMS database (created on it); nil means a temporary
	// local cluster, destroyed afterwards.
	Cluster *localpg.Cluster
	// Duration is the measuring time of each side; default 5s.
	Duration time.Duration
	// Workers read concurrently; default 16.
	Workers int
	// Rounds per side, alternating; default 10.
	Rounds int
	Logger *slog.Logger
}

// GatewayResult is what Gateway measured. Both sides are measured in the
// same run, in alternating rounds. Ratio is the median of the per-round
// ratios (gateway round / the direct round next to it): on a shared, noisy
// machine one stalled round would otherwise swing the ratio of the totals
// (RatioOfTotals, reported too).
type GatewayResult struct {
	Workers       int       `json:"workers"`
	Rounds        int       `json:"rounds"`
	DurationS     float64   `json:"duration_s"` // per side
	GatewayRPS    float64   `json:"gateway_rps"`
	DirectRPS     float64   `json:"direct_rps"`
	Ratio         float64   `json:"ratio"`
	RatioOfTotals float64   `json:"ratio_of_totals"`
	RoundRatios   []float64 `json:"round_ratios"`
	GatewayP50Ms  float64   `json:"gateway_p50_ms"`
	GatewayP99Ms  float64   `json:"gateway_p99_ms"`
	DirectP50Ms   float64   `json:"direct_p50_ms"`
	DirectP99Ms   float64   `json:"direct_p99_ms"`
	GatewayErrors int64     `json:"gateway_errors"`
	DirectErrors  int64     `json:"direct_errors"`
}

// gatewayOrders is how many orders Gateway places and then reads.
const gatewayOrders = 20

// Gateway measures reads of orders (GET /v1/orders/{id}) through a gateway
// in front of two OMS instances against reading from the instances
// directly (the client balancing across both itself), in alternating
// rounds, all on loopback.
func Gateway(ctx context.Context, cfg GatewayConfig) (GatewayResult, error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 10
	}
	log := logger(cfg.Logger)
	inst, err := startOMS(ctx, cfg.Cluster, "bench_gateway", cfg.Workers, 2, log)
	if err != nil {
		return GatewayResult{}, err
	}
	defer inst.close()
	direct, err := inst.clients(cfg.Workers)
	if err != nil {
		return GatewayResult{}, err
	}
	orders, err := placeOrders(ctx, inst, direct[0], gatewayOrders)
	if err != nil {
		return GatewayResult{}, fmt.Errorf("seed orders: %w", err)
	}
	apiKey := "tk_bench_" + rand.Text()
	g, err := gateway.New(gateway.Config{
		Source: registry.StaticSource{Snapshot: gatewaySnapshot(inst.urls, apiKey)}, HeaderKey: inst.root, Logger: log})
	if err != nil {
		return GatewayResult{}, err
	}
	gs := httptest.NewServer(g)
	defer gs.Close()
	viaGateway, err := load.NewClient(load.Config{BaseURL: gs.URL, Targets: []load.Target{{Tenant: tenant, APIKey: apiKey}},
		Concurrency: cfg.Workers, Retry: load.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		return GatewayResult{}, err
	}

	r := &readRounds{orders: orders, workers: cfg.Workers}
	gwTarget := readTarget{clients: []*load.Client{viaGateway}, as: load.Target{Tenant: tenant, APIKey: apiKey}}
	drTarget := readTarget{clients: direct, as: load.Target{Tenant: tenant}}
	log.Info("warming up")
	r.round(ctx, gwTarget, cfg.Duration/10)
	r.round(ctx, drTarget, cfg.Duration/10)
	var gw, dr readSide
	var ratios []float64
	per := cfg.Duration / time.Duration(cfg.Rounds)
	for i := range cfg.Rounds {
		log.Info("round", "n", i+1, "of", cfg.Rounds)
		// ABBA order, so that drift over the run favours neither side.
		var g, d readSide
		if i%2 == 0 {
			g, d = r.round(ctx, gwTarget, per), r.round(ctx, drTarget, per)
		} else {
			d, g = r.round(ctx, drTarget, per), r.round(ctx, gwTarget, per)
		}
		gw.add(&g)
		dr.add(&d)
		if d.rps() > 0 {
			ratios = append(ratios, g.rps()/d.rps())
		}
		if err := ctx.Err(); err != nil {
			return GatewayResult{}, err
		}
	}
	return GatewayResult{
		Workers: cfg.Workers, Rounds: cfg.Rounds, DurationS: gw.elapsed.Seconds(),
		GatewayRPS: gw.rps(), DirectRPS: dr.rps(),
		Ratio: median(ratios), RatioOfTotals: ratio(gw.rps(), dr.rps()), RoundRatios: ratios,
		GatewayP50Ms: ms(gw.hist.Quantile(0.50)), GatewayP99Ms: ms(gw.hist.Quantile(0.99)),
		DirectP50Ms: ms(dr.hist.Quantile(0.50)), DirectP99Ms: ms(dr.hist.Quantile(0.99)),
		GatewayErrors: gw.errors, DirectErrors: dr.errors,
	}, nil
}

// clients returns one load client per instance, calling it directly.
func (o *omsInstances) clients(workers int) ([]*load.Client, error) {
	var out []*load.Client
	for _, u := range o.urls {
		c, err := load.NewClient(o.loadConfig(u, workers))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// placeOrders stocks three products and places n orders of one to three
// lines, returning their ids.
func placeOrders(ctx context.Context, inst *omsInstances, c *load.Client, n int) ([]int64, error) {
	cat, err := load.Setup(ctx, inst.loadConfig(inst.urls[0], 1), load.SetupOptions{Products: 3, Locations: 1, Stock: oms.MaxStock})
	if err != nil {
		return nil, err
	}
	tc := cat[tenant]
	var ids []int64
	for i := range n {
		var lines []load.Line
		for _, p := range tc.Products[:1+i%len(tc.Products)] {
			lines = append(lines, load.Line{ProductID: p, Quantity: 1})
		}
		body := map[string]any{"location_id": tc.Locations[0], "lines": lines}
		resp, err := c.Do(ctx, load.Target{Tenant: tenant}, http.MethodPost, "/v1/orders", "order-"+strconv.Itoa(i), body)
		if err == nil && resp.Status != http.StatusCreated {
			err = fmt.Errorf("POST /v1/orders: status %d %s", resp.Status, resp.APICode)
		}
		var created struct {
			ID int64 `json:"id"`
		}
		if err == nil {
			err = json.Unmarshal(resp.Body, &created)
		}
		if err != nil {
			return nil, err
		}
		ids = append(ids, created.ID)
	}
	return ids, nil
}

// gatewaySnapshot routes every tenant to one stack of the given instances
// and knows apiKey as the tenant's.
func gatewaySnapshot(instances []string, apiKey string) *registry.Snapshot {
	st := &registry.Stack{Name: omsStack, Version: "bench", Status: registry.StackReady}
	for _, u := range instances {
		st.Instances = append(st.Instances, registry.Instance{URL: u, Healthy: true})
	}
	return &registry.Snapshot{
		Version:    1,
		Stacks:     map[string]*registry.Stack{st.Name: st},
		Routes:     map[string]*registry.Route{registry.DefaultRoute: {Backends: []registry.Backend{{Stack: st.Name, Weight: 1}}}},
		KeysByHash: map[string]*registry.APIKey{registry.HashAPIKey(apiKey): {ID: "bench", Tenant: tenant}},
	}
}

// readTarget is where a round sends its reads: request i goes to
// clients[i % len(clients)], as target as.
type readTarget struct {
	clients []*load.Client
	as      load.Target
}

type readRounds struct {
	orders  []int64
	workers int
}

// readSide accumulates the rounds of one side.
type readSide struct {
	hist    load.Histogram
	errors  int64
	elapsed time.Duration
}

func (s *readSide) add(o *readSide) {
	s.hist.Merge(&o.hist)
	s.errors += o.errors
	s.elapsed += o.elapsed
}

func (s *readSide) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.hist.Count()) / s.elapsed.Seconds()
}

// round reads orders from t with every worker for d.
func (r *readRounds) round(ctx context.Context, t readTarget, d time.Duration) readSide {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu  sync.Mutex
		out readSide
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range r.workers {
		wg.Go(func() {
			mine := &readSide{}
			for i := w; ctx.Err() == nil; i++ {
				path := "/v1/orders/" + strconv.FormatInt(r.orders[i%len(r.orders)], 10)
				t0 := time.Now()
				resp, err := t.clients[i%len(t.clients)].Do(ctx, t.as, http.MethodGet, path, "", nil)
				switch {
				case err == nil && resp.Status == http.StatusOK:
					mine.hist.Record(time.Since(t0))
				case ctx.Err() == nil:
					mine.errors++
				}
			}
			mu.Lock()
			out.add(mine)
			mu.Unlock()
		})
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	return out
}
