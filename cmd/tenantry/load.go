package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tenantry/load"
	"tenantry/platform"
)

func init() { register(newLoadCmd) }

// loadCmd drives the OMS through the gateway and writes the ledger that
// `tenantry check` verifies.
type loadCmd struct {
	a           *app
	gateway     string
	tenants     []string
	targetsFile string
	rate        float64
	concurrency int
	duration    time.Duration
	requests    int
	ledger      string
	setup       bool
	setupOpts   load.SetupOptions
	seed        int64
	deadline    time.Duration
}

func newLoadCmd(a *app) *cobra.Command {
	c := &loadCmd{a: a}
	cmd := &cobra.Command{
		Use:   "load --gateway URL (--tenant T=KEY ... | --targets FILE)",
		Short: "Drive the OMS through the gateway with a realistic, retrying, idempotent client; write a ledger for `tenantry check`",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&c.gateway, "gateway", os.Getenv("TENANTRY_GATEWAY"), "gateway URL ($TENANTRY_GATEWAY; default: the local platform's, from the data directory)")
	f.StringArrayVar(&c.tenants, "tenant", nil, "a tenant, its API key from $TENANTRY_API_KEY (or TENANT=KEY, which shows the key in ps; repeatable)")
	f.StringVar(&c.targetsFile, "targets", "", `file of targets: a JSON array of {"tenant","api_key"}, or TENANT=KEY lines`)
	f.Float64Var(&c.rate, "rate", 200, "target requests per second over all workers (0: as fast as possible)")
	f.IntVar(&c.concurrency, "concurrency", 16, "workers")
	f.DurationVar(&c.duration, "duration", 30*time.Second, "how long to run (0: until --requests)")
	f.IntVar(&c.requests, "requests", 0, "stop after this many requests (0: until --duration)")
	f.StringVar(&c.ledger, "ledger", "ledger.jsonl", "ledger file, appended to")
	f.BoolVar(&c.setup, "setup", false, "create products, locations and stock first (else discover them)")
	f.IntVar(&c.setupOpts.Products, "products", 5, "with --setup: products per tenant")
	f.IntVar(&c.setupOpts.Locations, "locations", 2, "with --setup: locations per tenant")
	f.Int64Var(&c.setupOpts.Stock, "stock", 1000, "with --setup: on_hand of every product at every location")
	f.Int64Var(&c.seed, "seed", 0, "seed of the operation mix (0: from the clock)")
	f.DurationVar(&c.deadline, "request-deadline", 30*time.Second, "give a request up after this long, retries included")
	return cmd
}

// Run sets up or discovers the catalog, runs the load with live progress
// and prints the summary. Any failed request makes it exit 1.
func (c *loadCmd) Run(ctx context.Context) error {
	if c.gateway == "" {
		// The local platform's gateway, from the data directory.
		if st, err := platform.ReadState(c.a.dataDir); err == nil {
			c.gateway = st.GatewayURL
		}
	}
	if c.gateway == "" {
		return usageErr("--gateway is required (no local platform in %s)", c.a.dataDir)
	}
	targets, err := c.targets()
	if err != nil {
		return err
	}
	if c.duration <= 0 && c.requests <= 0 {
		return usageErr("--duration or --requests is required")
	}
	lf, err := os.OpenFile(c.ledger, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open ledger: %w", err)
	}
	defer lf.Close()
	cfg := load.Config{
		BaseURL: strings.TrimRight(c.gateway, "/"), Targets: targets, Rate: c.rate, Concurrency: c.concurrency,
		Duration: c.duration, Requests: c.requests, Ledger: lf, Seed: c.seed,
		Retry: load.RetryPolicy{Deadline: c.deadline}, Logger: c.a.log,
	}
	if err := cfg.Validate(); err != nil {
		return usageErr("%v", err)
	}
	var cat load.Catalog
	if c.setup {
		cat, err = load.Setup(ctx, cfg, c.setupOpts)
	} else {
		cat, err = load.Discover(ctx, cfg)
	}
	if err != nil {
		return err
	}
	p := newProgress(c.a.stderr)
	sum, runErr := load.Run(ctx, cfg, cat, p.show)
	p.done()
	if err := lf.Sync(); err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	if c.a.output == "json" {
		if err := c.a.printJSON(sum); err != nil {
			return err
		}
	} else {
		printLoadSummary(c.a.stdout, sum, c.ledger)
	}
	if runErr != nil {
		return runErr
	}
	if sum.Failures > 0 {
		return fmt.Errorf("%d of %d requests failed", sum.Failures, sum.Requests)
	}
	return nil
}

// targets gathers --targets and --tenant.
func (c *loadCmd) targets() ([]load.Target, error) {
	var out []load.Target
	if c.targetsFile != "" {
		f, err := os.Open(c.targetsFile)
		if err != nil {
			return nil, usageErr("--targets: %v", err)
		}
		out, err = load.ReadTargets(f)
		f.Close()
		if err != nil {
			return nil, usageErr("--targets %s: %v", c.targetsFile, err)
		}
	}
	for _, s := range c.tenants {
		if !strings.Contains(s, "=") {
			// The key from the environment: a command line is readable by
			// every user of the machine, an environment only by its owner.
			s += "=" + os.Getenv("TENANTRY_API_KEY")
			if strings.HasSuffix(s, "=") {
				return nil, usageErr("--tenant %s: set $TENANTRY_API_KEY to its API key (or use --targets FILE)", strings.TrimSuffix(s, "="))
			}
		}
		t, err := load.ParseTarget(s)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, usageErr("give targets with --tenant T=KEY or --targets FILE")
	}
	return out, nil
}

// progress renders load.Stats: a refreshed status line on a terminal,
// a line every five seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	calls int
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(s load.Stats) {
	p.calls++
	line := fmt.Sprintf("%6.1fs  %7d req  %7.1f/s  ack %d  refused %d  retries %d  failed %d  p99 %s  stall %s",
		time.Duration(s.Elapsed).Seconds(), s.Requests, s.Throughput, s.Acknowledged, s.Refused, s.Retries, s.Failures,
		roundMs(s.Latency.P99), roundMs(s.LongestStall))
	switch {
	case p.tty:
		fmt.Fprint(p.w, "\r\033[K"+line)
	case p.calls%5 == 0:
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func roundMs(m load.Millis) time.Duration { return time.Duration(m).Round(100 * time.Microsecond) }

func printLoadSummary(w io.Writer, s load.Summary, ledger string) {
	fmt.Fprintf(w, "tenants:       %s\n", strings.Join(s.Tenants, ", "))
	fmt.Fprintf(w, "duration:      %s (target rate %.0f/s, %d workers, seed %d)\n", roundMs(s.Elapsed), s.Rate, s.Concurrency, s.Seed)
	fmt.Fprintf(w, "requests:      %d (%.1f/s)\n", s.Requests, s.Throughput)
	fmt.Fprintf(w, "acknowledged:  %d (of which refused, e.g. insufficient stock: %d)\n", s.Acknowledged, s.Refused)
	fmt.Fprintf(w, "retries:       %d (replayed answers: %d)\n", s.Retries, s.Replays)
	fmt.Fprintf(w, "failures:      %d\n", s.Failures)
	for _, code := range s.SortedCodes() {
		fmt.Fprintf(w, "  %-24s %d\n", code, s.FailuresByCode[code])
	}
	if s.Interrupted > 0 {
		fmt.Fprintf(w, "interrupted:   %d\n", s.Interrupted)
	}
	fmt.Fprintf(w, "latency:       p50 %s  p90 %s  p99 %s  max %s\n",
		roundMs(s.Latency.P50), roundMs(s.Latency.P90), roundMs(s.Latency.P99), roundMs(s.Latency.Max))
	fmt.Fprintf(w, "longest stall: %s (from %s)\n", roundMs(s.LongestStall), roundMs(s.LongestStallAt))
	fmt.Fprintf(w, "ledger:        %s\n", ledger)
}
