package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tenantry/isolate"
	"tenantry/oms"
	"tenantry/registry"
	"tenantry/workflow"
)

// isolationRequest is a test isolation: analysis intervals of a second,
// an hour of hypercare (the tests complete or cut back on command).
func isolationRequest(tenant string, standbys int) isolate.Request {
	return isolate.Request{Tenant: tenant, Standbys: &standbys, Hypercare: isolate.Duration(time.Hour), Rollout: testRolloutParams(100)}
}

// waitIsolation polls the tenant's isolation until cond holds or it ends.
func waitIsolation(t *testing.T, ctx context.Context, tenant string, cond func(*isolate.Info) bool) *isolate.Info {
	t.Helper()
	var in *isolate.Info
	err := poll(ctx, "isolation of "+tenant, func() (bool, error) {
		var err error
		in, err = rolloutClient().Isolation(ctx, tenant)
		return err == nil && (cond(in) || in.Status != string(workflow.StatusRunning)), err
	})
	if err != nil {
		if in != nil {
			logIsolation(t, in)
		}
		t.Fatal(err)
	}
	return in
}

func logIsolation(t *testing.T, in *isolate.Info) {
	t.Helper()
	for _, p := range in.Data.Phases {
		t.Logf("phase %-10s %-8s %6.2fs %s", p.Name, p.State, p.Seconds, p.Detail)
	}
	t.Logf("isolation %s: %s %s outcome %q reason %q error %q", in.ID, in.Status, in.Step, in.Data.Outcome, in.Data.Reason, in.Error)
}

// inHypercare: the isolation's database is promoted, the standby streams,
// and it waits in hypercare.
func inHypercare(in *isolate.Info) bool {
	return in.Step == isolate.PhaseHypercare && in.Data.WaitingFor != ""
}

// cleanupIsolation stops the dedicated stack and drops the tenant's route
// when the test ends, so that the shared platform stays as it was.
func cleanupIsolation(t *testing.T, req isolate.Request) {
	t.Cleanup(func() {
		ctx := context.Background()
		_ = plat.Store.DeleteRoute(ctx, req.Tenant)
		_ = plat.Stacks.Stop(ctx, req.Tenant+"-app")
	})
}

// TestIsolate_FullUnderLoad: under load on the isolated tenant and on
// another one, an isolation runs every phase — backup, a dedicated cluster
// with a streaming standby, a dedicated stack, smoke, the app cutover as a
// rollout, the move's replication, verification and promotion — and
// completes on command, with no failed request, the checker and parity
// passing, and the tenant served by its dedicated stack from its dedicated
// cluster.
func TestIsolate_FullUnderLoad(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	runMoves(t)
	const tenant = "iso-full"
	fx := newTenant(t, ctx, tenant, 300)
	other := newTenant(t, ctx, "iso-bystander", 0)
	lr := startLoad(t, ctx, 120, fx, other)
	req := isolationRequest(tenant, 1)
	cleanupIsolation(t, req)

	started := time.Now()
	in, err := rolloutClient().StartIsolation(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	in = waitIsolation(t, ctx, tenant, inHypercare)
	logIsolation(t, in)
	if in.Status != string(workflow.StatusRunning) {
		t.Fatalf("isolation ended %s before hypercare", in.Status)
	}
	t.Logf("isolated (to hypercare) in %v, promotion pause %.1f ms", time.Since(started).Round(time.Millisecond), in.Data.PauseMS)
	d := in.Data
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != req.Tenant+"-app" || b[0].Weight != 100 {
		t.Errorf("route of %s in hypercare: %+v", tenant, b)
	}
	wantServing(t, ctx, tenant, tenant+"-ded", PooledAlias)
	if d.Streaming < 1 {
		t.Errorf("standbys streaming on the dedicated cluster: %d", d.Streaming)
	}
	if d.LinkBack == "" {
		t.Errorf("no link back recorded")
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := snap.Clusters[tenant+"-db"]; c == nil || len(c.Members) != 2 {
		t.Errorf("dedicated cluster: %+v", c)
	}
	if _, err := rolloutClient().IsolationCommand(ctx, tenant, isolate.SignalComplete); err != nil {
		t.Fatal(err)
	}
	in = waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	if in.Status != string(workflow.StatusSucceeded) || in.Data.Outcome != "completed" {
		t.Fatalf("isolation %s (%s): %s", in.Status, in.Data.Outcome, in.Error)
	}
	lr.finish(t)
	lr.check(t, ctx)
	wantServing(t, ctx, tenant, tenant+"-ded", "")
	mv, err := plat.Moves.Get(ctx, in.Data.MoveID, false)
	if err != nil {
		t.Fatal(err)
	}
	if mv.Data.Verify == nil || !mv.Data.Verify.OK {
		t.Errorf("the move's parity check: %+v", mv.Data.Verify)
	}
	for _, f := range mv.Data.Flips {
		if f.AfterFlip != nil && !f.AfterFlip.OK {
			t.Errorf("parity after the flip failed: %+v", f.AfterFlip)
		}
	}
	for _, p := range in.Data.Phases {
		if p.State != isolate.StateDone {
			t.Errorf("phase %s is %s", p.Name, p.State)
		}
	}
	evs, err := plat.Store.Events(ctx, registry.EventFilter{Subject: tenant, Kind: "isolation"})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.Kind]++
	}
	if kinds[isolate.EventSucceeded] != 1 || kinds[isolate.EventPhase] < len(isolate.Phases) {
		t.Errorf("isolation events: %v", kinds)
	}
}

// TestIsolate_CutbackUnderLoad: an isolation in hypercare is cut back by
// one command — the data through the move's link back, then the route —
// with no failed request and nothing lost (checker).
func TestIsolate_CutbackUnderLoad(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	runMoves(t)
	const tenant = "iso-back"
	fx := newTenant(t, ctx, tenant, 200)
	lr := startLoad(t, ctx, 120, fx)
	req := isolationRequest(tenant, 0)
	cleanupIsolation(t, req)
	if _, err := rolloutClient().StartIsolation(ctx, req); err != nil {
		t.Fatal(err)
	}
	in := waitIsolation(t, ctx, tenant, inHypercare)
	if in.Status != string(workflow.StatusRunning) {
		logIsolation(t, in)
		t.Fatalf("isolation ended %s before hypercare", in.Status)
	}
	wantServing(t, ctx, tenant, tenant+"-ded", PooledAlias)
	if _, err := rolloutClient().IsolationCommand(ctx, tenant, isolate.SignalCutback); err != nil {
		t.Fatal(err)
	}
	in = waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	if in.Status != string(workflow.StatusSucceeded) || in.Data.Outcome != "cut_back" {
		t.Fatalf("isolation %s (%s): %s", in.Status, in.Data.Outcome, in.Error)
	}
	t.Logf("cutback of data and traffic took %.0f ms", in.Data.CutbackMS)
	lr.finish(t)
	lr.check(t, ctx)
	wantServing(t, ctx, tenant, PooledAlias, "")
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("route after the cutback: %+v", b)
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, own := snap.Routes[tenant]; own {
		t.Errorf("tenant %s keeps a route of its own after the cutback", tenant)
	}
	mv, err := plat.Moves.Get(ctx, in.Data.MoveID, false)
	if err != nil {
		t.Fatal(err)
	}
	if mv.Status != workflow.StatusCancelled || mv.Data.On != PooledAlias {
		t.Errorf("move after the cutback: %s on %s", mv.Status, mv.Data.On)
	}
}

// TestIsolate_ProductionGate: in production, an isolation without a
// sandbox record is refused — through the CLI with exit 1 and the reason
// named — and changes nothing; with --force --reason it proceeds and the
// override is in the events with who and why. Bad input is refused with
// 4xx and changes nothing.
func TestIsolate_ProductionGate(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	const tenant = "iso-gate"
	newTenant(t, ctx, tenant, 0)
	c := rolloutClient()
	if err := c.SetEnv(ctx, isolate.EnvProduction, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.SetEnv(context.Background(), isolate.EnvSandbox, "test") })
	req := isolationRequest(tenant, 0)
	cleanupIsolation(t, req)
	before, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := c.StartIsolation(ctx, req); !errors.Is(err, isolate.ErrGate) {
		t.Fatalf("production isolation without a sandbox record: %v, want the gate's refusal", err)
	}
	cmd := exec.CommandContext(ctx, tenantryBin, "--api", plat.APIURL, "isolate", tenant)
	cmd.Env = append(os.Environ(), "TENANTRY_TOKEN="+plat.Local.State.AdminToken)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "no succeeded isolation of "+tenant+" is recorded in a sandbox") {
		t.Errorf("tenantry isolate in production: %v, stderr %q; want exit 1 naming the reason", err, stderr.String())
	}
	for _, bad := range []isolate.Request{
		{Tenant: tenant, Window: "25:00-26:00"},
		{Tenant: "Bad!"},
		{Tenant: tenant, Force: true},
		{Tenant: "iso-nobody"},
	} {
		if _, err := c.StartIsolation(ctx, bad); err == nil {
			t.Errorf("bad request %+v accepted", bad)
		} else if !strings.Contains(err.Error(), "invalid_request") && !strings.Contains(err.Error(), "not_found") {
			t.Errorf("bad request %+v: %v, want a 4xx", bad, err)
		}
	}
	after, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := after.Clusters[tenant+"-db"]; ok || len(after.Stacks) != len(before.Stacks) || len(after.Aliases) != len(before.Aliases) {
		t.Errorf("a refused isolation changed the registry")
	}
	if list, err := c.Rollouts(ctx, tenant); err != nil || len(list) != 0 {
		t.Errorf("rollouts after the refusal: %v %v", list, err)
	}
	if _, err := c.Isolation(ctx, tenant); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("an isolation was recorded after the refusal: %v", err)
	}

	// The dry run shows the gate's verdict and changes nothing.
	p, err := c.PlanIsolation(ctx, req)
	if err != nil || !strings.HasPrefix(p.Gate, "refused") || len(p.Steps) != len(isolate.Phases) {
		t.Errorf("plan: %+v %v", p, err)
	}

	req.Force, req.Reason, req.By = true, "customer escalation #42", "alice"
	in, err := c.StartIsolation(ctx, req)
	if err != nil {
		t.Fatalf("forced isolation: %v", err)
	}
	if in.Data.Override == nil || in.Data.Override.By != "alice" {
		t.Errorf("override not recorded in the isolation: %+v", in.Data.Override)
	}
	evs, err := plat.Store.Events(ctx, registry.EventFilter{Subject: tenant, Kind: isolate.EventOverride})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("override events: %+v", evs)
	}
	var data map[string]string
	if err := json.Unmarshal(evs[0].Data, &data); err != nil || data["by"] != "alice" || data["reason"] != "customer escalation #42" {
		t.Errorf("override event: %s %s", evs[0].Message, evs[0].Data)
	}
	// It proceeds; cut it back once it has made its cluster.
	waitIsolation(t, ctx, tenant, func(in *isolate.Info) bool {
		return in.Data.Current == isolate.PhaseDeploy || in.Data.Current == isolate.PhaseSmoke || in.Data.Current == isolate.PhaseCutover
	})
	if _, err := c.IsolationCommand(ctx, tenant, isolate.SignalCutback); err != nil {
		t.Fatal(err)
	}
	in = waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	if in.Data.Outcome != "cut_back" {
		t.Errorf("forced isolation after cutback: %s (%s) %s", in.Status, in.Data.Outcome, in.Error)
	}
	wantServing(t, ctx, tenant, PooledAlias, "")
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("route after the cutback: %+v", b)
	}

	// The CLI shows it: status as JSON, the environment's mark.
	cli := func(args ...string) []byte {
		cmd := exec.CommandContext(ctx, tenantryBin, append([]string{"--api", plat.APIURL}, args...)...)
		cmd.Env = append(os.Environ(), "TENANTRY_TOKEN="+plat.Local.State.AdminToken)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tenantry %v: %v", args, err)
		}
		return out
	}
	var shown isolate.Info
	if err := json.Unmarshal(cli("isolate", "status", tenant, "--output", "json"), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.ID != in.ID || shown.Data.Outcome != "cut_back" || shown.Data.Override == nil || len(shown.Data.Phases) == 0 {
		t.Errorf("isolate status --output json: %+v", shown)
	}
	if out := strings.TrimSpace(string(cli("env", "show"))); out != isolate.EnvProduction {
		t.Errorf("env show: %q", out)
	}
}

// testHooks is the hook this process's plane calls at the move's and the
// isolation's hook points (see testMoveOptions); nil does nothing.
var testHooks atomic.Pointer[func(ctx context.Context, point string) error]

func testHook(ctx context.Context, point string) error {
	if h := testHooks.Load(); h != nil {
		return (*h)(ctx, point)
	}
	return nil
}

// stopRunnerAt runs this process's runner until it reaches hook point
// (calling during, if not nil, once it runs), then stops it there: the
// step is cut off before it acts and its lease handed back.
func stopRunnerAt(t *testing.T, ctx context.Context, point string, during func()) {
	t.Helper()
	reached := make(chan struct{}, 1)
	h := func(hctx context.Context, p string) error {
		if p != point {
			return nil
		}
		select {
		case reached <- struct{}{}:
		default:
		}
		<-hctx.Done()
		return hctx.Err()
	}
	testHooks.Store(&h)
	defer testHooks.Store(nil)
	plat.Runner.Start(context.Background())
	defer plat.Runner.Stop()
	if during != nil {
		during()
	}
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatalf("runner reaching %s: %v", point, ctx.Err())
	}
}

// TestIsolate_Crash kills (SIGKILL) the control-plane replica running an
// isolation at points in its phases — after the backup, with the rollout
// and the move started, after the cutover, the verification, the
// promotion, the standby check and the completion — and lets this
// process's runner take over each time: the isolation ends completed, with
// every phase done, no failed request and the checker passing.
func TestIsolate_Crash(t *testing.T) {
	ctx := testContext(t, 6*time.Minute)
	const tenant = "iso-crash"
	fx := newTenant(t, ctx, tenant, 300)
	lr := startLoad(t, ctx, 40, fx)
	req := isolationRequest(tenant, 1)
	cleanupIsolation(t, req)
	if _, err := rolloutClient().StartIsolation(ctx, req); err != nil {
		t.Fatal(err)
	}
	completeInHypercare := func() {
		waitIsolation(t, ctx, tenant, inHypercare)
		if _, err := rolloutClient().IsolationCommand(ctx, tenant, isolate.SignalComplete); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		stopAt, crashAt string
		during          func()
	}{
		{"isolate:backup", "isolate:backup:done", nil},
		{"isolate:cutover", "isolate:cutover:child", nil},
		{"isolate:cutover", "isolate:cutover:done", nil},
		{"isolate:replicate", "isolate:replicate:child", nil},
		{"isolate:replicate", "isolate:replicate:done", nil},
		{"isolate:promote", "isolate:promote:done", nil},
		{"isolate:standby", "isolate:standby:done", nil},
		{"isolate:complete", "isolate:complete:done", completeInHypercare},
	} {
		stopRunnerAt(t, ctx, c.stopAt, c.during)
		killed := crashWorkerAt(t, ctx, c.crashAt, nil)
		in, err := rolloutClient().Isolation(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("killed at %s (%v ago): isolation at %s (%s)", c.crashAt, time.Since(killed).Round(time.Millisecond), in.Step, in.Data.PhaseState())
	}
	runMoves(t)
	in := waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	if in.Status != string(workflow.StatusSucceeded) || in.Data.Outcome != "completed" {
		t.Fatalf("isolation after the crashes: %s (%s): %s", in.Status, in.Data.Outcome, in.Error)
	}
	for _, p := range in.Data.Phases {
		if p.State != isolate.StateDone {
			t.Errorf("phase %s is %s", p.Name, p.State)
		}
	}
	lr.finish(t)
	lr.check(t, ctx)
	wantServing(t, ctx, tenant, tenant+"-ded", "")
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != req.Tenant+"-app" {
		t.Errorf("route after the isolation: %+v", b)
	}
}

// TestIsolate_WindowAuto: --window auto picks the quietest hour of a
// generated week of the tenant's traffic, says from what figures, and
// refuses (4xx, nothing changed) a tenant with too short a history; the
// gateway records every tenant's traffic per hour.
func TestIsolate_WindowAuto(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	const tenant, fresh = "iso-window", "iso-window-new"
	newTenant(t, ctx, tenant, 0)
	newTenant(t, ctx, fresh, 0)
	now := time.Now().UTC().Truncate(time.Hour)
	for h := now.Add(-7 * 24 * time.Hour); h.Before(now); h = h.Add(time.Hour) {
		n := int64(500 + 50*h.Hour())
		if h.Hour() == 4 {
			n = 20
		}
		if err := plat.Store.AddTenantTraffic(ctx, h.Add(time.Minute), map[string]int64{tenant: n}); err != nil {
			t.Fatal(err)
		}
	}
	c := rolloutClient()
	req := isolationRequest(tenant, 0)
	req.Window = isolate.WindowAuto
	p, err := c.PlanIsolation(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("window: %s (%s)", p.Request.Window, p.WindowChoice)
	if p.Request.Window != "04:00-05:00" || !strings.Contains(p.WindowChoice, "quietest hour 04:00-05:00 UTC") ||
		!strings.Contains(p.WindowChoice, "busiest 23:00") {
		t.Errorf("--window auto picked %s: %s", p.Request.Window, p.WindowChoice)
	}
	req.Tenant = fresh
	if _, err := c.StartIsolation(ctx, req); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "traffic history") {
		t.Errorf("--window auto without history: %v", err)
	}
	if _, err := c.Isolation(ctx, fresh); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("an isolation was recorded after the refusal: %v", err)
	}
	// newTenant stocked the tenant through the gateway: the gateway has
	// recorded that traffic in the tenant's hourly history.
	err = poll(ctx, "gateway traffic history of "+fresh, func() (bool, error) {
		h, err := plat.Store.TenantTraffic(ctx, fresh, now.Add(-time.Hour))
		return err == nil && len(h) > 0 && h[len(h)-1].Requests > 0, err
	})
	if err != nil {
		t.Error(err)
	}
}

// TestIsolate_AutoCutback: a dedicated stack that turns 300 ms slower
// once it serves the tenant fails hypercare's verdicts (p99 against the
// tenant's on the shared stack); with --auto-cutback the isolation takes
// the data and the traffic back by itself, with no failed request.
func TestIsolate_AutoCutback(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	runMoves(t)
	const tenant = "iso-auto"
	fx := newTenant(t, ctx, tenant, 100)
	// The isolation reuses a ready stack of its name: this one goes slow
	// after its first 400 requests (the smoke suite's and the cutover's).
	deployStack(t, ctx, tenant+"-app", tenant, oms.Faults{Latency: 300 * time.Millisecond, After: 400})
	lr := startLoad(t, ctx, 60, fx)
	req := isolationRequest(tenant, 0)
	req.AutoCutback = true
	cleanupIsolation(t, req)
	if _, err := rolloutClient().StartIsolation(ctx, req); err != nil {
		t.Fatal(err)
	}
	in := waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	for _, v := range in.Data.Verdicts {
		t.Logf("verdict %s: %d requests, p99 %.1f ms, pass %v %v", v.At.Format("15:04:05.000"), v.Requests, v.P99MS, v.Pass, v.Reasons)
	}
	if in.Data.Outcome != "cut_back" || !strings.Contains(in.Data.Reason, "auto-cutback") || in.Data.PauseMS == 0 {
		t.Fatalf("isolation %s (%s), pause %.1f ms: %s %s", in.Status, in.Data.Outcome, in.Data.PauseMS, in.Data.Reason, in.Error)
	}
	lr.finish(t)
	lr.check(t, ctx)
	wantServing(t, ctx, tenant, PooledAlias, "")
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("route after the auto-cutback: %+v", b)
	}
	evs, err := plat.Store.Events(ctx, registry.EventFilter{Subject: tenant, Kind: isolate.EventVerdict})
	if err != nil || len(evs) < 3 {
		t.Errorf("verdict events: %d %v", len(evs), err)
	}
}

// TestIsolate_CrashCutback kills (SIGKILL) the replica that has just cut an
// isolation back — data, traffic, the dedicated copy dropped — before it
// could record so: the survivor re-runs the cutback, which finds it done,
// and the isolation ends cut back with no failed request.
func TestIsolate_CrashCutback(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	const tenant = "iso-crash-back"
	fx := newTenant(t, ctx, tenant, 200)
	lr := startLoad(t, ctx, 40, fx)
	req := isolationRequest(tenant, 0)
	cleanupIsolation(t, req)
	if _, err := rolloutClient().StartIsolation(ctx, req); err != nil {
		t.Fatal(err)
	}
	stopRunnerAt(t, ctx, "isolate:cutback", func() {
		waitIsolation(t, ctx, tenant, inHypercare)
		if _, err := rolloutClient().IsolationCommand(ctx, tenant, isolate.SignalCutback); err != nil {
			t.Fatal(err)
		}
	})
	crashWorkerAt(t, ctx, "isolate:cutback:done", nil)
	wantServing(t, ctx, tenant, PooledAlias, "")
	runMoves(t)
	in := waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	if in.Status != string(workflow.StatusSucceeded) || in.Data.Outcome != "cut_back" {
		t.Fatalf("isolation after the crash: %s (%s): %s", in.Status, in.Data.Outcome, in.Error)
	}
	lr.finish(t)
	lr.check(t, ctx)
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != SharedStack {
		t.Errorf("route after the cutback: %+v", b)
	}
}
