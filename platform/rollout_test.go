package platform

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/oms"
	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/stack"
	"tenantry/workflow"
)

// testRolloutParams are short intervals for tests. The latency thresholds
// are wide (3× and at least +100 ms) so that a loaded 2-core machine does
// not fail a good version, while 200 ms added still fails.
func testRolloutParams(steps ...int) rollout.Params {
	return rollout.Params{Steps: steps, Interval: rollout.Duration(time.Second), Grace: rollout.Duration(2 * time.Second),
		FailureLimit: 3, MaxErrorRate: 0.01, MaxP99Ratio: 3, MinP99Delta: rollout.Duration(100 * time.Millisecond),
		MinRequests: 20, Hold: rollout.Duration(time.Second)}
}

// deployStack deploys a one-instance stack (with faults) for the test; at
// the end the tenant's route is deleted and the stack stopped.
func deployStack(t *testing.T, ctx context.Context, name, tenant string, faults oms.Faults) {
	t.Helper()
	if _, err := plat.Stacks.Deploy(ctx, stack.Spec{Name: name, Version: name, Instances: 1, Faults: faults}); err != nil {
		t.Fatalf("deploy %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := plat.Store.DeleteRoute(ctx, tenant); err != nil && !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("delete route of %s: %v", tenant, err)
		}
		if err := plat.Stacks.Stop(ctx, name); err != nil && !errors.Is(err, stack.ErrNotRunning) {
			t.Errorf("stop %s: %v", name, err)
		}
	})
}

func rolloutClient() *control.Client {
	return &control.Client{BaseURL: plat.APIURL, Token: plat.Local.State.AdminToken}
}

// waitRollout polls the rollout until cond holds or it ends.
func waitRollout(t *testing.T, ctx context.Context, id string, cond func(*rollout.Info) bool) *rollout.Info {
	t.Helper()
	var in *rollout.Info
	err := poll(ctx, "rollout "+id, func() (bool, error) {
		var err error
		in, err = rolloutClient().Rollout(ctx, id, false)
		return err == nil && (cond(in) || in.Status != workflow.StatusRunning), err
	})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func logVerdicts(t *testing.T, in *rollout.Info) {
	t.Helper()
	for _, v := range in.Data.Intervals {
		t.Logf("interval step %d at %d%%: pass %v %v probes %d new %+v old %+v: %s", v.Step, v.Weight, v.Pass, v.Reasons, v.Probes, v.New, v.Old, v.Detail)
	}
	for _, e := range in.Data.Timeline {
		t.Logf("timeline %s %s: %s", e.At.Format("15:04:05.000"), e.Event, e.Detail)
	}
}

func routeOf(t *testing.T, ctx context.Context, tenant string) []registry.Backend {
	t.Helper()
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snap.RouteFor(tenant).Backends
}

// TestRollout_GoodPromotes: under load, a good version passes the smoke
// suite and every step (10, 50, 100) with zero failed requests, is held,
// and retires (the old, shared stack stays: the default route uses it).
func TestRollout_GoodPromotes(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	const tenant, green = "ro-good", "ro-green"
	fx := newTenant(t, ctx, tenant, 0)
	deployStack(t, ctx, green, tenant, oms.Faults{})
	lr := startLoad(t, ctx, 150, fx)

	in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: tenant, To: green, Params: testRolloutParams(10, 50, 100)})
	if err != nil {
		t.Fatal(err)
	}
	if in.Data.From != SharedStack || in.Data.To != green {
		t.Fatalf("rollout from %s to %s", in.Data.From, in.Data.To)
	}
	in = waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return false })
	lr.finish(t)
	logVerdicts(t, in)
	if in.Status != workflow.StatusSucceeded || in.Data.Phase != rollout.PhaseRetired {
		t.Fatalf("rollout %s (%s): %s", in.Status, in.Data.Phase, in.Error)
	}
	if !rollout.Passed(in.Data.Smoke) {
		t.Errorf("smoke: %+v", in.Data.Smoke)
	}
	seen := map[int]bool{}
	for _, v := range in.Data.Intervals {
		seen[v.Weight] = true
		if !v.Pass {
			t.Errorf("a failing interval: %+v", v)
		}
	}
	for _, w := range []int{10, 50, 100} {
		if !seen[w] {
			t.Errorf("no interval judged at %d%%", w)
		}
	}
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != green || b[0].Weight != 100 {
		t.Errorf("route after the rollout: %+v", b)
	}
}

// TestRollout_ErrorsRollBack: a version failing 20 % of requests is rolled
// back on its own within interval × failure limit + 1 s of its first bad
// interval; the only failed requests are its injected 500s.
func TestRollout_ErrorsRollBack(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	const tenant, red = "ro-errors", "ro-red"
	fx := newTenant(t, ctx, tenant, 0)
	// The first 50 requests (the smoke suite's) are served well: the
	// version goes bad under traffic.
	deployStack(t, ctx, red, tenant, oms.Faults{ErrorRate: 0.2, After: 50})
	lr := startLoad(t, ctx, 150, fx)

	p := testRolloutParams(50, 100)
	in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: tenant, To: red, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	in = waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return false })
	lr.stop()
	<-lr.done
	logVerdicts(t, in)
	if in.Status != workflow.StatusRolledBack {
		t.Fatalf("rollout %s, want rolled back: %s", in.Status, in.Error)
	}
	if !rollout.Passed(in.Data.Smoke) || len(in.Data.Intervals) == 0 {
		t.Fatalf("rolled back before traffic was judged: smoke %+v", in.Data.Smoke)
	}
	if !strings.Contains(in.Data.Reason, "consecutive failing intervals") {
		t.Errorf("reason %q", in.Data.Reason)
	}
	bound := time.Duration(p.Interval)*time.Duration(p.FailureLimit) + time.Second
	took := in.Data.RolledBackAt.Sub(in.Data.FirstBadAt)
	t.Logf("rolled back %v after the start of the first bad interval (bound %v)", took.Round(time.Millisecond), bound)
	if took > bound {
		t.Errorf("rolled back %v after the first bad interval began, want within %v", took, bound)
	}
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("route after the rollback: %+v", b)
	}
	s := lr.sum.Stats
	t.Logf("load: %d requests, %d failed %v", s.Requests, s.Failures, s.FailuresByCode)
	for code := range s.FailuresByCode {
		if code != "500 "+oms.CodeInjectedFault {
			t.Errorf("a failure not injected by the bad version: %s", code)
		}
	}
}
