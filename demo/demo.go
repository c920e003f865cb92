// Package demo is `tenantry demo`: the whole platform run end to end on
// this machine, under load, with a report of what it measured. It uses the
// local platform (package platform) as any operator would use tenantry: the
// control API's service, the gateway, the load generator and the checker.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"tenantry/control"
	"tenantry/load"
	"tenantry/move"
	"tenantry/platform"
	"tenantry/registry"
)

// Options configures Demo. Zero values mean the documented defaults.
type Options struct {
	// Dir is the platform's data directory; empty means a new temporary
	// directory, removed at the end.
	Dir string
	// Binary is the tenantry executable for stack instances; empty means
	// this process's executable.
	Binary string
	// Orders is the large tenant's order history; default 200,000.
	Orders int
	// Rate and Concurrency of the load; default 150 requests/s, 8 workers.
	Rate        float64
	Concurrency int
	// Settle is how long the load runs between the phases; default 3 s.
	Settle time.Duration
	// Progress receives one line per phase (nil: discarded).
	Progress io.Writer
	Logger   *slog.Logger
}

// Phase is one timed part of the demo.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Report is what the demo measured.
type Report struct {
	OK             bool              `json:"ok"`
	Phases         []Phase           `json:"phases"`
	Tenants        []string          `json:"tenants"`
	LargeTenant    string            `json:"large_tenant"`
	LargeOrders    int               `json:"large_tenant_orders"`
	Requests       int64             `json:"requests"`
	Acknowledged   int64             `json:"acknowledged"`
	FailedRequests int64             `json:"failed_requests"`
	FailuresByCode map[string]int64  `json:"failures_by_code,omitempty"`
	Retries        int64             `json:"retries"`
	P99MS          float64           `json:"p99_ms"`
	MaxMS          float64           `json:"max_latency_ms"`
	LongestStallMS float64           `json:"longest_stall_ms"`
	PausesMS       []float64         `json:"pauses_ms"`
	Flips          []move.FlipRecord `json:"flips"`
	CopyRows       int64             `json:"copy_rows"`
	CopySeconds    float64           `json:"copy_seconds"`
	CopyRowsPerSec float64           `json:"copy_rows_per_s"`
	ParityOK       bool              `json:"parity_ok"`
	// ParityAfterFlips is the chunked parity run right after each flip of a
	// tenant too large to count inside the pause (true when counted there).
	ParityAfterFlips []bool   `json:"parity_after_flips"`
	VerifyRowsPerS   float64  `json:"verify_rows_per_s"`
	CheckerOK        bool     `json:"checker_ok"`
	Violations       []string `json:"violations,omitempty"`
	MoveID           string   `json:"move_id"`
	// DedicatedStandby is the streaming standby the dedicated cluster got
	// after the move; StandbyLagBytes its replay lag when it was seen
	// streaming.
	DedicatedStandby string `json:"dedicated_standby"`
	StandbyLagBytes  int64  `json:"standby_lag_bytes"`
	Error            string   `json:"error,omitempty"`
}

// Demo runs the platform end to end on this machine: a local platform,
// four tenants with data (one with a large order history), load across
// them throughout, the large tenant moved to a new dedicated cluster, cut
// back, moved again; then the load stops and the checker runs. The report
// says what happened; OK is false if any request failed, the checker or
// parity failed, or a step did not complete.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Orders == 0 {
		opts.Orders = 200_000
	}
	if opts.Rate == 0 {
		opts.Rate = 150
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 8
	}
	if opts.Settle == 0 {
		opts.Settle = 3 * time.Second
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	rep := &Report{LargeTenant: "bigco", LargeOrders: opts.Orders}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tenantry-demo-")
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	err := runDemo(ctx, opts, dir, rep, out)
	if err != nil {
		rep.Error = err.Error()
	}
	rep.OK = err == nil && rep.FailedRequests == 0 && rep.CheckerOK && rep.ParityOK && len(rep.PausesMS) == 3 && rep.DedicatedStandby != "" &&
		!slices.Contains(rep.ParityAfterFlips, false)
	return rep, nil
}

func runDemo(ctx context.Context, opts Options, dir string, rep *Report, out io.Writer) error {
	began := time.Now()
	last := began
	phase := func(name string) {
		now := time.Now()
		rep.Phases = append(rep.Phases, Phase{Name: name, Seconds: round2(now.Sub(last).Seconds())})
		fmt.Fprintf(out, "[%6.1fs] %-40s (%.1fs)\n", now.Sub(began).Seconds(), name, now.Sub(last).Seconds())
		last = now
	}
	fmt.Fprintf(out, "tenantry demo: platform in %s\n", dir)
	r, err := platform.Run(ctx, platform.Options{Dir: dir, Binary: opts.Binary, Logger: opts.Logger})
	if err != nil {
		return err
	}
	defer r.Close(context.Background())
	if err := r.StartApps(ctx, platform.AppOptions{}); err != nil {
		return err
	}
	phase("platform up (control, pool-1 + standby, stack, gateway)")

	tenants := []string{rep.LargeTenant, "acme", "globex", "initech"}
	var targets []load.Target
	for _, t := range tenants {
		nt, err := r.Service.CreateTenant(ctx, t, platform.PooledAlias)
		if err != nil {
			return err
		}
		targets = append(targets, load.Target{Tenant: t, APIKey: nt.APIKey})
	}
	rep.Tenants = tenants
	if err := r.WaitGateway(ctx); err != nil {
		return err
	}
	ledgerPath := filepath.Join(dir, "ledger.jsonl")
	ledger, err := os.Create(ledgerPath)
	if err != nil {
		return err
	}
	defer ledger.Close()
	stopc := make(chan struct{})
	lcfg := load.Config{BaseURL: r.GatewayURL, Targets: targets, Rate: opts.Rate, Concurrency: opts.Concurrency,
		Ledger: ledger, Seed: 1, Duration: time.Hour, Stop: stopc}
	cat, err := load.Setup(ctx, lcfg, load.SetupOptions{Products: 5, Locations: 2, Stock: 1_000_000})
	if err != nil {
		return err
	}
	phase("4 tenants created and stocked")

	if err := r.SeedHistory(ctx, rep.LargeTenant, opts.Orders, cat[rep.LargeTenant]); err != nil {
		return err
	}
	phase(fmt.Sprintf("%s history: %d orders", rep.LargeTenant, opts.Orders))

	if _, err := r.Service.CreateCluster(ctx, control.CreateClusterRequest{Name: "dedicated-1", Standbys: 0}); err != nil {
		return err
	}
	if err := r.Service.CreateAlias(ctx, registry.Alias{Name: "bigco-dedicated", Cluster: "dedicated-1", Database: "bigco"}); err != nil {
		return err
	}
	phase("dedicated cluster and alias created")

	var once sync.Once
	stopLoad := func() { once.Do(func() { close(stopc) }) }
	defer stopLoad()
	type result struct {
		s   load.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := load.Run(ctx, lcfg, cat, func(st load.Stats) {})
		done <- result{s, err}
	}()
	settle := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opts.Settle):
			return nil
		}
	}
	if err := settle(); err != nil {
		return err
	}
	phase("load running")

	mv, err := r.Moves.Start(ctx, move.StartRequest{Tenant: rep.LargeTenant, To: "bigco-dedicated", Auto: true, Force: true})
	if err != nil {
		return err
	}
	rep.MoveID = mv.ID
	st, err := r.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "hypercare" && len(i.Data.Flips) == 1 })
	if err != nil {
		return err
	}
	d := st.Data
	for _, n := range d.SourceRows {
		rep.CopyRows += n
	}
	rep.CopySeconds = round2(d.CopySeconds)
	if d.CopySeconds > 0 {
		rep.CopyRowsPerSec = float64(int64(float64(rep.CopyRows) / d.CopySeconds))
	}
	if d.Verify != nil {
		rep.ParityOK = d.Verify.OK
		rep.VerifyRowsPerS = float64(int64(d.Verify.RowsPerSec))
	}
	phase(fmt.Sprintf("moved to dedicated (pause %.0f ms)", d.Flips[0].PauseMS))
	if err := settle(); err != nil {
		return err
	}
	st, err = r.Moves.Command(ctx, mv.ID, move.SignalCutback, true)
	if err != nil {
		return err
	}
	phase(fmt.Sprintf("cut back to pool-1 (pause %.0f ms)", st.Data.Flips[1].PauseMS))
	if err := settle(); err != nil {
		return err
	}
	st, err = r.Moves.Command(ctx, mv.ID, move.SignalPromote, true)
	if err != nil {
		return err
	}
	phase(fmt.Sprintf("moved again (pause %.0f ms)", st.Data.Flips[2].PauseMS))
	// The tenant is on one server now: its dedicated cluster gets a hot
	// standby, under load.
	sb, err := r.Service.AddStandby(ctx, "dedicated-1", control.AddStandbyRequest{})
	if err != nil {
		return err
	}
	if rep.StandbyLagBytes, err = waitStreaming(ctx, r.Service, "dedicated-1", sb.Name); err != nil {
		return err
	}
	rep.DedicatedStandby = sb.Name
	phase(fmt.Sprintf("dedicated-1 has a streaming standby, %s", sb.Name))
	if err := settle(); err != nil {
		return err
	}
	// The last flip's parity check runs in hypercare, after the flip.
	st, err = r.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return !i.Data.VerifyPending })
	if err != nil {
		return err
	}
	rep.Flips = st.Data.Flips
	for _, f := range st.Data.Flips {
		rep.PausesMS = append(rep.PausesMS, f.PauseMS)
		rep.ParityAfterFlips = append(rep.ParityAfterFlips, f.Counted || (f.AfterFlip != nil && f.AfterFlip.OK))
	}
	stopLoad()
	res := <-done
	if res.err != nil {
		return res.err
	}
	s := res.s.Stats
	rep.Requests, rep.Acknowledged, rep.FailedRequests, rep.Retries = s.Requests, s.Acknowledged, s.Failures, s.Retries
	rep.FailuresByCode = s.FailuresByCode
	rep.P99MS = float64(time.Duration(s.Latency.P99).Microseconds()) / 1000
	rep.MaxMS = float64(time.Duration(s.Latency.Max).Microseconds()) / 1000
	rep.LongestStallMS = float64(time.Duration(s.LongestStall).Microseconds()) / 1000
	phase(fmt.Sprintf("load stopped: %d requests, %d failed", s.Requests, s.Failures))

	if err := ledger.Sync(); err != nil {
		return err
	}
	cr, err := r.CheckLedger(ctx, ledgerPath)
	if err != nil {
		return err
	}
	rep.CheckerOK = cr.OK
	for _, v := range cr.Violations {
		rep.Violations = append(rep.Violations, v.String())
	}
	phase(fmt.Sprintf("checker: ok=%v, %d orders, %d violations", cr.OK, cr.Orders, len(cr.Violations)))
	return nil
}

// waitStreaming waits until member of cluster streams from its primary and
// returns its replay lag then.
func waitStreaming(ctx context.Context, svc *control.Service, cluster, member string) (int64, error) {
	for {
		st, err := svc.ClusterStatus(ctx, cluster)
		if err != nil {
			return 0, err
		}
		for _, m := range st.Members {
			if m.Name == member && m.Replication == "streaming" && m.LagBytes != nil {
				return *m.LagBytes, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("standby %s of %s not streaming: %w", member, cluster, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
