package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"tenantry/load"
	"tenantry/oms"
	"tenantry/platform"
	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/stack"
	"tenantry/workflow"
)

// RolloutConfig configures Rollout. Zero values mean the documented
// defaults.
type RolloutConfig struct {
	// Binary is the tenantry executable for stack instances and the
	// gateway.
	Binary string
	// Rate of the load during the rollouts; default 150 requests/s.
	Rate float64
	// Interval and FailureLimit of the analysis; default 1s and 3.
	Interval     time.Duration
	FailureLimit int
	Progress     io.Writer
}

// RolloutResult is what Rollout measured.
type RolloutResult struct {
	// SwitchMS is the median, over 5 weight changes, of the time from a
	// route change committed in the registry to the gateway routing by it
	// (its /healthz serving that registry version); SwitchMaxMS the
	// largest.
	SwitchMS    float64 `json:"switch_ms"`
	SwitchMaxMS float64 `json:"switch_max_ms"`
	// Good version (steps 10, 50, 100) under load.
	GoodRequests       int64   `json:"good_requests"`
	GoodFailedRequests int64   `json:"good_failed_requests"`
	GoodSeconds        float64 `json:"good_seconds"`
	// Bad version (20 % 5xx once past its smoke suite, steps 50, 100):
	// BadDetectS is from the start of its first bad interval to the
	// verdict that failed it, RollbackSeconds to the weights back on the
	// old stack; BadFailedRequests are the load's failures (all the bad
	// stack's injected 500s).
	BadDetectS        float64 `json:"bad_detect_s"`
	RollbackSeconds   float64 `json:"rollback_seconds"`
	BadRequests       int64   `json:"bad_requests"`
	BadFailedRequests int64   `json:"bad_failed_requests"`
	IntervalS         float64 `json:"interval_s"`
	FailureLimit      int     `json:"failure_limit"`
}

// Rollout measures rollouts on a fresh local platform: the route switch
// at the gateway, a good version promoted under load, and a version failing
// 20 % of requests rolled back under load.
func Rollout(ctx context.Context, opts RolloutConfig) (*RolloutResult, error) {
	if opts.Rate == 0 {
		opts.Rate = 150
	}
	if opts.Interval == 0 {
		opts.Interval = time.Second
	}
	if opts.FailureLimit == 0 {
		opts.FailureLimit = 3
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	r, _, stop, err := startPlatform(ctx, "rollout", opts.Binary)
	if err != nil {
		return nil, err
	}
	defer stop()
	lcfg, cat, err := stockedTenant(ctx, r, tenant, platform.PooledAlias, opts.Rate, 7)
	if err != nil {
		return nil, err
	}
	for _, s := range []stack.Spec{
		{Name: "green", Version: "v2", Instances: 2},
		{Name: "red", Version: "v3-bad", Instances: 2, Faults: oms.Faults{ErrorRate: 0.2, After: 50}},
	} {
		if _, err := r.Stacks.Deploy(ctx, s); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(out, "platform up, stacks green and red deployed")
	res := &RolloutResult{IntervalS: opts.Interval.Seconds(), FailureLimit: opts.FailureLimit}
	if res.SwitchMS, res.SwitchMaxMS, err = measureSwitch(ctx, r); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "route switch at the gateway: median %.2f ms, max %.2f ms\n", res.SwitchMS, res.SwitchMaxMS)

	params := func(steps ...int) rollout.Params {
		return rollout.Params{Steps: steps, Interval: rollout.Duration(opts.Interval), Grace: rollout.Duration(2 * opts.Interval),
			FailureLimit: opts.FailureLimit, MaxP99Ratio: 3, MinP99Delta: rollout.Duration(100 * time.Millisecond),
			Hold: rollout.Duration(time.Millisecond)}
	}
	good, sum, err := rolloutUnderLoad(ctx, r, lcfg, cat, rollout.StartRequest{Route: tenant, To: "green", Params: params(10, 50, 100)})
	if err != nil {
		return nil, err
	}
	if good.Status != workflow.StatusSucceeded {
		return nil, fmt.Errorf("the good version's rollout ended %s: %s", good.Status, good.Error)
	}
	res.GoodRequests, res.GoodFailedRequests = sum.Requests, sum.Failures
	res.GoodSeconds = round2(good.UpdatedAt.Sub(good.CreatedAt).Seconds())
	fmt.Fprintf(out, "good version promoted in %.1f s: %d requests, %d failed\n", res.GoodSeconds, res.GoodRequests, res.GoodFailedRequests)

	bad, sum, err := rolloutUnderLoad(ctx, r, lcfg, cat, rollout.StartRequest{Route: tenant, To: "red", Params: params(50, 100)})
	if err != nil {
		return nil, err
	}
	if bad.Status != workflow.StatusRolledBack || len(bad.Data.Intervals) == 0 {
		return nil, fmt.Errorf("the bad version's rollout ended %s after %d intervals: %s", bad.Status, len(bad.Data.Intervals), bad.Error)
	}
	d := bad.Data
	res.BadDetectS = round2(d.Intervals[len(d.Intervals)-1].At.Sub(d.FirstBadAt).Seconds())
	res.RollbackSeconds = round2(d.RolledBackAt.Sub(d.FirstBadAt).Seconds())
	res.BadRequests, res.BadFailedRequests = sum.Requests, sum.Failures
	fmt.Fprintf(out, "bad version rolled back %.2f s after its first bad interval began: %d requests, %d failed\n",
		res.RollbackSeconds, res.BadRequests, res.BadFailedRequests)
	return res, nil
}

// rolloutUnderLoad runs load while a rollout runs to its end (or its hold)
// and returns the rollout and the load's summary.
func rolloutUnderLoad(ctx context.Context, r *platform.Running, lcfg load.Config, cat load.Catalog, req rollout.StartRequest) (*rollout.Info, load.Summary, error) {
	var in *rollout.Info
	summary, err := underLoad(ctx, lcfg, cat, func() error {
		var err error
		in, err = r.Plane.Rollouts.Start(ctx, req)
		for err == nil && in.Status == workflow.StatusRunning && in.Data.Phase != rollout.PhaseHolding {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(100 * time.Millisecond):
				in, err = r.Plane.Rollouts.Get(ctx, in.ID, false)
			}
		}
		return err
	})
	return in, summary, err
}

// measureSwitch flips the bench tenant's route between the shared stack and
// green five times, timing each from the committed change to the gateway
// serving that registry version.
func measureSwitch(ctx context.Context, r *platform.Running) (medianMS, maxMS float64, err error) {
	client := &http.Client{Timeout: 2 * time.Second}
	var ms []float64
	for i := range 5 {
		to := "green"
		if i%2 == 1 {
			to = platform.SharedStack
		}
		start := time.Now()
		if err := r.Store.SetRoute(ctx, registry.Route{Tenant: tenant, Backends: []registry.Backend{{Stack: to, Weight: 100}}}, 0); err != nil {
			return 0, 0, err
		}
		v, err := r.Store.Version(ctx)
		if err != nil {
			return 0, 0, err
		}
		for platform.GatewayVersion(ctx, client, r.GatewayURL) < v {
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			time.Sleep(time.Millisecond)
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	// Back on the shared stack: the rollouts start from it.
	if err := r.Store.DeleteRoute(ctx, tenant); err != nil {
		return 0, 0, err
	}
	if err := r.WaitGateway(ctx); err != nil {
		return 0, 0, err
	}
	return round2(median(ms)), round2(slices.Max(ms)), nil
}
