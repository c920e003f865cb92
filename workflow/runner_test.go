package workflow_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/pgtest"
	"tenantry/workflow"
)

const childEnv = "WORKFLOW_TEST_CHILD_DSN"

func TestMain(m *testing.M) {
	if dsn := os.Getenv(childEnv); dsn != "" {
		runChild(dsn) // never returns: the parent kills it
	}
	pgtest.Main(m)
}

// mustControlDB returns a pool to a fresh migrated control database with a
// side-effect table steps write to.
func mustControlDB(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	c := pgtest.MustCluster(t)
	db := pgtest.MustDB(t)
	pool := pgtest.MustPool(t, c, db)
	ctx := context.Background()
	for range 2 { // idempotent
		if err := workflow.Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `
CREATE TABLE effects (workflow text, step text, PRIMARY KEY (workflow, step));
CREATE TABLE runs (id bigserial, workflow text, step text, runner text, generation bigint,
  started timestamptz DEFAULT clock_timestamp(), ended timestamptz)`); err != nil {
		t.Fatal(err)
	}
	return pool, c.DSN(db)
}

func mustRunner(t *testing.T, pool *pgxpool.Pool, cfg workflow.Config, defs ...*workflow.Def) *workflow.Runner {
	t.Helper()
	rn, err := workflow.NewRunner(pool, cfg, defs...)
	if err != nil {
		t.Fatal(err)
	}
	return rn
}

// effectStep records the step's side effect idempotently and its run.
func effectStep(pool *pgxpool.Pool, name, next string) workflow.Step {
	return func(ctx context.Context, r *workflow.Run) (string, error) {
		if _, err := pool.Exec(ctx, `INSERT INTO runs (workflow, step, runner, generation) VALUES ($1, $2, $3, $4)`,
			r.ID, name, fmt.Sprint(os.Getpid()), r.Generation()); err != nil {
			return "", err
		}
		if _, err := pool.Exec(ctx, `INSERT INTO effects VALUES ($1, $2) ON CONFLICT DO NOTHING`, r.ID, name); err != nil {
			return "", err
		}
		return next, nil
	}
}

// tickUntil steps rn until cond holds, failing the test after 20 s.
func tickUntil(t *testing.T, rn *workflow.Runner, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 20s")
		}
		if _, err := rn.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func status(t *testing.T, rn *workflow.Runner, id string) *workflow.Workflow {
	t.Helper()
	w, err := rn.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func eventLog(t *testing.T, rn *workflow.Runner, id string) []string {
	t.Helper()
	evs, err := rn.Events(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind+" "+e.Step)
	}
	return out
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRunner_RunsToCompletion(t *testing.T) {
	ctx := context.Background()
	pool, _ := mustControlDB(t)
	type data struct{ Seen []string }
	step := func(name, next string) workflow.Step {
		return func(ctx context.Context, r *workflow.Run) (string, error) {
			var d data
			if err := r.Decode(&d); err != nil {
				return "", err
			}
			d.Seen = append(d.Seen, name)
			if err := r.Encode(d); err != nil {
				return "", err
			}
			if err := r.Progress(ctx, map[string]int{"rows": 1}); err != nil {
				return "", err
			}
			return next, r.Save(ctx)
		}
	}
	def := &workflow.Def{Kind: "three", Start: "a", Steps: map[string]workflow.Step{
		"a": step("a", "b"), "b": step("b", "c"), "c": step("c", "")}}
	rn := mustRunner(t, pool, workflow.Config{}, def)
	id, err := rn.Create(ctx, "three", "acme", data{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := rn.Tick(ctx); err != nil || n != 1 {
		t.Fatalf("Tick = %d, %v", n, err)
	}
	w := status(t, rn, id)
	if w.Status != workflow.StatusSucceeded || w.LeaseOwner != "" {
		t.Fatalf("workflow = %+v", w)
	}
	var d data
	if err := (&workflow.Run{Data: w.Data}).Decode(&d); err != nil || fmt.Sprint(d.Seen) != "[a b c]" {
		t.Fatalf("data = %s (%v)", w.Data, err)
	}
	want := "[started a progress a finished a started b progress b finished b started c progress c finished c]"
	if got := fmt.Sprint(eventLog(t, rn, id)); got != want {
		t.Fatalf("events = %s\nwant %s", got, want)
	}
	evs, _ := rn.Events(ctx, id, 0)
	if after, _ := rn.Events(ctx, id, evs[2].ID); len(after) != len(evs)-3 {
		t.Fatalf("Events after %d = %d events", evs[2].ID, len(after))
	}
	if ws, err := rn.List(ctx, workflow.Filter{Subject: "acme", Status: workflow.StatusSucceeded}); err != nil || len(ws) != 1 || ws[0].ID != id {
		t.Fatalf("List = %v, %v", ws, err)
	}
}

func TestRunner_ResumesAfterCrash(t *testing.T) {
	ctx := context.Background()
	pool, _ := mustControlDB(t)
	entered := make(chan struct{}, 1)
	def := func() *workflow.Def {
		return &workflow.Def{Kind: "crash", Start: "one", Steps: map[string]workflow.Step{
			"one": effectStep(pool, "one", "two"),
			"two": func(ctx context.Context, r *workflow.Run) (string, error) {
				if _, err := effectStep(pool, "two", "")(ctx, r); err != nil {
					return "", err
				}
				if r.Attempt == 1 { // the first runner "crashes" here
					entered <- struct{}{}
					<-ctx.Done()
					return "", ctx.Err()
				}
				return "three", nil
			},
			"three": effectStep(pool, "three", ""),
		}}
	}
	a := mustRunner(t, pool, workflow.Config{Owner: "a", LeaseTTL: time.Second}, def())
	id, err := a.Create(ctx, "crash", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	crashCtx, crash := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := a.Tick(crashCtx)
		if err != nil {
			t.Error(err)
			entered <- struct{}{}
		}
		done <- err
	}()
	<-entered
	crash() // no cleanup: a's lease stays until it expires
	<-done

	b := mustRunner(t, pool, workflow.Config{Owner: "b", LeaseTTL: time.Second}, def())
	if _, err := b.Claim(ctx, id); !errors.Is(err, workflow.ErrLeaseHeld) {
		t.Fatalf("claim while a's lease is live: %v, want ErrLeaseHeld", err)
	}
	tickUntil(t, b, func() bool { return status(t, b, id).Status == workflow.StatusSucceeded })

	if got := count(t, pool, "SELECT count(*) FROM effects WHERE workflow = $1", id); got != 3 {
		t.Fatalf("effects = %d, want 3", got)
	}
	if got := count(t, pool, "SELECT count(*) FROM runs WHERE workflow = $1 AND step = 'two'", id); got != 2 {
		t.Fatalf("step two ran %d times, want 2 (interrupted, then resumed)", got)
	}
	if got := count(t, pool, "SELECT count(*) FROM runs WHERE workflow = $1 AND step <> 'two'", id); got != 2 {
		t.Fatalf("steps one and three ran %d times, want 2", got)
	}
	want := "[started one finished one started two started two finished two started three finished three]"
	if got := fmt.Sprint(eventLog(t, b, id)); got != want {
		t.Fatalf("events = %s\nwant %s", got, want)
	}
}

func TestRunner_StaleWriterFenced(t *testing.T) {
	ctx := context.Background()
	pool, _ := mustControlDB(t)
	takenOver := make(chan struct{})
	entered := make(chan string, 1)
	saveErr := make(chan error, 1)
	def := &workflow.Def{Kind: "fence", Start: "s", Steps: map[string]workflow.Step{
		"s": func(ctx context.Context, r *workflow.Run) (string, error) {
			entered <- r.ID
			<-takenOver
			err := r.Save(context.WithoutCancel(ctx))
			saveErr <- err
			return "", err
		}}}
	// A long TTL so that a's renewals do not run during the test.
	a := mustRunner(t, pool, workflow.Config{Owner: "a", LeaseTTL: time.Hour}, def)
	id, err := a.Create(ctx, "fence", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = a.Tick(ctx) }()
	<-entered
	b := mustRunner(t, pool, workflow.Config{Owner: "b", LeaseTTL: time.Hour}, def)
	if _, err := b.Claim(ctx, id); !errors.Is(err, workflow.ErrLeaseHeld) {
		t.Fatalf("b claims a live lease: %v", err)
	}
	if _, err := pool.Exec(ctx, "UPDATE workflows SET lease_expires = now() - interval '1 second' WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, id); err != nil {
		t.Fatalf("b claims an expired lease: %v", err)
	}
	close(takenOver)
	if err := <-saveErr; !errors.Is(err, workflow.ErrLeaseLost) {
		t.Fatalf("stale save = %v, want ErrLeaseLost", err)
	}
	w := status(t, b, id)
	if w.LeaseOwner != "b" || w.Status != workflow.StatusRunning || w.Step != "s" {
		t.Fatalf("after a's stale write: %+v", w)
	}
}

func TestRunner_TwoRunnersNeverOverlap(t *testing.T) {
	ctx := context.Background()
	pool, _ := mustControlDB(t)
	mkDef := func(owner string) *workflow.Def {
		s := func(name, next string) workflow.Step {
			return func(ctx context.Context, r *workflow.Run) (string, error) {
				var id int64
				if err := pool.QueryRow(ctx, `INSERT INTO runs (workflow, step, runner, generation) VALUES ($1, $2, $3, $4) RETURNING id`,
					r.ID, name, owner, r.Generation()).Scan(&id); err != nil {
					return "", err
				}
				if _, err := pool.Exec(ctx, `UPDATE runs SET ended = clock_timestamp() FROM pg_sleep(0.005) WHERE id = $1`, id); err != nil {
					return "", err
				}
				return next, nil
			}
		}
		return &workflow.Def{Kind: "pair", Start: "a", Steps: map[string]workflow.Step{"a": s("a", "b"), "b": s("b", "c"), "c": s("c", "")}}
	}
	a := mustRunner(t, pool, workflow.Config{Owner: "a", MaxConcurrent: 3}, mkDef("a"))
	b := mustRunner(t, pool, workflow.Config{Owner: "b", MaxConcurrent: 3}, mkDef("b"))
	const n = 12
	for i := range n {
		if _, err := a.Create(ctx, "pair", fmt.Sprintf("t%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	allDone := func() bool {
		return count(t, pool, "SELECT count(*) FROM workflows WHERE status = 'succeeded'") == n
	}
	var wg sync.WaitGroup
	for _, rn := range []*workflow.Runner{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(20 * time.Second)
			for !allDone() && time.Now().Before(deadline) {
				if _, err := rn.Tick(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if !allDone() {
		ws, _ := a.List(ctx, workflow.Filter{})
		t.Fatalf("workflows did not all succeed: %+v", ws)
	}
	if got := count(t, pool, "SELECT count(*) FROM runs"); got != 3*n {
		t.Fatalf("step runs = %d, want %d (each step exactly once)", got, 3*n)
	}
	overlaps := count(t, pool, `SELECT count(*) FROM runs x JOIN runs y ON x.workflow = y.workflow AND x.id < y.id
		WHERE tstzrange(x.started, x.ended) && tstzrange(y.started, y.ended)`)
	if overlaps != 0 {
		t.Fatalf("%d overlapping step runs on one workflow", overlaps)
	}
	t.Logf("runs by runner a: %d, b: %d", count(t, pool, "SELECT count(*) FROM runs WHERE runner = 'a'"),
		count(t, pool, "SELECT count(*) FROM runs WHERE runner = 'b'"))
}

func TestRunner_FailureRollsBack(t *testing.T) {
	ctx := context.Background()
	pool, _ := mustControlDB(t)
	flaky := 0
	def := &workflow.Def{Kind: "rb", Start: "flaky", Rollback: "undo", Backoff: func(int) time.Duration { return 0 },
		Steps: map[string]workflow.Step{
			"flaky": func(ctx context.Context, r *workflow.Run) (string, error) {
				if flaky++; flaky < 3 {
					return "", errors.New("connection reset")
				}
				return "broken", nil
			},
			"broken": func(ctx context.Context, r *workflow.Run) (string, error) {
				return "", workflow.Fail(errors.New("target schema version 3, source 4"))
			},
			"undo": effectStep(pool, "undo", ""),
		}}
	plain := &workflow.Def{Kind: "plain", Start: "broken", Steps: map[string]workflow.Step{"broken": def.Steps["broken"]}}
	rn := mustRunner(t, pool, workflow.Config{}, def, plain)

	id, err := rn.Create(ctx, "rb", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	tickUntil(t, rn, func() bool { return status(t, rn, id).Status != workflow.StatusRunning })
	w := status(t, rn, id)
	if w.Status != workflow.StatusRolledBack || w.Error != "target schema version 3, source 4" || w.State != workflow.StateRollback {
		t.Fatalf("workflow = %+v", w)
	}
	want := "[started flaky failed flaky started flaky failed flaky started flaky finished flaky started broken failed broken started undo finished undo]"
	if got := fmt.Sprint(eventLog(t, rn, id)); got != want {
		t.Fatalf("events = %s\nwant %s", got, want)
	}
	if count(t, pool, "SELECT count(*) FROM effects WHERE workflow = $1 AND step = 'undo'", id) != 1 {
		t.Fatal("rollback step did not run")
	}

	id2, err := rn.Create(ctx, "plain", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	tickUntil(t, rn, func() bool { return status(t, rn, id2).Status != workflow.StatusRunning })
	if w := status(t, rn, id2); w.Status != workflow.StatusFailed || w.Error != "target schema version 3, source 4" {
		t.Fatalf("workflow without rollback = %+v", w)
	}
}

func TestRunner_Create_OneActivePerSubject(t *testing.T) {
	ctx := context.Background()
	pool, _ := mustControlDB(t)
	noop := func(context.Context, *workflow.Run) (string, error) { return "", nil }
	move := &workflow.Def{Kind: "move", Family: "placement", Start: "s", Steps: map[string]workflow.Step{"s": noop}}
	cutback := &workflow.Def{Kind: "cutback", Family: "placement", Start: "s", Steps: map[string]workflow.Step{"s": noop}}
	rn := mustRunner(t, pool, workflow.Config{}, move, cutback)
	first, err := rn.Create(ctx, "move", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rn.Create(ctx, "cutback", "acme", nil)
	var active *workflow.ActiveError
	if !errors.Is(err, workflow.ErrActive) || !errors.As(err, &active) || active.ExistingID != first {
		t.Fatalf("second create = %v, want ActiveError with %s", err, first)
	}
	if _, err := rn.Create(ctx, "move", "other", nil); err != nil {
		t.Fatalf("other subject: %v", err)
	}
	if _, err := rn.Create(ctx, "nope", "acme", nil); !errors.Is(err, workflow.ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
	tickUntil(t, rn, func() bool { return status(t, rn, first).Status == workflow.StatusSucceeded })
	if _, err := rn.Create(ctx, "cutback", "acme", nil); err != nil {
		t.Fatalf("create after the active one ended: %v", err)
	}
}

func TestRunner_SignalWakesWaitingWorkflow(t *testing.T) {
	ctx := context.Background()
	pool, _ := mustControlDB(t)
	var got string
	def := &workflow.Def{Kind: "hyper", Start: "hypercare", Steps: map[string]workflow.Step{
		"hypercare": func(ctx context.Context, r *workflow.Run) (string, error) {
			for _, s := range r.Signals {
				r.Consume(s)
				switch s.Name {
				case "complete", "cutback":
					got = s.Name + " " + string(s.Payload)
					return s.Name, nil
				}
			}
			return "", workflow.Wait(time.Time{})
		},
		"complete": effectStep(pool, "complete", ""),
		"cutback":  effectStep(pool, "cutback", ""),
	}}
	rn := mustRunner(t, pool, workflow.Config{}, def)
	rn.Start(ctx)
	defer rn.Stop()
	id, err := rn.Create(ctx, "hyper", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return status(t, rn, id).State == workflow.StateWaiting })
	if err := rn.Signal(ctx, id, "noise", nil); err != nil {
		t.Fatal(err)
	}
	if err := rn.Signal(ctx, id, "cutback", map[string]string{"by": "ops"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return status(t, rn, id).Status == workflow.StatusSucceeded })
	if got != `cutback {"by": "ops"}` {
		t.Fatalf("step received %q", got)
	}
	if count(t, pool, "SELECT count(*) FROM effects WHERE workflow = $1 AND step = 'cutback'", id) != 1 {
		t.Fatal("cutback step did not run")
	}
	if err := rn.Signal(ctx, id, "complete", nil); !errors.Is(err, workflow.ErrNotRunning) {
		t.Fatalf("signal to an ended workflow: %v", err)
	}
	if err := rn.Signal(ctx, "wf_nope", "complete", nil); !errors.Is(err, workflow.ErrNotFound) {
		t.Fatalf("signal to a missing workflow: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 20s")
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a stand-in for the condition
	}
}
