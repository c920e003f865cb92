package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"tenantry/localpg"
	"tenantry/oms"
	"tenantry/tenantsig"
)

func init() { benchCommands = append(benchCommands, newBenchOMSCmd) }

// benchOMSResult is what `tenantry bench oms` reports.
type benchOMSResult struct {
	Workers    int     `json:"workers"`
	DurationS  float64 `json:"duration_s"`
	Orders     int64   `json:"orders"`
	OrdersPerS float64 `json:"orders_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
}

func newBenchOMSCmd(a *app) *cobra.Command {
	var (
		duration time.Duration
		workers  int
	)
	cmd := &cobra.Command{
		Use:   "oms",
		Short: "Measure OMS place-order throughput and latency over real HTTP on a temporary local cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration <= 0 || workers < 1 {
				return usageErr("--duration must be positive and --workers at least 1")
			}
			res, err := benchOMS(cmd.Context(), a, duration, workers)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "place order: %.0f orders/s over %.1fs with %d workers; p50 %.2f ms, p99 %.2f ms; %d errors\n",
				res.OrdersPerS, res.DurationS, res.Workers, res.P50Ms, res.P99Ms, res.Errors)
			return nil
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 5*time.Second, "how long to place orders")
	cmd.Flags().IntVar(&workers, "workers", 8, "concurrent clients")
	return cmd
}

// benchOMSProducts is how many products the benchmark stocks; each order
// takes one to three of them at random, so orders contend on positions the
// way a busy tenant's do.
const benchOMSProducts = 20

func benchOMS(ctx context.Context, a *app, duration time.Duration, workers int) (benchOMSResult, error) {
	urls, secret, stop, err := a.benchOMSInstances(ctx, "bench-oms", workers, 1)
	if err != nil {
		return benchOMSResult{}, err
	}
	defer stop()
	cl := &benchOMSClient{
		url:    urls[0],
		secret: secret,
		http:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 30 * time.Second},
	}
	location, products, err := cl.stock(ctx)
	if err != nil {
		return benchOMSResult{}, fmt.Errorf("stock products: %w", err)
	}
	a.log.Info("placing orders", "workers", workers, "duration", duration)
	return cl.placeOrders(ctx, duration, workers, location, products), nil
}

// benchOMSDatabase creates and migrates the benchmark's database.
func benchOMSDatabase(ctx context.Context, c *localpg.Cluster, workers int) (*pgxpool.Pool, error) {
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{"oms"}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(c.DSN("oms"))
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

// benchOMSClient calls the OMS as tenant "bench".
type benchOMSClient struct {
	url    string
	secret []byte
	http   *http.Client
}

// post sends body as JSON and decodes a response with status want into out.
func (c *benchOMSClient) post(ctx context.Context, method, path string, body, out any, want int) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	tenantsig.Set(req.Header, c.secret, "bench", time.Now())
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// stock creates one location and benchOMSProducts products with stock that
// no benchmark run can exhaust.
func (c *benchOMSClient) stock(ctx context.Context) (location int64, products []int64, err error) {
	var created struct {
		ID int64 `json:"id"`
	}
	if err := c.post(ctx, "POST", "/v1/locations", map[string]string{"code": "wh-1", "name": "Warehouse 1"}, &created, http.StatusCreated); err != nil {
		return 0, nil, err
	}
	location = created.ID
	for i := range benchOMSProducts {
		sku := fmt.Sprintf("sku-%03d", i)
		if err := c.post(ctx, "POST", "/v1/products", map[string]string{"sku": sku, "name": "Product " + sku}, &created, http.StatusCreated); err != nil {
			return 0, nil, err
		}
		products = append(products, created.ID)
		path := fmt.Sprintf("/v1/inventory/%d/%d", created.ID, location)
		if err := c.post(ctx, "PUT", path, map[string]int64{"on_hand": oms.MaxStock}, nil, http.StatusOK); err != nil {
			return 0, nil, err
		}
	}
	return location, products, nil
}

// placeOrders runs workers that place orders until duration has passed and
// reports throughput and latency percentiles of the successful ones.
func (c *benchOMSClient) placeOrders(ctx context.Context, duration time.Duration, workers int, location int64, products []int64) benchOMSResult {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  int64
		wg        sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			var mine []time.Duration
			var failed int64
			for ctx.Err() == nil {
				t0 := time.Now()
				err := c.post(ctx, "POST", "/v1/orders", benchOrder(rng, location, products), nil, http.StatusCreated)
				switch {
				case err == nil:
					mine = append(mine, time.Since(t0))
				case ctx.Err() == nil:
					failed++
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			failures += failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	return benchOMSResult{
		Workers:    workers,
		DurationS:  elapsed.Seconds(),
		Orders:     int64(len(latencies)),
		OrdersPerS: float64(len(latencies)) / elapsed.Seconds(),
		P50Ms:      percentileMs(latencies, 0.50),
		P99Ms:      percentileMs(latencies, 0.99),
		Errors:     failures,
	}
}

func benchOrder(rng *rand.Rand, location int64, products []int64) map[string]any {
	perm := rng.Perm(len(products))[:1+rng.IntN(3)]
	lines := make([]map[string]int64, len(perm))
	for i, p := range perm {
		lines[i] = map[string]int64{"product_id": products[p], "quantity": 1 + rng.Int64N(3)}
	}
	return map[string]any{"location_id": location, "lines": lines}
}

// percentileMs returns the q-quantile of sorted latencies in milliseconds.
func percentileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}
