package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"tenantry/isolate"
	"tenantry/platform"
	"tenantry/rollout"
	"tenantry/workflow"
)

// TestUp_Kill9Isolate kills `tenantry up` (SIGKILL) in the middle of an
// isolation of its sample tenant, under load: once in the provision, after
// it made the dedicated cluster and alias and before it could record so,
// and once in the deploy, after it started the dedicated stack's instances
// and before it could record so (failpoints, TENANTRY_FAILPOINT). Each
// restarted `up` resumes the isolation, which finds the cluster and the
// stack and reuses them; it ends completed, the tenant served by its
// dedicated stack, and no request failed.
func TestUp_Kill9Isolate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	file, env := failpoint(t, "isolate:"+isolate.PhaseProvision+":done")
	up, dir, st, c := upAt(t, ctx, "up-kill9-isolate", env...)

	ld := startSampleLoad(t, ctx, st, 30, 5*time.Minute)

	zero := 0
	req := isolate.Request{Tenant: platform.SampleTenant, Standbys: &zero, Hypercare: isolate.Duration(time.Hour),
		Rollout: rollout.Params{Interval: rollout.Duration(time.Second), Grace: rollout.Duration(2 * time.Second),
			MaxP99Ratio: 3, MinP99Delta: rollout.Duration(100 * time.Millisecond)}}
	if _, err := c.StartIsolation(ctx, req); err != nil {
		t.Fatal(err)
	}
	killAtFailpoint(t, ctx, file, up, nil)
	t.Logf("killed in the provision")

	file, env = failpoint(t, "isolate:"+isolate.PhaseDeploy+":done")
	up = startUp(t, ctx, dir, env...)
	killAtFailpoint(t, ctx, file, up, nil)
	t.Logf("killed in the deploy")

	up = startUp(t, ctx, dir)
	var (
		in  *isolate.Info
		err error
	)
	err = poll(ctx, "isolation in hypercare", func() (bool, error) {
		in, err = c.Isolation(ctx, platform.SampleTenant)
		return err == nil && (in.Step == isolate.PhaseHypercare && in.Data.WaitingFor != "" || in.Status != string(workflow.StatusRunning)), err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ph := range in.Data.Phases {
		t.Logf("phase %-10s %-8s %6.2fs %s", ph.Name, ph.State, ph.Seconds, ph.Detail)
	}
	if in.Status != string(workflow.StatusRunning) {
		t.Fatalf("isolation ended %s before hypercare: %s %s", in.Status, in.Data.Reason, in.Error)
	}
	if _, err := c.IsolationCommand(ctx, platform.SampleTenant, isolate.SignalComplete); err != nil {
		t.Fatal(err)
	}
	err = poll(ctx, "isolation's end", func() (bool, error) {
		in, err = c.Isolation(ctx, platform.SampleTenant)
		return err == nil && in.Status != string(workflow.StatusRunning), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if in.Data.Outcome != "completed" {
		t.Fatalf("isolation after the kills: %s (%s) %s %s", in.Status, in.Data.Outcome, in.Data.Reason, in.Error)
	}
	for _, ph := range in.Data.Phases {
		if ph.State != isolate.StateDone {
			t.Errorf("phase %s is %s", ph.Name, ph.State)
		}
	}
	s := ld.end(t)
	t.Logf("load: %d requests, %d acknowledged, %d failed %v", s.Requests, s.Acknowledged, s.Failures, s.FailuresByCode)
	if s.Failures != 0 {
		t.Errorf("%d requests failed across the kills: %v", s.Failures, s.FailuresByCode)
	}
	ten, err := c.Tenant(ctx, platform.SampleTenant)
	if err != nil || ten.Alias != platform.SampleTenant+"-ded" {
		t.Errorf("tenant after the isolation: %+v %v", ten, err)
	}
	stopUp(t, ctx, up)
}

// killAtFailpoint waits until up has reached its failpoint (file exists)
// and kills it (SIGKILL). ended, if not nil, is asked meanwhile whether the
// work that should reach the failpoint ended without it (a non-nil error
// saying how), which fails the test at once.
func killAtFailpoint(t *testing.T, ctx context.Context, file string, up *upProc, ended func() error) {
	t.Helper()
	err := poll(ctx, "failpoint "+file, func() (bool, error) {
		select {
		case <-up.exited:
			t.Fatalf("tenantry up exited before its failpoint")
		default:
		}
		if _, err := os.Stat(file); err == nil {
			return true, nil
		}
		if ended != nil {
			if err := ended(); err != nil {
				t.Fatalf("before the failpoint %s: %v", file, err)
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.exited
}
