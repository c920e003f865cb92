package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
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
	// The cutover held the dedicated stack to the tenant's own p99 on the
	// shared stack, recorded before it started.
	b := d.Baseline
	if b == nil || !b.Used || b.Stack != SharedStack || b.Requests < 20 || b.P99MS <= 0 {
		t.Errorf("latency baseline: %+v", b)
	} else {
		ro, err := plat.Plane.Rollouts.Get(ctx, d.RolloutID, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := float64(time.Duration(ro.Data.Params.BaselineP99).Microseconds()) / 1000; ro.Data.BaselineP99Ms != want || math.Abs(want-b.P99MS) > 0.01 {
			t.Errorf("the cutover's baseline %.3f ms (fixed %.3f ms), the tenant's own %.3f ms", ro.Data.BaselineP99Ms, want, b.P99MS)
		}
		t.Logf("baseline: %s", b.Detail)
	}
	// The dedicated alias wants the standbys asked for: a standby lost
	// during hypercare is made again when the isolation completes.
	if a := snap.Aliases[tenant+"-ded"]; a == nil || a.Standbys != 1 {
		t.Errorf("dedicated alias: %+v, want 1 standby wanted", a)
	}
	if err := plat.Service.RemoveStandby(ctx, tenant+"-db", tenant+"-db-1"); err != nil {
		t.Fatal(err)
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
	if snap, err = plat.Store.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if c := snap.Clusters[tenant+"-db"]; c == nil || len(c.Members) != 2 {
		t.Errorf("dedicated cluster after the completion: %+v, want its primary and a standby again", c)
	}
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
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "no succeeded isolation of "+tenant+" (or of a tenant marked as its sandbox twin) is recorded in a sandbox") {
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
// isolation in every phase — after the preflight and the backup, in the
// provision and the deploy, after the smoke suite, with the rollout and the
// move started, after the cutover, the verification, the promotion and the
// standby check, in hypercare and after the completion — and lets this
// process's runner take over each time: the isolation ends completed, with
// every phase done, no failed request and the checker passing.
//
// The killed replica (a worker process) makes no cluster and deploys no
// stack (it has no local provisioner): in the provision and the deploy it
// is killed as it takes the phase over, and this process's runner, which
// has them, is cut off right after it made the cluster and the stack,
// before it could record so — the next replica finds them and reuses them.
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
	killed := crashWorkerAt(t, ctx, "isolate:preflight:done", nil)
	t.Logf("killed at isolate:preflight:done (%v ago)", time.Since(killed).Round(time.Millisecond))
	for _, c := range []struct {
		stopAt, crashAt string
		during          func()
	}{
		{"isolate:backup", "isolate:backup:done", nil},
		{"isolate:provision:done", "isolate:provision", nil},
		{"isolate:provision:done", "isolate:deploy", nil},
		{"isolate:deploy:done", "isolate:deploy", nil},
		{"isolate:deploy:done", "isolate:smoke:done", nil},
		{"isolate:cutover", "isolate:cutover:child", nil},
		{"isolate:cutover", "isolate:cutover:done", nil},
		{"isolate:replicate", "isolate:replicate:child", nil},
		{"isolate:replicate", "isolate:replicate:done", nil},
		{"isolate:promote", "isolate:promote:done", nil},
		{"isolate:standby", "isolate:standby:done", nil},
		{"isolate:hypercare", "isolate:hypercare", nil},
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
// tenant's own on the shared stack, over 1.5 × it or + 100 ms); with
// --auto-cutback the isolation takes the data and the traffic back by
// itself, with no failed request.
//
// The load's four connections make at most 13 requests a second against a
// 300 ms stack: verdicts are judged from 10 requests on. The tenant's own
// p99 under this load is 150-250 ms on a busy machine: 300 ms more fails
// 1.5 × it.
func TestIsolate_AutoCutback(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	runMoves(t)
	const tenant = "iso-auto"
	fx := newTenant(t, ctx, tenant, 100)
	// The isolation reuses a ready stack of its name: this one goes slow
	// after its first 800 requests (the smoke suites', the cutover's and
	// the replication's).
	deployStack(t, ctx, tenant+"-app", tenant, oms.Faults{Latency: 300 * time.Millisecond, After: 800})
	lr := startLoad(t, ctx, 60, fx)
	req := isolationRequest(tenant, 0)
	req.AutoCutback = true
	req.Rollout.MaxP99Ratio, req.Rollout.MinRequests = 1.5, 10
	cleanupIsolation(t, req)
	if _, err := rolloutClient().StartIsolation(ctx, req); err != nil {
		t.Fatal(err)
	}
	in := waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	t.Logf("baseline: %s", in.Data.Baseline)
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

// tenantryCLI runs the tenantry binary against this platform's API and
// returns its stdout, stderr and exit code.
func tenantryCLI(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, tenantryBin, append([]string{"--api", plat.APIURL}, args...)...)
	cmd.Env = append(os.Environ(), "TENANTRY_TOKEN="+plat.Local.State.AdminToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("tenantry %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), 0
}

// TestIsolate_Capacity: preflight weighs the tenant's size against the
// free disk where the dedicated cluster would go; with a space factor no
// disk can meet, the isolation is refused (409, CLI exit 1) with the
// figures named and nothing changed, and the dry run says why.
func TestIsolate_Capacity(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	const tenant = "iso-capacity"
	newTenant(t, ctx, tenant, 20)
	c := rolloutClient()
	req := isolationRequest(tenant, 1)
	p, err := c.PlanIsolation(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	pre := strings.Join(p.Steps[0].Checks, "; ")
	t.Logf("preflight: %s", pre)
	if !strings.Contains(pre, "capacity: tenant ") || !strings.Contains(pre, "free in "+plat.Local.ClusterDir()) {
		t.Errorf("the plan's capacity check: %s", pre)
	}
	req.SpaceFactor = 1e12
	if p, err = c.PlanIsolation(ctx, req); err != nil || !strings.Contains(strings.Join(p.Steps[0].Checks, "; "), "capacity: refused") {
		t.Errorf("plan with a space factor of 1e12: %+v %v", p, err)
	}
	_, err = c.StartIsolation(ctx, req)
	if !errors.Is(err, isolate.ErrCapacity) || !strings.Contains(err.Error(), "free in "+plat.Local.ClusterDir()) ||
		!strings.Contains(err.Error(), "the dedicated cluster wants") {
		t.Fatalf("isolation that cannot fit: %v, want the capacity refusal naming the figures", err)
	}
	t.Logf("refused: %v", err)
	_, stderr, code := tenantryCLI(t, ctx, "isolate", tenant, "--space-factor", "1e12")
	if code != 1 || !strings.Contains(stderr, "not enough capacity") {
		t.Errorf("tenantry isolate --space-factor 1e12: exit %d, %q; want exit 1 naming the reason", code, stderr)
	}
	if _, err := c.Isolation(ctx, tenant); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("an isolation was recorded after the refusal: %v", err)
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Clusters[tenant+"-db"]; ok {
		t.Error("a refused isolation made its cluster")
	}
	if _, err := c.StartIsolation(ctx, isolate.Request{Tenant: tenant, SpaceFactor: 0.5}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("space factor 0.5: %v, want invalid", err)
	}
}

// TestIsolate_Until: an isolation runs its phases one at a time: --until
// stops it after a phase (done, its checks run) with nothing of the next
// made; `isolate resume --until` runs the next ones and stops again; a
// cutback while it is stopped takes it back.
func TestIsolate_Until(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	const tenant = "iso-until"
	newTenant(t, ctx, tenant, 20)
	req := isolationRequest(tenant, 0)
	req.Until = isolate.PhasePreflight
	cleanupIsolation(t, req)
	c := rolloutClient()
	if p, err := c.PlanIsolation(ctx, req); err != nil || !strings.Contains(strings.Join(p.Steps[0].Checks, "; "), "then stops (--until)") {
		t.Errorf("the plan with --until preflight: %+v %v", p, err)
	}
	if _, err := c.StartIsolation(ctx, req); err != nil {
		t.Fatal(err)
	}
	held := func(before string) func(*isolate.Info) bool {
		return func(in *isolate.Info) bool { return in.Data.HeldBefore == before && in.Data.Current == before }
	}
	in := waitIsolation(t, ctx, tenant, held(isolate.PhaseBackup))
	logIsolation(t, in)
	phases := map[string]isolate.PhaseRecord{}
	for _, p := range in.Data.Phases {
		phases[p.Name] = p
	}
	if phases[isolate.PhasePreflight].State != isolate.StateDone || phases[isolate.PhaseBackup].State != isolate.StateWaiting ||
		phases[isolate.PhaseProvision].State != isolate.StatePending || !strings.Contains(in.Data.WaitingFor, "resume") {
		t.Fatalf("after --until preflight: %+v, waiting for %q", phases, in.Data.WaitingFor)
	}
	if !strings.Contains(phases[isolate.PhasePreflight].Detail, "free in") {
		t.Errorf("preflight ran without its capacity check: %s", phases[isolate.PhasePreflight].Detail)
	}
	if in.Data.Capacity == nil || in.Data.Capacity.TenantBytes <= 0 {
		t.Errorf("capacity recorded: %+v", in.Data.Capacity)
	}
	if in.Data.BackupDir != "" {
		t.Errorf("the backup ran before the resume: %s", in.Data.BackupDir)
	}
	if _, err := c.IsolationCommand(ctx, tenant, isolate.SignalComplete); !errors.Is(err, isolate.ErrWrongState) {
		t.Errorf("complete while held: %v", err)
	}
	if _, err := c.ResumeIsolation(ctx, tenant, "nowhere"); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("resume --until nowhere: %v", err)
	}

	// The next two phases, through the CLI; it follows until held again.
	out, stderr, code := tenantryCLI(t, ctx, "isolate", "resume", tenant, "--until", isolate.PhaseProvision)
	if code != 0 {
		t.Fatalf("isolate resume: exit %d: %s", code, stderr)
	}
	in = waitIsolation(t, ctx, tenant, held(isolate.PhaseDeploy))
	logIsolation(t, in)
	if !strings.Contains(out, "stopped after provision") {
		t.Errorf("isolate resume printed:\n%s", out)
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Clusters[tenant+"-db"]; !ok || in.Data.BackupRows == 0 {
		t.Errorf("after resume --until provision: cluster made %v, %d rows backed up", ok, in.Data.BackupRows)
	}
	if _, ok := snap.Stacks[tenant+"-app"]; ok {
		t.Error("the stack was deployed before the resume")
	}
	if _, err := c.ResumeIsolation(ctx, tenant, isolate.PhasePreflight); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("resume --until a phase already done: %v", err)
	}
	if _, err := c.IsolationCommand(ctx, tenant, isolate.SignalCutback); err != nil {
		t.Fatal(err)
	}
	in = waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false })
	logIsolation(t, in)
	if in.Status != string(workflow.StatusSucceeded) || in.Data.Outcome != "cut_back" {
		t.Errorf("cutback while held: %s (%s) %s", in.Status, in.Data.Outcome, in.Error)
	}
	wantServing(t, ctx, tenant, PooledAlias, "")
}

// TestIsolate_SandboxTwin: in production, an isolation of a tenant with
// no sandbox record is refused; marking as its sandbox twin a tenant whose
// isolation succeeded while the environment was a sandbox (`tenant set
// --sandbox-twin`, an event) lets it through, and the isolation records
// the twin.
func TestIsolate_SandboxTwin(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	runMoves(t)
	const twin, tenant = "iso-twin-rehearsal", "iso-twin"
	newTenant(t, ctx, twin, 20)
	newTenant(t, ctx, tenant, 20)
	c := rolloutClient()
	if err := c.SetEnv(ctx, isolate.EnvSandbox, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.SetEnv(context.Background(), isolate.EnvSandbox, "test") })

	// The rehearsal: the twin's isolation succeeds in the sandbox.
	rehearsal := isolationRequest(twin, 0)
	cleanupIsolation(t, rehearsal)
	if _, err := c.StartIsolation(ctx, rehearsal); err != nil {
		t.Fatal(err)
	}
	in := waitIsolation(t, ctx, twin, inHypercare)
	if _, err := c.IsolationCommand(ctx, twin, isolate.SignalComplete); err != nil {
		t.Fatal(err)
	}
	if in = waitIsolation(t, ctx, twin, func(*isolate.Info) bool { return false }); in.Data.Outcome != "completed" {
		logIsolation(t, in)
		t.Fatalf("the sandbox rehearsal: %s (%s) %s", in.Status, in.Data.Outcome, in.Error)
	}

	if err := c.SetEnv(ctx, isolate.EnvProduction, "test"); err != nil {
		t.Fatal(err)
	}
	req := isolationRequest(tenant, 0)
	req.Until = isolate.PhasePreflight
	cleanupIsolation(t, req)
	if _, err := c.StartIsolation(ctx, req); !errors.Is(err, isolate.ErrGate) {
		t.Fatalf("production isolation of %s without a twin: %v, want the gate's refusal", tenant, err)
	}
	out, stderr, code := tenantryCLI(t, ctx, "tenant", "set", tenant, "--sandbox-twin", twin)
	if code != 0 || !strings.Contains(out, "sandbox twin "+twin) {
		t.Fatalf("tenant set --sandbox-twin: exit %d, %q %q", code, out, stderr)
	}
	if _, _, code := tenantryCLI(t, ctx, "tenant", "set", tenant, "--sandbox-twin", "Bad!"); code != 2 {
		t.Errorf("tenant set --sandbox-twin Bad!: exit %d, want 2", code)
	}
	p, err := c.PlanIsolation(ctx, req)
	if err != nil || !strings.Contains(p.Gate, "passed: a succeeded sandbox isolation of "+twin) {
		t.Errorf("plan with the twin marked: %+v %v", p, err)
	}
	in, err = c.StartIsolation(ctx, req)
	if err != nil {
		t.Fatalf("production isolation of %s with its twin rehearsed: %v", tenant, err)
	}
	if in.Data.Twin != twin || in.Data.Override != nil {
		t.Errorf("isolation's gate record: twin %q, override %+v", in.Data.Twin, in.Data.Override)
	}
	evs, err := plat.Store.Events(ctx, registry.EventFilter{Subject: tenant, Kind: isolate.EventTwin})
	if err != nil || len(evs) != 1 || !strings.Contains(string(evs[0].Data), twin) {
		t.Errorf("twin events: %+v %v", evs, err)
	}
	waitIsolation(t, ctx, tenant, func(in *isolate.Info) bool { return in.Data.HeldBefore != "" })
	if _, err := c.IsolationCommand(ctx, tenant, isolate.SignalCutback); err != nil {
		t.Fatal(err)
	}
	if in = waitIsolation(t, ctx, tenant, func(*isolate.Info) bool { return false }); in.Data.Outcome != "cut_back" {
		t.Errorf("after the cutback: %s (%s) %s", in.Status, in.Data.Outcome, in.Error)
	}
}
