package e2e

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"tenantry/load"
	"tenantry/platform"
	"tenantry/registry"
)

// runLoad sets up the tenants' catalogs and runs load against the gateway
// in the background, recording the ledger. act runs meanwhile with the
// run's progress; done is closed when the run has ended.
func runLoad(t *testing.T, targets []load.Target, d time.Duration, rate float64,
	act func(p *progress, done <-chan struct{}, stop func())) (load.Summary, []byte) {
	t.Helper()
	ctx := testContext(t)
	stopc := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(stopc) }) }
	var ledger bytes.Buffer
	cfg := load.Config{BaseURL: plat.GatewayURL, Targets: targets, Rate: rate, Concurrency: 8,
		Duration: d, Stop: stopc, Ledger: &ledger, Seed: time.Now().UnixNano()}
	cat, err := load.Setup(ctx, cfg, load.SetupOptions{Products: 4, Locations: 2, Stock: 100000})
	if err != nil {
		t.Fatalf("load setup: %v", err)
	}
	p := newProgress()
	done := make(chan struct{})
	acted := make(chan struct{})
	go func() {
		defer close(acted)
		act(p, done, stop)
	}()
	sum, err := load.Run(ctx, cfg, cat, p.report)
	close(done)
	<-acted
	if err != nil {
		t.Fatalf("load run: %v", err)
	}
	t.Logf("load: %d requests, %d acknowledged, %d retries, %d failures %v, %.0f req/s, p99 %v, longest stall %v",
		sum.Requests, sum.Acknowledged, sum.Retries, sum.Failures, sum.FailuresByCode, sum.Throughput,
		sum.Latency.P99, sum.LongestStall)
	return sum, ledger.Bytes()
}

// TestRouteChangeUnderLoad moves one tenant's route, then the default
// route, from the shared stack to another and back while two tenants are
// under load: no request fails, nothing acknowledged is lost or doubled, and
// both stacks served both tenants.
func TestRouteChangeUnderLoad(t *testing.T) {
	ctx := testContext(t)
	a, b := newTenant(t, "e2e-route-a"), newTenant(t, "e2e-route-b")
	deployStack(t, "green", 2)
	if err := syncGateway(ctx); err != nil {
		t.Fatal(err)
	}
	targets := []load.Target{a, b}
	if err := waitServed(ctx, targets, platform.SharedStack, "green"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave the default route as the platform had it, whatever happened.
		if err := setRoute(context.Background(), registry.DefaultRoute, platform.SharedStack); err != nil {
			t.Error(err)
		}
	})
	before := readGatewayCounts(t)

	// Each switch waits for another stepAcks acknowledged requests, so that
	// traffic flows on every route in between.
	const stepAcks = 60
	switches := []struct{ tenant, stack string }{
		{a.Tenant, "green"},
		{registry.DefaultRoute, "green"},
		{registry.DefaultRoute, platform.SharedStack},
		{a.Tenant, platform.SharedStack},
	}
	var switched int
	var switchErr error
	// The run lasts until every switch is done and stepAcks more requests
	// were acknowledged after the last (at most a minute on a slow machine).
	sum, ledger := runLoad(t, targets, time.Minute, 150, func(p *progress, done <-chan struct{}, stop func()) {
		var acked int64
		for _, sw := range switches {
			s, ok := p.waitAcks(acked+stepAcks, done)
			if !ok {
				return
			}
			acked = s.Acknowledged
			if switchErr = setRoute(ctx, sw.tenant, sw.stack); switchErr != nil {
				return
			}
			switched++
		}
		if _, ok := p.waitAcks(acked+stepAcks, done); ok {
			stop()
		}
	})
	if switchErr != nil {
		t.Fatal(switchErr)
	}
	if switched != len(switches) {
		t.Fatalf("only %d of %d route switches happened during the run (too slow a run?)", switched, len(switches))
	}
	if sum.Failures != 0 {
		t.Errorf("%d requests failed during route changes: %v", sum.Failures, sum.FailuresByCode)
	}
	if sum.Interrupted != 0 {
		t.Errorf("%d requests interrupted", sum.Interrupted)
	}
	rep := checkLedger(t, ledger)
	if rep.Orders == 0 {
		t.Error("the ledger has no acknowledged orders")
	}

	d := readGatewayCounts(t).since(before)
	for _, tenant := range []string{a.Tenant, b.Tenant} {
		for _, st := range []string{platform.SharedStack, "green"} {
			if n := d.requests[[2]string{st, tenant}]; n == 0 {
				t.Errorf("stack %s served no request of tenant %s (gateway counts %v)", st, tenant, d.requests)
			}
			if n := d.errors[[2]string{st, tenant}]; n != 0 {
				t.Errorf("stack %s answered %v requests of tenant %s with 5xx", st, n, tenant)
			}
		}
	}
	t.Logf("gateway requests by stack and tenant during the run: %v", d.requests)
}

// TestKillInstanceUnderLoad SIGKILLs one instance of a two-instance stack
// while its tenant is under unpaced load. Requests in flight at the victim
// are either replayed by the gateway's transport (every write carries an
// Idempotency-Key, and a connection that never answered is replayed; the
// replay's dial fails and moves to the other instance) or answered 502 and
// retried by the client with the same key, as a real client does: no
// request fails in the end, nothing acknowledged is lost or doubled. The
// registry records the dead instance unhealthy and the stack is not
// restarted behind the operator's back.
func TestKillInstanceUnderLoad(t *testing.T) {
	ctx := testContext(t)
	tg := newTenant(t, "e2e-kill-a")
	deployStack(t, "kill", 2)
	if err := setRoute(ctx, tg.Tenant, "kill"); err != nil {
		t.Fatal(err)
	}
	if err := waitServed(ctx, []load.Target{tg}, "kill"); err != nil {
		t.Fatal(err)
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deployed := snap.Stacks["kill"].Instances
	if len(deployed) != 2 || deployed[0].PID == 0 || deployed[1].PID == 0 {
		t.Fatalf("stack kill instances %+v, want two with PIDs", deployed)
	}
	victim, survivor := deployed[0], deployed[1]
	before := readGatewayCounts(t)

	var atKill load.Stats
	var killErr error
	// Unpaced, so that requests are in flight at the victim when it dies.
	// The run lasts until 300 more requests are acknowledged after the kill
	// (at most a minute on a slow machine).
	sum, ledger := runLoad(t, []load.Target{tg}, time.Minute, 0, func(p *progress, done <-chan struct{}, stop func()) {
		s, ok := p.waitAcks(300, done)
		if !ok {
			killErr = errors.New("the run ended before the kill")
			return
		}
		atKill = s
		if killErr = syscall.Kill(victim.PID, syscall.SIGKILL); killErr != nil {
			return
		}
		if _, ok := p.waitAcks(s.Acknowledged+300, done); ok {
			stop()
		}
	})
	if killErr != nil {
		t.Fatalf("kill instance %d: %v", victim.PID, killErr)
	}
	if sum.Failures != 0 {
		t.Errorf("%d requests failed after retries: %v", sum.Failures, sum.FailuresByCode)
	}
	if after := sum.Acknowledged - atKill.Acknowledged; after < 300 {
		t.Errorf("only %d requests acknowledged after the kill", after)
	}
	checkLedger(t, ledger)

	var st *registry.Stack
	err = poll(ctx, "the dead instance recorded unhealthy", func() (bool, error) {
		snap, err := plat.Store.Snapshot(ctx)
		if err != nil {
			return false, err
		}
		st = snap.Stacks["kill"]
		for _, in := range st.Instances {
			if in.PID == victim.PID {
				return !in.Healthy, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != registry.StackReady || len(st.Instances) != 2 {
		t.Errorf("stack after the kill: status %s, %d instances; want ready with the same 2", st.Status, len(st.Instances))
	}
	for _, in := range st.Instances {
		switch in.PID {
		case victim.PID:
			if in.URL != victim.URL {
				t.Errorf("dead instance's URL changed from %s to %s", victim.URL, in.URL)
			}
		case survivor.PID:
			if !in.Healthy || in.URL != survivor.URL {
				t.Errorf("surviving instance %+v, want healthy at %s", in, survivor.URL)
			}
		default:
			t.Errorf("instance %+v appeared after the kill: the stack was restarted silently", in)
		}
	}
	if err := syscall.Kill(victim.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killed instance %d: signal 0 gives %v, want ESRCH (it was restarted or not reaped)", victim.PID, err)
	}
	d := readGatewayCounts(t).since(before)
	k := [2]string{"kill", tg.Tenant}
	if n := d.requests[k]; n < float64(sum.Acknowledged) {
		t.Errorf("stack kill served %v requests of %s, want at least the %d acknowledged", n, tg.Tenant, sum.Acknowledged)
	}
	// Every 5xx the gateway answered (a request cut off by the kill) was
	// retried by the client.
	if n := d.errors[k]; n > float64(sum.Retries) {
		t.Errorf("gateway answered %v requests with 5xx but the client retried only %d", n, sum.Retries)
	}
	t.Logf("gateway during the run: requests %v, 5xx %v", d.requests, d.errors)
}
