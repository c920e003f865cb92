package platform

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"tenantry/move"
	"tenantry/registry"
)

// TestMove_Crash kills (SIGKILL) the control-plane replica that runs a
// move at every step boundary and inside replicate, verify and the
// promotion pause, then lets another replica (this process's runner) take
// the move over: it must end consistent, resumed or rolled back and redone,
// with the tenant served throughout and every acknowledged write kept.
//
// Crashes before the promotion each get a move of their own (of one tenant,
// completed on the source after a cutback); crashes inside the pause and
// right after the flip share one move of another tenant, promoted by the
// crashing replica and cut back by the survivor, back and forth.
func TestMove_Crash(t *testing.T) {
	// Twelve crash points, each with its own one-minute bound; the whole
	// test gets room for all of them on a busy machine.
	ctx := testContext(t, 10*time.Minute)
	early := newTenant(t, ctx, "crash-early", 1000)
	for _, point := range []string{"prepared", "replicating", "replicated", "verifying", "verified"} {
		t.Run(point, func(t *testing.T) {
			ctx := testContext(t, time.Minute)
			tenant := early.target.Tenant
			lr := startLoad(t, ctx, 20, early)
			mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias, Auto: true, Force: true})
			if err != nil {
				t.Fatal(err)
			}
			killed := crashWorkerAt(t, ctx, point, nil)
			logKilled(t, ctx, mv.ID, point)
			wantServing(t, ctx, tenant, PooledAlias, "")

			runMoves(t) // the surviving replica takes the move over
			st := waitFlipped(t, ctx, mv.ID, 1, dedicatedAlias, PooledAlias, killed)
			if v := st.Data.Verify; v == nil || !v.OK {
				t.Errorf("parity: %+v", v)
			}
			if _, err := plat.Moves.Command(ctx, mv.ID, move.SignalCutback, true); err != nil {
				t.Fatalf("cutback: %v", err)
			}
			wantServing(t, ctx, tenant, PooledAlias, dedicatedAlias)
			lr.finish(t)
			lr.check(t, ctx)
			st = finishMove(t, ctx, mv.ID, move.SignalComplete)
			if n := countRows(t, ctx, dedicatedAlias, tenant, st.Data.Tables); n != 0 {
				t.Errorf("%d rows of %s left on the target after completing on the source", n, tenant)
			}
		})
	}

	flip := newTenant(t, ctx, "crash-flip", 1000)
	tenant := flip.target.Tenant
	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	plat.Runner.Start(context.Background())
	_, err = plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "ready" && i.Data.Phase == move.PhaseReady })
	plat.Runner.Stop()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ signal, point string }{
		{move.SignalPromote, "paused"},
		{move.SignalPromote, "fenced"},
		{move.SignalPromote, "applied"},
		{move.SignalPromote, "before-flip"},
		{move.SignalPromote, "flipped"},
		{move.SignalCutback, "fenced"},
		{move.SignalCutback, "flipped"},
	}
	for _, tc := range cases {
		name := tc.point
		from, to := PooledAlias, dedicatedAlias
		if tc.signal == move.SignalCutback {
			name = "cutback-" + tc.point
			from, to = to, from
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t, time.Minute)
			lr := startLoad(t, ctx, 20, flip)
			if tc.signal == move.SignalCutback {
				// The survivor promotes; the worker cuts back and dies.
				plat.Runner.Start(context.Background())
				_, err := plat.Moves.Command(ctx, mv.ID, move.SignalPromote, true)
				plat.Runner.Stop()
				if err != nil {
					t.Fatalf("promote: %v", err)
				}
			}
			before, err := plat.Moves.Get(ctx, mv.ID, false)
			if err != nil {
				t.Fatal(err)
			}
			killed := crashWorkerAt(t, ctx, tc.point, func() {
				if _, err := plat.Moves.Command(ctx, mv.ID, tc.signal, false); err != nil {
					t.Errorf("%s: %v", tc.signal, err)
				}
			})
			logKilled(t, ctx, mv.ID, tc.point)
			p := placement(t, ctx, tenant)
			switch {
			case tc.point == "flipped" && (p.State != registry.StateActive || p.Alias != to):
				t.Errorf("killed after the flip, but tenant is %s on %s", p.State, p.Alias)
			case tc.point != "flipped" && (p.State != registry.StatePaused || p.Alias != from):
				t.Errorf("killed inside the pause, but tenant is %s on %s", p.State, p.Alias)
			}

			runMoves(t)
			waitFlipped(t, ctx, mv.ID, len(before.Data.Flips)+1, to, from, killed)
			if tc.signal == move.SignalPromote {
				if _, err := plat.Moves.Command(ctx, mv.ID, move.SignalCutback, true); err != nil {
					t.Fatalf("cutback: %v", err)
				}
				wantServing(t, ctx, tenant, PooledAlias, dedicatedAlias)
			}
			lr.finish(t)
			lr.check(t, ctx)
		})
	}
	// Complete the move (cancel it when the subtests were filtered out).
	plat.Runner.Start(context.Background())
	defer plat.Runner.Stop()
	st, err := plat.Moves.Get(ctx, mv.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	end := move.SignalComplete
	if len(st.Data.Flips) == 0 {
		end = move.SignalCancel
	}
	finishMove(t, ctx, mv.ID, end)
}

// logKilled logs where the move and the tenant were when the worker died.
func logKilled(t *testing.T, ctx context.Context, id, point string) {
	t.Helper()
	at, err := plat.Moves.Get(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	p := placement(t, ctx, at.Data.Tenant)
	t.Logf("killed at %s: move at step %s (phase %s), tenant %s on %s", point, at.Step, at.Data.Phase, p.State, p.Alias)
}

// waitFlipped waits until the move has made its flips-th flip, onto to,
// and nothing is left in progress; then the tenant must be served from to
// and fenced on from.
func waitFlipped(t *testing.T, ctx context.Context, id string, flips int, to, from string, killed time.Time) *move.Info {
	t.Helper()
	st, err := plat.Moves.Wait(ctx, id, func(i *move.Info) bool {
		return i.Step == "hypercare" && len(i.Data.Flips) == flips && i.Data.Flip == nil
	})
	if err != nil {
		t.Fatalf("resume after the crash: %v", err)
	}
	f := st.Data.Flips[flips-1]
	t.Logf("%s to %s done %v after the kill; pause of the flip that held %.1f ms",
		f.Kind, f.To, time.Since(killed).Round(time.Millisecond), f.PauseMS)
	if f.To != to {
		t.Errorf("flip %d went to %s, want %s", flips, f.To, to)
	}
	wantServing(t, ctx, st.Data.Tenant, to, from)
	return st
}

// crashWorkerAt runs a move worker in a child process (this test binary,
// see runWorker), calls started (if not nil), waits until the worker
// reaches hook point, kills it with SIGKILL and returns when.
func crashWorkerAt(t *testing.T, ctx context.Context, point string, started func()) time.Time {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "crashed")
	cmd := exec.Command(testBin, "-test.run=^$")
	cmd.Env = append(os.Environ(), envWorker+"="+plat.Local.Dir, envCrashAt+"="+point, envMarker+"="+marker)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if started != nil {
		started()
	}
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("worker exited before reaching %s: %v\nworker output:\n%s", point, err, out.String())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("worker reaching %s: %v\nworker output:\n%s", point, ctx.Err(), out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	when := time.Now()
	<-exited
	return when
}
