package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"tenantry/gateway"
	"tenantry/registry"
	"tenantry/tenantsig"
)

func init() { benchCommands = append(benchCommands, newBenchGatewayCmd) }

// benchGatewayResult is what `tenantry bench gateway` reports. Both sides
// are measured in the same run, in alternating rounds. Ratio is the median
// of the per-round ratios (gateway round / the direct round next to it):
// on a shared, noisy machine one stalled round would otherwise swing the
// ratio of the totals (RatioOfTotals, reported too).
type benchGatewayResult struct {
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

func newBenchGatewayCmd(a *app) *cobra.Command {
	var (
		duration time.Duration
		workers  int
		rounds   int
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Measure OMS reads through the gateway against calling the OMS instances directly",
		Long: `Starts a temporary local cluster, two OMS instances and a gateway in front of them,
all on loopback, then reads orders (GET /v1/orders/{id}) in alternating rounds through the
gateway and directly (the client balancing across both instances itself). Each side runs
--duration in total, split into --rounds rounds. Reports throughput, latency and their ratio.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration <= 0 || workers < 1 || rounds < 1 {
				return usageErr("--duration must be positive, --workers and --rounds at least 1")
			}
			res, err := benchGateway(cmd.Context(), a, duration, workers, rounds)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "gateway: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors\n",
				res.GatewayRPS, res.GatewayP50Ms, res.GatewayP99Ms, res.GatewayErrors)
			fmt.Fprintf(a.stdout, "direct:  %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors\n",
				res.DirectRPS, res.DirectP50Ms, res.DirectP99Ms, res.DirectErrors)
			fmt.Fprintf(a.stdout, "ratio (gateway/direct throughput): %.2f median of rounds, %.2f of totals  [%d workers, %d rounds, %.1fs per side]\n",
				res.Ratio, res.RatioOfTotals, res.Workers, res.Rounds, res.DurationS)
			return nil
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 5*time.Second, "measuring time per side (gateway and direct)")
	cmd.Flags().IntVar(&workers, "workers", 16, "concurrent clients")
	cmd.Flags().IntVar(&rounds, "rounds", 10, "alternating rounds per side")
	return cmd
}

const benchGatewayTenant = "bench"

func benchGateway(ctx context.Context, a *app, duration time.Duration, workers, rounds int) (benchGatewayResult, error) {
	instances, secret, stop, err := a.benchOMSInstances(ctx, "bench-gateway", workers, 2)
	if err != nil {
		return benchGatewayResult{}, err
	}
	defer stop()
	orders, err := benchGatewayOrders(ctx, instances[0], secret)
	if err != nil {
		return benchGatewayResult{}, fmt.Errorf("seed orders: %w", err)
	}

	apiKey := "tk_bench_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	st := &registry.Stack{Name: "oms", Version: "bench", Status: registry.StackReady}
	for _, u := range instances {
		st.Instances = append(st.Instances, registry.Instance{URL: u, Healthy: true})
	}
	snap := &registry.Snapshot{
		Version:    1,
		Stacks:     map[string]*registry.Stack{st.Name: st},
		Routes:     map[string]*registry.Route{registry.DefaultRoute: {Backends: []registry.Backend{{Stack: st.Name, Weight: 1}}}},
		KeysByHash: map[string]*registry.APIKey{registry.HashAPIKey(apiKey): {ID: "bench", Tenant: benchGatewayTenant}},
	}
	g, err := gateway.New(gateway.Config{Source: registry.StaticSource{Snapshot: snap}, Secret: secret, Logger: a.log})
	if err != nil {
		return benchGatewayResult{}, err
	}
	gs := httptest.NewServer(g)
	defer gs.Close()

	runner := &benchGatewayRunner{
		orders:  orders,
		workers: workers,
		http: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxIdleConns: 4 * workers},
			Timeout:   30 * time.Second,
		},
	}
	viaGateway := benchTarget{urls: []string{gs.URL}, auth: "Bearer " + apiKey}
	direct := benchTarget{urls: instances, secret: secret}
	a.log.Info("warming up")
	runner.round(ctx, viaGateway, duration/10)
	runner.round(ctx, direct, duration/10)

	var gw, dr benchSide
	var ratios []float64
	per := duration / time.Duration(rounds)
	for i := range rounds {
		a.log.Info("round", "n", i+1, "of", rounds)
		// ABBA order, so that drift over the run favours neither side.
		first, second := &gw, &dr
		ft, stt := viaGateway, direct
		if i%2 == 1 {
			first, second, ft, stt = second, first, stt, ft
		}
		r1, r2 := runner.round(ctx, ft, per), runner.round(ctx, stt, per)
		first.add(r1)
		second.add(r2)
		g, d := r1, r2
		if i%2 == 1 {
			g, d = r2, r1
		}
		if d.rps() > 0 {
			ratios = append(ratios, g.rps()/d.rps())
		}
		if err := ctx.Err(); err != nil {
			return benchGatewayResult{}, err
		}
	}
	res := benchGatewayResult{
		Workers: workers, Rounds: rounds, DurationS: gw.elapsed.Seconds(),
		GatewayRPS: gw.rps(), DirectRPS: dr.rps(),
		GatewayP50Ms: gw.percentileMs(0.50), GatewayP99Ms: gw.percentileMs(0.99),
		DirectP50Ms: dr.percentileMs(0.50), DirectP99Ms: dr.percentileMs(0.99),
		GatewayErrors: gw.errors, DirectErrors: dr.errors,
	}
	if res.DirectRPS > 0 {
		res.RatioOfTotals = res.GatewayRPS / res.DirectRPS
	}
	res.RoundRatios = ratios
	if len(ratios) > 0 {
		sorted := slices.Clone(ratios)
		slices.Sort(sorted)
		res.Ratio = sorted[len(sorted)/2]
		if len(sorted)%2 == 0 {
			res.Ratio = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
		}
	}
	return res, nil
}

// benchGatewayOrders stocks products and places a few orders to read.
func benchGatewayOrders(ctx context.Context, url string, secret []byte) ([]int64, error) {
	cl := &benchOMSClient{url: url, secret: secret, http: &http.Client{Timeout: 30 * time.Second}}
	location, products, err := cl.stock(ctx)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ids []int64
	for range 20 {
		var o struct {
			ID int64 `json:"id"`
		}
		if err := cl.post(ctx, "POST", "/v1/orders", benchOrder(rng, location, products), &o, http.StatusCreated); err != nil {
			return nil, err
		}
		ids = append(ids, o.ID)
	}
	return ids, nil
}

// benchTarget is where a round sends its reads: the gateway with an API key,
// or the instances directly with a signed tenant header (signed once per
// round, as a client that reached instances directly would cache it).
type benchTarget struct {
	urls   []string
	auth   string
	secret []byte
}

type benchGatewayRunner struct {
	orders  []int64
	workers int
	http    *http.Client
}

// benchSide accumulates the rounds of one side.
type benchSide struct {
	latencies []time.Duration
	errors    int64
	elapsed   time.Duration
}

func (s *benchSide) add(r benchSide) {
	s.latencies = append(s.latencies, r.latencies...)
	s.errors += r.errors
	s.elapsed += r.elapsed
}

func (s *benchSide) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(len(s.latencies)) / s.elapsed.Seconds()
}

func (s *benchSide) percentileMs(q float64) float64 {
	slices.Sort(s.latencies)
	return percentileMs(s.latencies, q)
}

// round reads orders from t with every worker for d.
func (r *benchGatewayRunner) round(ctx context.Context, t benchTarget, d time.Duration) benchSide {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	hdr := http.Header{}
	if t.auth != "" {
		hdr.Set("Authorization", t.auth)
	} else {
		tenantsig.Set(hdr, t.secret, benchGatewayTenant, time.Now())
	}
	var (
		mu  sync.Mutex
		out benchSide
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine benchSide
			for i := w; ctx.Err() == nil; i++ {
				url := t.urls[i%len(t.urls)] + "/v1/orders/" + strconv.FormatInt(r.orders[i%len(r.orders)], 10)
				t0 := time.Now()
				err := r.get(ctx, url, hdr)
				switch {
				case err == nil:
					mine.latencies = append(mine.latencies, time.Since(t0))
				case ctx.Err() == nil:
					mine.errors++
				}
			}
			mu.Lock()
			out.add(mine)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	return out
}

var errBenchStatus = errors.New("unexpected status")

func (r *benchGatewayRunner) get(ctx context.Context, url string, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header = hdr.Clone()
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w %d", errBenchStatus, resp.StatusCode)
	}
	return nil
}
