package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"tenantry/platform"
	"tenantry/registry"
	"tenantry/workflow"
)

// TestUp_Kill9Switchover kills `tenantry up` (SIGKILL) in the middle of a
// switchover of the pooled cluster, under load of the sample tenant, on a
// platform of its own for each failpoint: with the tenants paused and the
// old primary stopped, before the standby is promoted
// (move:switchover:stopped); with the standby promoted, before the tenants
// are resumed on it (move:switchover:promoted). The restarted `up` resumes
// the switchover from its record and finishes it: the new primary named,
// the tenants active on it, the old primary rejoined as its standby; no
// request fails.
func TestUp_Kill9Switchover(t *testing.T) {
	for _, at := range []string{"stopped", "promoted"} {
		t.Run(at, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			file, env := failpoint(t, "switchover:"+at)
			up, dir, st, c := upAt(t, ctx, "up-kill9-switchover-"+at, env...)
			ld := startSampleLoad(t, ctx, st, 30, 2*time.Minute)
			ld.acks(t, 30)
			if cs, err := c.WaitFollows(ctx, platform.PooledCluster, ""); err != nil {
				t.Fatalf("%v; status %+v", err, cs)
			}
			in, err := c.Switchover(ctx, platform.PooledCluster, "")
			if err != nil {
				t.Fatal(err)
			}
			killAtFailpoint(t, ctx, file, up, func() error {
				cur, err := c.SwitchoverInfo(ctx, in.ID)
				if err == nil && cur.Status != workflow.StatusRunning {
					return fmt.Errorf("switchover %s at %s: %s", cur.Status, cur.Step, cur.Error)
				}
				return nil
			})
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
			ld.acks(t, 60) // served from the new primary
			s := ld.end(t)
			t.Logf("load: %d requests, %d acknowledged, %d failed %v, longest stall %v",
				s.Requests, s.Acknowledged, s.Failures, s.FailuresByCode, time.Duration(s.LongestStall))
			if s.Failures != 0 {
				t.Errorf("%d requests failed across the kill: %v", s.Failures, s.FailuresByCode)
			}
			stopUp(t, ctx, up)
		})
	}
}
