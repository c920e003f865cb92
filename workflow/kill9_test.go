package workflow_test

import (
	"context"
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
	rn, err := workflow.NewRunner(pool, workflow.Config{Owner: "child", LeaseTTL: time.Second, PollInterval: 50 * time.Millisecond}, killDef(pool))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	rn.Start(ctx)
	select {}
}

func TestRunner_ResumesAfterKill9(t *testing.T) {
	ctx := context.Background()
	pool, dsn := mustControlDB(t)
	parent := mustRunner(t, pool, workflow.Config{Owner: "parent", LeaseTTL: time.Second}, killDef(pool))
	id, err := parent.Create(ctx, "killed", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+dsn)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	waitFor(t, func() bool {
		return count(t, pool, "SELECT count(*) FROM runs WHERE workflow = $1 AND step = 'two'", id) == 1
	})
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
