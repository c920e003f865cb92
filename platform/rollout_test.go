package platform

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
		// A p99 interval may fail on a loaded machine (the rollout then
		// needs three in a row to roll back); a 5xx never may.
		if v.New.Errors != 0 || slices.Contains(v.Reasons, rollout.ReasonNoData) {
			t.Errorf("interval %+v: want no 5xx and enough data", v)
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
	evs, err := plat.Store.Events(ctx, registry.EventFilter{Subject: tenant, Kind: "rollout"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Kind != rollout.EventStarted || evs[1].Kind != rollout.EventRolledBack || !strings.Contains(evs[1].Message, "consecutive failing intervals") {
		t.Errorf("event log of the route: %+v", evs)
	}
	s := lr.sum.Stats
	t.Logf("load: %d requests, %d failed %v", s.Requests, s.Failures, s.FailuresByCode)
	for code := range s.FailuresByCode {
		if code != "500 "+oms.CodeInjectedFault {
			t.Errorf("a failure not injected by the bad version: %s", code)
		}
	}
}

// TestRollout_LatencyRollsBack: a version that adds 200 ms is rolled back
// on p99, with no failed request.
func TestRollout_LatencyRollsBack(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	const tenant, slow = "ro-latency", "ro-slow"
	fx := newTenant(t, ctx, tenant, 0)
	deployStack(t, ctx, slow, tenant, oms.Faults{Latency: 200 * time.Millisecond, After: 50})
	lr := startLoad(t, ctx, 100, fx)
	// The default ratio (1.5) and a 50 ms floor: on a loaded machine the
	// old stack's p99 over one interval is noisy (40 to 300 ms seen), and
	// the new one is judged against it interval by interval; a longer
	// grace gives two consecutive failures time to happen.
	p := testRolloutParams(50, 100)
	p.MaxP99Ratio, p.MinP99Delta, p.FailureLimit, p.Grace = 1.5, rollout.Duration(50*time.Millisecond), 2, rollout.Duration(8*time.Second)
	in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: tenant, To: slow, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	in = waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return false })
	lr.finish(t)
	logVerdicts(t, in)
	if in.Status != workflow.StatusRolledBack {
		t.Fatalf("rollout %s, want rolled back: %s", in.Status, in.Error)
	}
	last := in.Data.Intervals[len(in.Data.Intervals)-1]
	if last.Pass || !slices.Contains(last.Reasons, rollout.ReasonP99) || slices.Contains(last.Reasons, rollout.ReasonErrorRate) {
		t.Errorf("last interval %+v, want failed on p99 only", last)
	}
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("route after the rollback: %+v", b)
	}
}

// TestRollout_NoTrafficJudgedFromProbes: a route without traffic is judged
// from probes through the preview, and promotes.
func TestRollout_NoTrafficJudgedFromProbes(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	const tenant, quiet = "ro-quiet", "ro-quiet-green"
	newTenant(t, ctx, tenant, 0)
	deployStack(t, ctx, quiet, tenant, oms.Faults{})
	p := testRolloutParams(100)
	p.Interval, p.Grace, p.MinRequests = rollout.Duration(500*time.Millisecond), rollout.Duration(time.Second), 10
	in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: tenant, To: quiet, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	in = waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return false })
	logVerdicts(t, in)
	if in.Status != workflow.StatusSucceeded {
		t.Fatalf("rollout %s: %s", in.Status, in.Error)
	}
	if len(in.Data.Intervals) < 2 {
		t.Fatalf("%d intervals judged, want at least 2", len(in.Data.Intervals))
	}
	// Every interval is judged on probes; the last, which promoted, passed.
	// (An earlier one may fail its p99 on a busy machine: the rollout's
	// failure limit allows it, as for real traffic.)
	for _, v := range in.Data.Intervals {
		if v.Probes == 0 || v.New.Requests < int64(p.MinRequests) {
			t.Errorf("interval %+v: want judged on probes", v)
		}
	}
	if last := in.Data.Intervals[len(in.Data.Intervals)-1]; !last.Pass {
		t.Errorf("last interval %+v: want passed", last)
	}
}

// TestRollout_ControlPlaneKilled: the control-plane replica running a
// rollout is killed (SIGKILL) in each phase — the pre-check, the analysis,
// the hold —; another replica takes it over at once and ends it
// consistently, with no failed request; preview keys the dead replica made
// are revoked.
func TestRollout_ControlPlaneKilled(t *testing.T) {
	for _, tc := range []struct {
		phase string
		when  func(*rollout.Info) bool
		// then is the command sent after the takeover ("" = none), and
		// want the end it leads to, on stack want.
		then       string
		wantStatus workflow.Status
		onNew      bool
	}{
		{"precheck", func(i *rollout.Info) bool { return i.Data.KeyID != "" }, "", workflow.StatusSucceeded, true},
		{"analysing", func(i *rollout.Info) bool { return len(i.Data.Intervals) >= 1 }, "", workflow.StatusSucceeded, true},
		{"holding", func(i *rollout.Info) bool { return i.Data.Phase == rollout.PhaseHolding }, rollout.SignalCutback, workflow.StatusRolledBack, false},
	} {
		t.Run(tc.phase, func(t *testing.T) {
			ctx := testContext(t, 3*time.Minute)
			tenant, green := "ro-kill-"+tc.phase, "ro-kill-"+tc.phase
			fx := newTenant(t, ctx, tenant, 0)
			deployStack(t, ctx, green, tenant, oms.Faults{})
			lr := startLoad(t, ctx, 100, fx)
			p := testRolloutParams(50, 100)
			if tc.then != "" {
				p.Hold = rollout.Duration(time.Hour)
			}
			in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: tenant, To: green, Params: p})
			if err != nil {
				t.Fatal(err)
			}
			before := killWorkerWhen(t, ctx, in.ID, tc.when)
			killed := time.Now()
			t.Logf("worker killed in %s with %d intervals judged", before.Data.Phase, len(before.Data.Intervals))

			runMoves(t)
			if tc.then != "" {
				waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return i.Data.Phase == rollout.PhaseHolding })
				if _, err := rolloutClient().RolloutCommand(ctx, in.ID, tc.then); err != nil {
					t.Fatalf("%s after the takeover: %v", tc.then, err)
				}
			}
			in = waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return false })
			lr.finish(t)
			logVerdicts(t, in)
			t.Logf("ended %s %v after the kill", in.Status, time.Since(killed).Round(time.Millisecond))
			if in.Status != tc.wantStatus || len(in.Data.Intervals) < len(before.Data.Intervals) {
				t.Fatalf("rollout %s with %d intervals (before the kill %d), want %s: %s", in.Status, len(in.Data.Intervals), len(before.Data.Intervals), tc.wantStatus, in.Error)
			}
			want := SharedStack
			if tc.onNew {
				want = green
			}
			if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != want {
				t.Errorf("route at the end: %+v, want all on %s", b, want)
			}
			keys, err := plat.Store.APIKeys(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			own := fx.target.APIKey[len(registry.APIKeyPrefix) : len(registry.APIKeyPrefix)+16]
			for _, k := range keys {
				if k.RevokedAt == nil && k.ID != own {
					t.Errorf("a preview key left in force: %s", k.ID)
				}
			}
		})
	}
}

// killWorkerWhen runs a second control-plane replica in a child process
// (this test binary, see runWorker; this process's runner is stopped), lets
// it run rollout id until cond holds, and kills it with SIGKILL.
func killWorkerWhen(t *testing.T, ctx context.Context, id string, cond func(*rollout.Info) bool) *rollout.Info {
	t.Helper()
	cmd := exec.Command(testBin, "-test.run=^$")
	cmd.Env = append(os.Environ(), envWorker+"="+plat.Local.Dir, envCrashAt+"=none", envMarker+"="+filepath.Join(t.TempDir(), "unused"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	before := waitRollout(t, ctx, id, cond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	if before.Status != workflow.StatusRunning {
		t.Fatalf("rollout ended before the kill: %s %s\nworker output:\n%s", before.Status, before.Error, out.String())
	}
	return before
}

// TestRollout_BadInput: refused requests answer a clear 4xx with a stable
// code and change nothing; a second rollout of a route is refused with the
// running one's id; commands that do not fit the phase are refused.
func TestRollout_BadInput(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	const tenant, green = "ro-input", "ro-input-green"
	newTenant(t, ctx, tenant, 0)
	deployStack(t, ctx, green, tenant, oms.Faults{})
	c := rolloutClient()
	version := func() int64 {
		v, err := plat.Store.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v0 := version()
	for _, tc := range []struct {
		name string
		req  rollout.StartRequest
		want error
	}{
		{"unknown tenant", rollout.StartRequest{Route: "nobody", To: green}, registry.ErrNotFound},
		{"malformed route", rollout.StartRequest{Route: "Bad Route", To: green}, registry.ErrInvalid},
		{"unknown stack", rollout.StartRequest{Route: tenant, To: "nope"}, registry.ErrNotFound},
		{"to the current stack", rollout.StartRequest{Route: tenant, To: SharedStack}, registry.ErrInvalid},
		{"steps not ending at 100", rollout.StartRequest{Route: tenant, To: green, Params: rollout.Params{Steps: []int{10, 50}}}, registry.ErrInvalid},
		{"error rate out of range", rollout.StartRequest{Route: tenant, To: green, Params: rollout.Params{MaxErrorRate: 2}}, registry.ErrInvalid},
		{"p99 ratio out of range", rollout.StartRequest{Route: tenant, To: green, Params: rollout.Params{MaxP99Ratio: 0.5}}, registry.ErrInvalid},
		{"interval too short", rollout.StartRequest{Route: tenant, To: green, Params: rollout.Params{Interval: rollout.Duration(time.Millisecond)}}, registry.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.StartRollout(ctx, tc.req)
			var ae *control.APIError
			if !errors.Is(err, tc.want) || !errors.As(err, &ae) || ae.Status >= 500 {
				t.Fatalf("got %v, want %v as a 4xx", err, tc.want)
			}
		})
	}
	if v := version(); v != v0 {
		t.Errorf("registry version %d after refused requests, was %d", v, v0)
	}
	if rs, err := c.Rollouts(ctx, tenant); err != nil || len(rs) != 0 {
		t.Fatalf("rollouts after refused requests: %v %v", rs, err)
	}

	// Not started by a runner: it stays in its pre-check.
	in, err := c.StartRollout(ctx, rollout.StartRequest{Route: tenant, To: green})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.StartRollout(ctx, rollout.StartRequest{Route: tenant, To: green})
	var ae *control.APIError
	if !errors.Is(err, workflow.ErrActive) || !errors.As(err, &ae) || ae.Details["existing_id"] != in.ID {
		t.Errorf("second rollout: %v, want active with existing id %s", err, in.ID)
	}
	for _, cmd := range []string{rollout.SignalPromote, rollout.SignalCutback, rollout.SignalRetire} {
		if _, err := c.RolloutCommand(ctx, in.ID, cmd); !errors.Is(err, rollout.ErrWrongState) {
			t.Errorf("%s in the pre-check: %v, want wrong state", cmd, err)
		}
	}
	if _, err := c.RolloutCommand(ctx, in.ID, "explode"); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("unknown command: %v", err)
	}
	runMoves(t)
	ab, err := c.RolloutCommand(ctx, in.ID, rollout.SignalAbort)
	if err != nil || ab.Status != workflow.StatusRolledBack || !strings.Contains(ab.Data.Reason, "aborted") {
		t.Fatalf("abort: %v %+v", err, ab)
	}
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("route after the abort: %+v", b)
	}

	listOrders := rollout.HTTPCheck{Name: "list orders", Method: "GET", Path: "/v1/orders?limit=1"}
	res, err := c.Smoke(ctx, green, control.SmokeRequest{Tenant: tenant, Checks: []rollout.HTTPCheck{listOrders}})
	if err != nil || !res.Pass || len(res.Checks) != 9 {
		t.Errorf("smoke through the preview: %v %+v", err, res)
	}
	missing := rollout.HTTPCheck{Name: "a product that is not there", Method: "GET", Path: "/v1/products/999999999"}
	res, err = c.Smoke(ctx, green, control.SmokeRequest{Tenant: tenant, Checks: []rollout.HTTPCheck{missing, listOrders}})
	if err != nil || res.Pass || len(res.Checks) != 10 || res.Checks[8].Pass || res.Checks[8].Status != 404 || !res.Checks[9].Pass {
		t.Errorf("smoke with a failing check of the operator's: %v %+v", err, res)
	}
	if _, err := c.Smoke(ctx, "nope", control.SmokeRequest{Tenant: tenant}); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("smoke of an unknown stack: %v", err)
	}
	bad := rollout.HTTPCheck{Name: "escape", Method: "GET", Path: "/v1/../admin"}
	if _, err := c.Smoke(ctx, green, control.SmokeRequest{Tenant: tenant, Checks: []rollout.HTTPCheck{bad}}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("a check with a non-canonical path: %v", err)
	}
}

// TestRollout_DefaultRoute: the default route rolls out like a tenant's,
// previewed as a tenant it serves; a cutback during the hold puts it back.
func TestRollout_DefaultRoute(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	runMoves(t)
	const tenant, green = "ro-default", "ro-default-green"
	fx := newTenant(t, ctx, tenant, 0)
	deployStack(t, ctx, green, tenant, oms.Faults{})
	t.Cleanup(func() { // before the stack stops, whatever happened
		def := registry.Route{Tenant: registry.DefaultRoute, Backends: []registry.Backend{{Stack: SharedStack, Weight: 100}}}
		if err := plat.Store.SetRoute(context.Background(), def, 0); err != nil {
			t.Errorf("restore the default route: %v", err)
		}
	})
	p := testRolloutParams(10, 100)
	p.Interval, p.Grace, p.MinRequests, p.Hold = rollout.Duration(500*time.Millisecond), rollout.Duration(time.Hour), 10, rollout.Duration(time.Hour)
	in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: rollout.DefaultRouteName, Tenant: tenant, To: green, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	if in.Data.From != SharedStack || in.Data.ProbeTenant != tenant {
		t.Fatalf("rollout of the default route from %s as %s", in.Data.From, in.Data.ProbeTenant)
	}
	// An hour's grace at 10 %: promote skips it and the step to 100.
	in = waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return len(i.Data.Intervals) >= 1 })
	if in, err = rolloutClient().RolloutCommand(ctx, in.ID, rollout.SignalPromote); err != nil {
		t.Fatal(err)
	}
	if in.Data.Phase != rollout.PhaseHolding || in.Data.Weight != 100 {
		t.Fatalf("after promote: phase %s at %d%%", in.Data.Phase, in.Data.Weight)
	}
	if b := routeOf(t, ctx, tenant); in.Status != workflow.StatusRunning || len(b) != 1 || b[0].Stack != green {
		t.Fatalf("rollout %s (%s), default route %+v", in.Status, in.Error, b)
	}
	_, since, err := plat.Store.StackStats(ctx, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lr := startLoad(t, ctx, 50, fx) // served by the new stack, then cut back under load
	if err := poll(ctx, "load served by "+green, func() (bool, error) {
		st, _, err := plat.Store.StackStats(ctx, []string{green}, since)
		return st[green].Requests >= 10, err
	}); err != nil {
		t.Fatal(err)
	}
	in, err = rolloutClient().RolloutCommand(ctx, in.ID, rollout.SignalCutback)
	if err != nil {
		t.Fatal(err)
	}
	lr.finish(t)
	logVerdicts(t, in)
	if in.Status != workflow.StatusRolledBack || !strings.Contains(in.Data.Reason, "cut back") {
		t.Errorf("after the cutback: %s, reason %q", in.Status, in.Data.Reason)
	}
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("default route after the cutback: %+v", b)
	}
}

// TestRollout_RetireStopsOldStack: retire during the hold stops the old
// stack when no route sends it traffic any more.
func TestRollout_RetireStopsOldStack(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	runMoves(t)
	const tenant, blue, green = "ro-retire", "ro-retire-blue", "ro-retire-green"
	newTenant(t, ctx, tenant, 0)
	deployStack(t, ctx, blue, tenant, oms.Faults{})
	deployStack(t, ctx, green, tenant, oms.Faults{})
	if err := plat.Store.SetRoute(ctx, registry.Route{Tenant: tenant, Backends: []registry.Backend{{Stack: blue, Weight: 100}}}, 0); err != nil {
		t.Fatal(err)
	}
	p := testRolloutParams(100)
	p.Interval, p.Grace, p.MinRequests, p.Hold = rollout.Duration(500*time.Millisecond), rollout.Duration(time.Second), 10, rollout.Duration(time.Hour)
	in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: tenant, To: green, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	if in.Data.From != blue {
		t.Fatalf("rollout from %s, want %s", in.Data.From, blue)
	}
	in = waitRollout(t, ctx, in.ID, func(i *rollout.Info) bool { return i.Data.Phase == rollout.PhaseHolding })
	if _, err := rolloutClient().RolloutCommand(ctx, in.ID, rollout.SignalAbort); !errors.Is(err, rollout.ErrWrongState) {
		t.Errorf("abort during the hold: %v, want wrong state (cut back instead)", err)
	}
	if in, err = rolloutClient().RolloutCommand(ctx, in.ID, rollout.SignalRetire); err != nil {
		t.Fatal(err)
	}
	logVerdicts(t, in)
	if in.Status != workflow.StatusSucceeded || in.Data.Phase != rollout.PhaseRetired {
		t.Fatalf("after retire: %s %s: %s", in.Status, in.Data.Phase, in.Error)
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := snap.Stacks[blue]; st == nil || st.Status != registry.StackStopped {
		t.Errorf("old stack after retire: %+v, want stopped", st)
	}
	if b := snap.RouteFor(tenant).Backends; len(b) != 1 || b[0].Stack != green {
		t.Errorf("route after retire: %+v", b)
	}
}
