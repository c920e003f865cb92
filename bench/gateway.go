package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"tenantry/gateway"
	"tenantry/load"
	"tenantry/localpg"
	"tenantry/oms"
	"tenantry/registry"
	"tenantry/tenantsig"
)

// Backends Gateway can put the gateway in front of.
const (
	// BackendOMS is two OMS instances on a local cluster: reads of orders.
	BackendOMS = "oms"
	// BackendStatic is one loopback HTTP server answering every request
	// with the same 200 bytes: the gateway's own cost, as an nginx in front
	// of a trivial backend is measured.
	BackendStatic = "static"
)

// ErrUnknownBackend is returned (wrapped) by Gateway for a Backend it does
// not know.
var ErrUnknownBackend = errors.New("unknown backend")

// GatewayConfig configures Gateway. Zero values mean the documented
// defaults.
type GatewayConfig struct {
	// Backend is BackendOMS (default) or BackendStatic.
	Backend string
	// Cluster holds the OMS database (created on it); nil means a temporary
	// local cluster, destroyed afterwards. Unused with BackendStatic.
	Cluster *localpg.Cluster
	// Duration is the measuring time of each side; default 5s.
	Duration time.Duration
	// Workers read concurrently; default 16.
	Workers int
	// Rounds per side, alternating; default 10.
	Rounds int
	// Nginx, when not empty, is an nginx executable: the same reads go
	// through it too, one worker in front of the same backend
	// (GatewayResult.Nginx).
	Nginx  string
	Logger *slog.Logger
}

// GatewayResult is what Gateway measured. The sides (gateway, direct, and
// the relay) are measured in the same run, in alternating rounds, by the
// same client (one net/http client per side, its idle pool sized to the workers, reading each body to the
// end; it runs on the same cores as the servers). Ratio is the median of the
// per-round ratios (gateway round / the direct round next to it): on a
// shared, noisy machine one stalled round would otherwise swing the ratio of
// the totals (RatioOfTotals, reported too).
type GatewayResult struct {
	Backend       string    `json:"backend"`
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
	// RelayRPS and RelayRatio are the same reads through a bare relay
	// instead of the gateway (relay: the least a hop costs here, no
	// validation, no authentication, no routing), measured in the same
	// rounds: the ceiling any hop reaches on this machine and client, which
	// puts Ratio in proportion.
	RelayRPS    float64 `json:"relay_rps"`
	RelayRatio  float64 `json:"relay_ratio"`
	RelayErrors int64   `json:"relay_errors"`
	// Nginx is the same reads through nginx (one worker,
	// GatewayConfig.Nginx) instead of the gateway, in the same rounds; nil
	// without it.
	Nginx *NginxSide `json:"nginx,omitempty"`
}

// gatewayOrders is how many orders Gateway places and then reads.
const gatewayOrders = 20

// staticBody is what the static backend answers: 200 bytes.
var staticBody = []byte(strings.Repeat("0123456789", 19) + "tenantry!\n")

// Gateway measures reads through a gateway against reads from its backend
// directly, in alternating rounds, all on loopback, and the same reads
// through a bare relay per instance (relay) as the reference of what a hop
// costs. With BackendOMS it reads orders (GET /v1/orders/{id}) through a
// gateway in front of two OMS instances, or from the instances directly
// (the client balancing across both itself, signing the tenant header as
// the gateway does); with BackendStatic it reads 200 bytes from one trivial
// server.
func Gateway(ctx context.Context, cfg GatewayConfig) (GatewayResult, error) {
	if cfg.Backend == "" {
		cfg.Backend = BackendOMS
	}
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
	var (
		b   gatewayBackend
		err error
	)
	switch cfg.Backend {
	case BackendOMS:
		b, err = omsBackend(ctx, cfg, log)
	case BackendStatic:
		b, err = staticBackend()
	default:
		return GatewayResult{}, fmt.Errorf("%w %q: want %s or %s", ErrUnknownBackend, cfg.Backend, BackendOMS, BackendStatic)
	}
	if err != nil {
		return GatewayResult{}, err
	}
	defer b.close()
	apiKey := "tk_bench_" + rand.Text()
	// The tenant's limits are checked on every request as always, but set
	// so high that they never refuse one: a 429 would be cheaper than a
	// proxied read and flatter the gateway.
	g, err := gateway.New(gateway.Config{
		Source: registry.StaticSource{Snapshot: gatewaySnapshot(b.urls, apiKey)}, HeaderKey: b.root, Logger: log,
		DefaultLimits: registry.Limits{Rate: 1 << 30, Concurrency: 1 << 20}})
	if err != nil {
		return GatewayResult{}, err
	}
	gwURL, stop, err := serveGateway(ctx, g)
	if err != nil {
		return GatewayResult{}, err
	}
	defer stop()

	var relayURLs []string
	for _, u := range b.urls {
		rel, addr, err := startRelay(u)
		if err != nil {
			return GatewayResult{}, err
		}
		defer rel.close()
		relayURLs = append(relayURLs, addr)
	}

	var ngURL string
	if cfg.Nginx != "" {
		ng, u, err := startNginx(ctx, cfg.Nginx, b.urls)
		if err != nil {
			return GatewayResult{}, err
		}
		defer ng.close()
		ngURL = u
	}

	r := &readRounds{paths: b.paths, workers: cfg.Workers}
	gwTarget := newReadTarget([]string{gwURL}, cfg.Workers, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+apiKey) })
	drTarget := newReadTarget(b.urls, cfg.Workers, b.authorize)
	rlTarget := newReadTarget(relayURLs, cfg.Workers, b.authorize)
	targets := []readTarget{gwTarget, drTarget, rlTarget}
	var ngTarget readTarget
	if ngURL != "" {
		ngTarget = newReadTarget([]string{ngURL}, cfg.Workers, b.authorize)
		targets = append(targets, ngTarget)
	}
	for _, t := range targets {
		defer t.client.CloseIdleConnections()
	}
	log.Info("warming up")
	for _, t := range targets {
		r.round(t, cfg.Duration/10)
	}
	var gw, dr, rl, ng readSide
	var ratios, relayRatios, nginxRatios []float64
	per := cfg.Duration / time.Duration(cfg.Rounds)
	for i := range cfg.Rounds {
		log.Info("round", "n", i+1, "of", cfg.Rounds)
		// The direct side in the middle, the gateway and the references
		// before and after it in turn, so that drift over the run favours
		// no side.
		var g, d, x, n readSide
		if i%2 == 0 {
			g = r.round(gwTarget, per)
			if ngURL != "" {
				n = r.round(ngTarget, per)
			}
			d, x = r.round(drTarget, per), r.round(rlTarget, per)
		} else {
			x, d = r.round(rlTarget, per), r.round(drTarget, per)
			if ngURL != "" {
				n = r.round(ngTarget, per)
			}
			g = r.round(gwTarget, per)
		}
		gw.add(&g)
		dr.add(&d)
		rl.add(&x)
		ng.add(&n)
		if d.rps() > 0 {
			ratios = append(ratios, g.rps()/d.rps())
			relayRatios = append(relayRatios, x.rps()/d.rps())
			if ngURL != "" {
				nginxRatios = append(nginxRatios, n.rps()/d.rps())
			}
		}
		if err := ctx.Err(); err != nil {
			return GatewayResult{}, err
		}
	}
	res := GatewayResult{
		Backend: cfg.Backend, Workers: cfg.Workers, Rounds: cfg.Rounds, DurationS: gw.elapsed.Seconds(),
		GatewayRPS: gw.rps(), DirectRPS: dr.rps(),
		Ratio: median(ratios), RatioOfTotals: ratio(gw.rps(), dr.rps()), RoundRatios: ratios,
		GatewayP50Ms: ms(gw.hist.Quantile(0.50)), GatewayP99Ms: ms(gw.hist.Quantile(0.99)),
		DirectP50Ms: ms(dr.hist.Quantile(0.50)), DirectP99Ms: ms(dr.hist.Quantile(0.99)),
		GatewayErrors: gw.errors, DirectErrors: dr.errors,
		RelayRPS: rl.rps(), RelayRatio: median(relayRatios), RelayErrors: rl.errors,
	}
	if ngURL != "" {
		res.Nginx = &NginxSide{Version: nginxVersion(cfg.Nginx), RPS: ng.rps(), Ratio: median(nginxRatios), Errors: ng.errors}
	}
	return res, nil
}

// NginxSide is what GatewayResult.Nginx reports: nginx's version, its
// throughput, its ratio to direct (median of rounds, as Ratio) and its
// errors.
type NginxSide struct {
	Version string  `json:"version"`
	RPS     float64 `json:"rps"`
	Ratio   float64 `json:"ratio"`
	Errors  int64   `json:"errors"`
}

// gatewayBackend is what the gateway fronts in a run: its instances, the
// paths a round reads, how a direct request is authorized, and the root of
// the tenant-header keys the instances verify.
type gatewayBackend struct {
	urls      []string
	paths     []string
	root      []byte
	authorize func(*http.Request)
	close     func()
}

// omsBackend starts two OMS instances and places the orders a round reads.
func omsBackend(ctx context.Context, cfg GatewayConfig, log *slog.Logger) (gatewayBackend, error) {
	inst, err := startOMS(ctx, cfg.Cluster, "bench_gateway", cfg.Workers, 2, log)
	if err != nil {
		return gatewayBackend{}, err
	}
	seed, err := load.NewClient(inst.loadConfig(inst.urls[0], 1))
	if err != nil {
		inst.close()
		return gatewayBackend{}, err
	}
	orders, err := placeOrders(ctx, inst, seed, gatewayOrders)
	if err != nil {
		inst.close()
		return gatewayBackend{}, fmt.Errorf("seed orders: %w", err)
	}
	b := gatewayBackend{urls: inst.urls, root: inst.root, close: inst.close,
		authorize: func(r *http.Request) { tenantsig.SignRequest(r, inst.key, tenant, omsStack, time.Now()) }}
	for _, id := range orders {
		b.paths = append(b.paths, "/v1/orders/"+strconv.FormatInt(id, 10))
	}
	return b, nil
}

// staticBackend starts one loopback server answering staticBody to every
// request, unauthenticated.
func staticBackend() (gatewayBackend, error) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		h["Content-Length"] = []string{strconv.Itoa(len(staticBody))}
		w.Write(staticBody)
	}))
	return gatewayBackend{urls: []string{hs.URL}, paths: []string{"/static"}, root: []byte(rand.Text()),
		authorize: func(*http.Request) {}, close: hs.Close}, nil
}

// serveGateway serves g on a loopback port as `tenantry gateway` does
// (Gateway.Serve: the HTTP edge's limits) and returns its URL and a stop
// function that drains it.
func serveGateway(ctx context.Context, g *gateway.Gateway) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(sctx, ln)
	}()
	return "http://" + ln.Addr().String(), func() { cancel(); <-done }, nil
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
// bases[i % len(bases)], authorized by authorize.
type readTarget struct {
	bases     []string
	client    *http.Client
	authorize func(*http.Request)
}

// newReadTarget returns a target with its own client: keep-alive, an idle
// pool holding a connection per worker (no dials once warm), no
// compression, HTTP/1.1, as a load generator such as wrk drives a server.
func newReadTarget(bases []string, workers int, authorize func(*http.Request)) readTarget {
	tr := &http.Transport{
		MaxIdleConns: 2 * workers * len(bases), MaxIdleConnsPerHost: 2 * workers,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true,
	}
	return readTarget{bases: bases, client: &http.Client{Transport: tr}, authorize: authorize}
}

// get reads url to the end and reports whether it answered 200.
func (t readTarget) get(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	t.authorize(req)
	resp, err := t.client.Do(req)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK
}

type readRounds struct {
	paths   []string
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

// roundGrace bounds how long a request started within a round may take.
const roundGrace = 30 * time.Second

// round reads from t with every worker for d: each worker starts requests
// until d has passed and the round ends when the last one is answered, so
// that no connection is cut mid-request (a cut connection would cost the
// next round a dial).
func (r *readRounds) round(t readTarget, d time.Duration) readSide {
	var (
		mu  sync.Mutex
		out readSide
		wg  sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(roundGrace))
	defer cancel()
	for w := range r.workers {
		wg.Go(func() {
			mine := &readSide{}
			for i := w; ; i++ {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				url := t.bases[i%len(t.bases)] + r.paths[i%len(r.paths)]
				if t.get(ctx, url) {
					mine.hist.Record(time.Since(t0))
				} else {
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
