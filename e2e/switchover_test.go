package e2e

import (
	"context"
	"testing"
	"time"

	"tenantry/platform"
	"tenantry/registry"
	"tenantry/workflow"
)

// TestUp_Kill9Switchover kills `tenantry up` (SIGKILL) in the middle of two
// switchovers of the pooled cluster, under load of the sample tenant: in the
// first with the tenants paused and the old primary stopped, before the
// standby is promoted (failpoint move:switchover:stopped); in the second,
// back to the first primary, with the standby promoted, before the tenants
// are resumed on it (move:switchover:promoted). Each restarted `up` resumes
// the switchover from its record and finishes it: the new primary named,
// the tenants active on it, the old primary rejoined as its standby; no
// request fails.
func TestUp_Kill9Switchover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	file, env := failpoint(t, "switchover:stopped")
	up, dir, st, c := upAt(t, ctx, "up-kill9-switchover", env...)
	ld := startSampleLoad(t, ctx, st, 30, 4*time.Minute)
	ld.acks(t, 30)

	acked := int64(30)
	for i, at := range []string{"stopped", "promoted"} {
		if i > 0 {
			// A plain kill -9 (the load goes on), then an `up` with the
			// next failpoint.
			if err := up.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-up.exited
			file, env = failpoint(t, "switchover:"+at)
			up = startUp(t, ctx, dir, env...)
		}
		// A switchover wants a streaming standby; a platform just started
		// (again) may not have one yet.
		if cs, err := c.WaitFollows(ctx, platform.PooledCluster, ""); err != nil {
			t.Fatalf("%v; status %+v", err, cs)
		}
		in, err := c.Switchover(ctx, platform.PooledCluster, "")
		if err != nil {
			t.Fatal(err)
		}
		killAtFailpoint(t, ctx, file, up)
		killed := time.Now()
		up = startUp(t, ctx, dir)
		err = poll(ctx, "switchover's end", func() (bool, error) {
			in, err = c.SwitchoverInfo(ctx, in.ID)
			return err == nil && in.Status != workflow.StatusRunning, err
		})
		if err != nil {
			t.Fatal(err)
		}
		if in.Status != workflow.StatusSucceeded || !in.Data.Promoted || !in.Data.Rejoined {
			t.Fatalf("switchover killed at %s: %s at %s (promoted %v, rejoined %v): %s",
				at, in.Status, in.Step, in.Data.Promoted, in.Data.Rejoined, in.Error)
		}
		t.Logf("killed at %s (%s -> %s); the restarted up finished the switchover %.1f s later, tenants paused %.1f ms in all",
			at, in.Data.From, in.Data.To, time.Since(killed).Seconds(), in.Data.PauseMS)
		if cs, err := c.WaitFollows(ctx, platform.PooledCluster, in.Data.To); err != nil {
			t.Fatalf("%v; status %+v", err, cs)
		}
		ten, err := c.Tenant(ctx, platform.SampleTenant)
		if err != nil || ten.State != registry.StateActive {
			t.Errorf("sample tenant after the switchover: %+v %v, want active", ten, err)
		}
		acked += 30
		ld.acks(t, acked) // served from the new primary
	}
	s := ld.end(t)
	t.Logf("load: %d requests, %d acknowledged, %d failed %v, longest stall %v",
		s.Requests, s.Acknowledged, s.Failures, s.FailuresByCode, time.Duration(s.LongestStall))
	if s.Failures != 0 {
		t.Errorf("%d requests failed across the kills: %v", s.Failures, s.FailuresByCode)
	}
	stopUp(t, ctx, up)
}
