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
	"sync/atomic"
	"time"

	"tenantry/control"
	"tenantry/isolate"
	"tenantry/load"
	"tenantry/move"
	"tenantry/oms"
	"tenantry/platform"
	"tenantry/rollout"
	"tenantry/stack"
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
	// The isolation (issue 14): to hypercare, its app cutover's failed
	// requests, its promotion pause, the dedicated cluster's standby, the
	// cutback of data and traffic, and the rollback of a bad shared version.
	IsolationSeconds float64 `json:"isolation_seconds"`
	AppCutoverFailed int64   `json:"app_cutover_failed_requests"`
	PromotionPauseMS float64 `json:"promotion_pause_ms"`
	StandbyStreaming bool    `json:"standby_streaming"`
	CutbackSeconds   float64 `json:"cutback_seconds"`
	RollbackSeconds  float64 `json:"rollback_seconds"`
	RolledBack       bool    `json:"rolled_back"`
	// TenantBaselineP99MS is the large tenant's own p99 on the shared
	// stack before the cutover, which the dedicated stack was held to.
	TenantBaselineP99MS float64 `json:"tenant_baseline_p99_ms"`
	// DedicatedStandby is the streaming standby the dedicated cluster got
	// after the move; StandbyLagBytes its replay lag when it was seen
	// streaming.
	DedicatedStandby string `json:"dedicated_standby"`
	StandbyLagBytes  int64  `json:"standby_lag_bytes"`
	Error            string `json:"error,omitempty"`
}

// Demo runs the platform end to end on this machine: a local platform,
// four tenants with data (one with a large order history), load across
// them throughout, the large tenant isolated (`tenantry isolate`: its own
// stack and cluster with a standby), cut back (data and traffic), isolated
// again and completed, and a rollout of the shared stack to a slow version
// that rolls back by itself; then the load stops and the checker runs. The report
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
	rep := &Report{LargeTenant: "bigco", LargeOrders: opts.Orders, AppCutoverFailed: -1}
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
		!slices.Contains(rep.ParityAfterFlips, false) && rep.StandbyStreaming && rep.AppCutoverFailed == 0 && rep.RolledBack
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

	var once sync.Once
	stopLoad := func() { once.Do(func() { close(stopc) }) }
	defer stopLoad()
	type result struct {
		s   load.Summary
		err error
	}
	done := make(chan result, 1)
	var failures atomic.Int64 // failed requests so far (load progress)
	go func() {
		s, err := load.Run(ctx, lcfg, cat, func(st load.Stats) { failures.Store(st.Failures) })
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

	// The large tenant is isolated: its own cluster (with a standby) and
	// stack, the app cutover as a rollout, the data moved and promoted.
	is := r.Plane.Isolations
	one := 1
	// The app cutover and hypercare hold the dedicated stack to the large
	// tenant's own p99 on the shared stack (the gateways' per-tenant
	// figures), not to the shared stack's, which mixes every tenant's.
	req := isolate.Request{Tenant: rep.LargeTenant, Standbys: &one, Hypercare: isolate.Duration(time.Hour), Instances: 2, Rollout: demoRollout()}
	in, err := is.Start(ctx, req)
	if err != nil {
		return err
	}
	var cutoverFrom int64 = -1
	in, err = is.Wait(ctx, in.ID, func(i *isolate.Info) bool {
		if cutoverFrom < 0 && i.Step == isolate.PhaseCutover {
			cutoverFrom = failures.Load()
		}
		if cutoverFrom >= 0 && rep.AppCutoverFailed < 0 && i.Step == isolate.PhaseReplicate {
			rep.AppCutoverFailed = failures.Load() - cutoverFrom
		}
		return i.Step == isolate.PhaseHypercare && i.Data.WaitingFor != ""
	})
	if err != nil {
		return err
	}
	if in.Status != "running" {
		return fmt.Errorf("isolation %s ended %s: %s (%s)", in.ID, in.Status, in.Data.Reason, in.Error)
	}
	rep.IsolationSeconds = round2(time.Since(in.CreatedAt).Seconds())
	rep.PromotionPauseMS = in.Data.PauseMS
	if b := in.Data.Baseline; b != nil && b.Used {
		rep.TenantBaselineP99MS = b.P99MS
	}
	rep.StandbyStreaming = in.Data.Streaming >= 1
	cluster := req.Tenant + "-db"
	rep.DedicatedStandby = cluster + "-1"
	if rep.StandbyLagBytes, err = waitStreaming(ctx, r.Service, cluster, rep.DedicatedStandby); err != nil {
		return err
	}
	moves := []string{in.Data.MoveID}
	phase(fmt.Sprintf("isolated: stack %s-app, cluster %s + standby (pause %.0f ms)", req.Tenant, cluster, in.Data.PauseMS))
	if err := settle(); err != nil {
		return err
	}
	if _, err := is.Command(ctx, req.Tenant, isolate.SignalCutback); err != nil {
		return err
	}
	if in, err = is.Wait(ctx, in.ID, func(*isolate.Info) bool { return false }); err != nil {
		return err
	}
	if in.Data.Outcome != "cut_back" {
		return fmt.Errorf("isolation cutback ended %s (%s): %s", in.Status, in.Data.Outcome, in.Error)
	}
	rep.CutbackSeconds = round2(in.Data.CutbackMS / 1000)
	phase(fmt.Sprintf("cut back: data to pool-1, traffic to the shared stack (%.1f s)", rep.CutbackSeconds))
	if err := settle(); err != nil {
		return err
	}
	if in, err = is.Start(ctx, req); err != nil {
		return err
	}
	if in, err = is.Wait(ctx, in.ID, func(i *isolate.Info) bool { return i.Step == isolate.PhaseHypercare && i.Data.WaitingFor != "" }); err != nil {
		return err
	}
	if in.Status != "running" {
		return fmt.Errorf("second isolation %s ended %s: %s (%s)", in.ID, in.Status, in.Data.Reason, in.Error)
	}
	moves = append(moves, in.Data.MoveID)
	phase(fmt.Sprintf("isolated again, reusing cluster and stack (pause %.0f ms)", in.Data.PauseMS))
	if _, err := is.Command(ctx, req.Tenant, isolate.SignalComplete); err != nil {
		return err
	}
	if in, err = is.Wait(ctx, in.ID, func(*isolate.Info) bool { return false }); err != nil {
		return err
	}
	if in.Data.Outcome != "completed" {
		return fmt.Errorf("isolation ended %s (%s): %s", in.Status, in.Data.Outcome, in.Error)
	}
	phase("isolation completed: old copy purged, link severed")
	for i, id := range moves {
		st, err := r.Moves.Get(ctx, id, false)
		if err != nil {
			return err
		}
		d := st.Data
		if i == len(moves)-1 {
			rep.MoveID = id
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
		}
		for _, f := range d.Flips {
			rep.Flips = append(rep.Flips, f)
			rep.PausesMS = append(rep.PausesMS, f.PauseMS)
			rep.ParityAfterFlips = append(rep.ParityAfterFlips, f.Counted || (f.AfterFlip != nil && f.AfterFlip.OK))
		}
	}

	// A rollout of the shared stack to a version 200 ms slower rolls back
	// on its own, judged on p99, with no failed request.
	if _, err := r.Stacks.Deploy(ctx, stack.Spec{Name: "shared-slow", Version: "v2-slow", Instances: 1,
		Faults: oms.Faults{Latency: 200 * time.Millisecond, After: 50}}); err != nil {
		return err
	}
	ro, err := r.Plane.Rollouts.Start(ctx, rollout.StartRequest{Route: rollout.DefaultRouteName, To: "shared-slow", Params: demoRollout(50, 100)})
	if err != nil {
		return err
	}
	for ro.Status == "running" {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if ro, err = r.Plane.Rollouts.Get(ctx, ro.ID, false); err != nil {
			return err
		}
	}
	if ro.Status != "rolled_back" {
		return fmt.Errorf("the slow version's rollout ended %s, not rolled back: %s", ro.Status, ro.Error)
	}
	rep.RollbackSeconds = round2(ro.Data.RolledBackAt.Sub(ro.Data.FirstBadAt).Seconds())
	rep.RolledBack = true
	if err := r.Stacks.Stop(ctx, "shared-slow"); err != nil {
		return err
	}
	phase(fmt.Sprintf("shared stack rollout to a slow version rolled back (%.1f s after the first bad interval)", rep.RollbackSeconds))

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

// demoRollout are rollout thresholds for a loaded 2-core machine: one
// second intervals, two seconds a step; p99 fails at 3× the old stack's
// and 100 ms more (a 200 ms slower version fails, noise does not).
func demoRollout(steps ...int) rollout.Params {
	return rollout.Params{Steps: steps, Interval: rollout.Duration(time.Second), Grace: rollout.Duration(2 * time.Second),
		FailureLimit: 3, MaxErrorRate: 0.01, MaxP99Ratio: 3, MinP99Delta: rollout.Duration(100 * time.Millisecond), MinRequests: 20}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
