package workflow_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/workflow"
)

// killDef is the workflow the kill -9 test runs in a child process and then
// resumes in the parent. In the child, step two records its effect and then
// hangs until the process is killed.
func killDef(pool *pgxpool.Pool) *workflow.Def {
	return &workflow.Def{Kind: "killed", Start: "one", Steps: map[string]workflow.Step{
		"one": effectStep(pool, "one", "two"),
		"two": func(ctx context.Context, r *workflow.Run) (string, error) {
			if _, err := effectStep(pool, "two", "")(ctx, r); err != nil {
				return "", err
			}
			if os.Getenv(childEnv) != "" {
				<-ctx.Done()
				return "", ctx.Err()
			}
			return "three", nil
		},
		"three": effectStep(pool, "three", ""),
	}}
}

// runChild runs a runner in this (child) process until it is killed.
func runChild(dsn string) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	ttl := time.Second
	if os.Getenv(childLongLeaseEnv) != "" {
		ttl = 10 * time.Minute
	}
	rn, err := workflow.NewRunner(pool, workflow.Config{Owner: "child", LeaseTTL: ttl, PollInterval: 50 * time.Millisecond}, killDef(pool))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	rn.Start(ctx)
	select {}
}

// childLongLeaseEnv makes the child's lease last ten minutes, so that only
// its liveness session can tell the parent it died.
const childLongLeaseEnv = "WORKFLOW_TEST_CHILD_LONG_LEASE"

// startChild runs a runner in a child process (see runChild) and waits until
// it is inside step two of workflow id.
func startChild(t *testing.T, pool *pgxpool.Pool, dsn, id string, env ...string) *exec.Cmd {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(append(os.Environ(), childEnv+"="+dsn), env...)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	waitFor(t, func() bool {
		return count(t, pool, "SELECT count(*) FROM runs WHERE workflow = $1 AND step = 'two'", id) == 1
	})
	return child
}

// TestRunner_TakesOverDeadRunnerBeforeLeaseExpiry: a runner killed with
// SIGKILL loses its liveness session with its process, and another runner
// claims its workflow at once, long before the dead one's lease would
// expire.
func TestRunner_TakesOverDeadRunnerBeforeLeaseExpiry(t *testing.T) {
	ctx := context.Background()
	pool, dsn := mustControlDB(t)
	parent := mustRunner(t, pool, workflow.Config{Owner: "parent", LeaseTTL: time.Second}, killDef(pool))
	id, err := parent.Create(ctx, "killed", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, pool, dsn, id, childLongLeaseEnv+"=1")
	// While the child lives, its lease holds.
	if _, err := parent.Claim(ctx, id); !errors.Is(err, workflow.ErrLeaseHeld) {
		t.Fatalf("claim while the owner lives: %v, want ErrLeaseHeld", err)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	expires := status(t, parent, id).LeaseExpires
	tickUntil(t, parent, func() bool { return status(t, parent, id).Status == workflow.StatusSucceeded })
	var beforeExpiry bool
	if err := pool.QueryRow(ctx, "SELECT now() < $1", expires).Scan(&beforeExpiry); err != nil {
		t.Fatal(err)
	}
	if !beforeExpiry {
		t.Fatalf("taken over only after the dead runner's lease expired (%v)", expires)
	}
	if got := count(t, pool, "SELECT count(*) FROM effects WHERE workflow = $1", id); got != 3 {
		t.Fatalf("effects = %d, want 3 (each step once)", got)
	}
}

func TestRunner_ResumesAfterKill9(t *testing.T) {
	ctx := context.Background()
	pool, dsn := mustControlDB(t)
	parent := mustRunner(t, pool, workflow.Config{Owner: "parent", LeaseTTL: time.Second}, killDef(pool))
	id, err := parent.Create(ctx, "killed", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, pool, dsn, id)
	if err := child.Process.Kill(); err != nil { // SIGKILL mid-step
		t.Fatal(err)
	}
	_ = child.Wait()
	if w := status(t, parent, id); w.LeaseOwner != "child" || w.Step != "two" {
		t.Fatalf("after kill: %+v", w)
	}

	tickUntil(t, parent, func() bool { return status(t, parent, id).Status == workflow.StatusSucceeded })
	for step, runs := range map[string]int{"one": 1, "two": 2, "three": 1} {
		if got := count(t, pool, "SELECT count(*) FROM runs WHERE workflow = $1 AND step = $2", id, step); got != runs {
			t.Errorf("step %s ran %d times, want %d", step, got, runs)
		}
		if got := count(t, pool, "SELECT count(*) FROM effects WHERE workflow = $1 AND step = $2", id, step); got != 1 {
			t.Errorf("step %s effect applied %d times, want once", step, got)
		}
	}
	want := "[started one finished one started two started two finished two started three finished three]"
	if got := fmt.Sprint(eventLog(t, parent, id)); got != want {
		t.Fatalf("events = %s\nwant %s", got, want)
	}
}
