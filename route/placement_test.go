package route

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/pgtest"
	"tenantry/registry"
)

func TestRouter_PlacementSwapUnderLoad(t *testing.T) {
	c := pgtest.MustCluster(t)
	dbA, dbB := mustKV(t, c, "A"), mustKV(t, c, "B")
	mustRole(t, c, "swap")
	log := &eventLog{}
	tp := newTopo().cluster("c1", c).alias("a", "c1", dbA).alias("b", "c1", dbB).tenant("swap", "a", registry.StateActive, 1)
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, &fakeRegistry{log: log}, func(cfg *Config) { cfg.TenantMaxConns = 4 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		swapped           atomic.Bool // set once the router routes by the new snapshot
		stop              atomic.Bool
		onA, onB, wrongAB atomic.Int64
		errs              = make(chan error, 100)
		wg                sync.WaitGroup
	)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				after := swapped.Load()
				var v string
				// Each transaction spans a few milliseconds so that some are
				// in flight when the placement changes.
				err := r.Tx(ctx, "swap", func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.002)"); err != nil {
						return err
					}
					return tx.QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v)
				})
				if err != nil {
					errs <- err
					return
				}
				switch {
				case v == "B":
					onB.Add(1)
				case after:
					wrongAB.Add(1)
				default:
					onA.Add(1)
				}
			}
		}()
	}
	eventually(t, 10*time.Second, "transactions on A", func() bool { return onA.Load() >= 50 })
	tp.tenant("swap", "b", registry.StateActive, 2)
	src.publish(tp.snap())
	eventually(t, 5*time.Second, "router on version 2", func() bool { return r.Snapshot().Version == 2 })
	swapped.Store(true)
	eventually(t, 10*time.Second, "transactions on B", func() bool { return onB.Load() >= 50 })
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("transaction failed: %v", err)
	}
	if n := wrongAB.Load(); n > 0 {
		t.Errorf("%d transactions started after the swap ran on A", n)
	}
	eventually(t, 5*time.Second, "ack of epoch 2", func() bool { return log.index("ack swap 2") >= 0 })
	eventually(t, 5*time.Second, "old pool closed", func() bool { return sessions(t, c, "t_swap", dbA) == 0 })
}

func TestRouter_PauseBuffersThenReleases(t *testing.T) {
	c := pgtest.MustCluster(t)
	dbA, dbB := mustKV(t, c, "A"), mustKV(t, c, "B")
	mustRole(t, c, "held")
	mustRole(t, c, "bystander")
	log := &eventLog{}
	tp := newTopo().cluster("c1", c).alias("a", "c1", dbA).alias("b", "c1", dbB).
		tenant("held", "a", registry.StateActive, 1).tenant("bystander", "a", registry.StateActive, 1)
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, &fakeRegistry{log: log}, func(cfg *Config) { cfg.BufferWindow = 20 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// One transaction in flight, held open by the test.
	hold, started := make(chan struct{}), make(chan struct{})
	inflight := make(chan error, 1)
	go func() {
		inflight <- r.Tx(ctx, "held", func(tx pgx.Tx) error {
			close(started)
			<-hold
			_, err := tx.Exec(ctx, "UPDATE kv SET v = v WHERE k = 1")
			return err
		})
	}()
	<-started

	tp.tenant("held", "a", registry.StatePaused, 2)
	src.publish(tp.snap())
	eventually(t, 5*time.Second, "router on version 2", func() bool { return r.Snapshot().Version == 2 })

	const waiting = 5
	results := make(chan string, waiting)
	for range waiting {
		go func() {
			v, err := readV(ctx, r, "held")
			if err != nil {
				v = "error: " + err.Error()
			}
			results <- v
		}()
	}
	eventually(t, 5*time.Second, "transactions buffered", func() bool { return r.buffered.Load() == waiting })

	t.Run("other tenant not delayed", func(t *testing.T) {
		start := time.Now()
		if v, err := readV(ctx, r, "bystander"); err != nil || v != "A" {
			t.Fatalf("bystander read = %q, %v", v, err)
		}
		if r.buffered.Load() != waiting {
			t.Fatalf("buffered = %d during bystander's transaction, want %d", r.buffered.Load(), waiting)
		}
		t.Logf("bystander served in %s while held is paused", time.Since(start))
	})

	if i := log.index("ack held 2"); i >= 0 {
		t.Fatalf("paused epoch acked while a transaction is in flight")
	}
	log.add("release in-flight")
	close(hold)
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight transaction: %v", err)
	}
	eventually(t, 5*time.Second, "ack of paused epoch", func() bool { return log.index("ack held 2") >= 0 })
	if log.index("ack held 2") < log.index("release in-flight") {
		t.Errorf("ack of epoch 2 sent before the in-flight transaction finished: %v", log.all())
	}
	// The paused tenant's pool was retired: its sessions close once the
	// in-flight transaction is over, before any fence.
	eventually(t, 5*time.Second, "the paused tenant's sessions on A closed", func() bool { return sessions(t, c, "t_held", dbA) == 0 })
	select {
	case v := <-results:
		t.Fatalf("a buffered transaction finished while paused: %q", v)
	default:
	}

	tp.tenant("held", "b", registry.StateActive, 3)
	src.publish(tp.snap())
	for range waiting {
		if v := <-results; v != "B" {
			t.Errorf("released transaction read %q, want B (the new placement)", v)
		}
	}
	eventually(t, 5*time.Second, "ack of epoch 3", func() bool { return log.index("ack held 3") >= 0 })
}

func TestRouter_PauseWindowTimesOut(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "A")
	tp := newTopo().cluster("c1", c).alias("a", "c1", db).tenant("stuck", "a", registry.StatePaused, 5)
	src := &fakeSource{}
	src.publish(tp.snap())
	const window = 150 * time.Millisecond
	r := newRouter(t, src, nil, func(cfg *Config) { cfg.BufferWindow = window })
	start := time.Now()
	_, err := readV(context.Background(), r, "stuck")
	if !errors.Is(err, ErrTenantPaused) {
		t.Fatalf("err = %v, want ErrTenantPaused", err)
	}
	var te *TenantError
	if !errors.As(err, &te) || te.Tenant != "stuck" {
		t.Fatalf("err = %v, want a *TenantError naming the tenant", err)
	}
	if d := time.Since(start); d < window {
		t.Errorf("returned after %s, before the buffer window %s", d, window)
	}
}

func TestRouter_BufferFull(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "A")
	tp := newTopo().cluster("c1", c).alias("a", "c1", db).tenant("full", "a", registry.StatePaused, 1)
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, nil, func(cfg *Config) { cfg.MaxBuffered = 1; cfg.BufferWindow = 20 * time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := readV(ctx, r, "full"); done <- err }()
	eventually(t, 5*time.Second, "one buffered", func() bool { return r.buffered.Load() == 1 })
	start := time.Now()
	if _, err := readV(context.Background(), r, "full"); !errors.Is(err, ErrTenantPaused) || time.Since(start) > time.Second {
		t.Errorf("second transaction: err = %v after %s, want ErrTenantPaused at once", err, time.Since(start))
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrTenantPaused) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter: err = %v", err)
	}
}

func TestRouter_Fenced(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "A")
	mustRole(t, c, "walled")
	tp := newTopo().cluster("c1", c).alias("a", "c1", db).
		tenant("walled", "a", registry.StateFenced, 3)
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, nil, nil)

	t.Run("registry fence", func(t *testing.T) {
		start := time.Now()
		_, err := readV(context.Background(), r, "walled")
		if !errors.Is(err, ErrTenantFenced) || time.Since(start) > time.Second {
			t.Fatalf("err = %v after %s, want ErrTenantFenced at once", err, time.Since(start))
		}
	})

	t.Run("database fence", func(t *testing.T) {
		tp.tenant("walled", "a", registry.StateActive, 4)
		src.publish(tp.snap())
		eventually(t, 5*time.Second, "router on the new snapshot", func() bool { return r.Snapshot().Version == 2 })
		ctx := context.Background()
		started, hold := make(chan struct{}), make(chan struct{})
		res := make(chan error, 1)
		go func() {
			res <- r.Tx(ctx, "walled", func(tx pgx.Tx) error {
				close(started)
				<-hold
				_, err := tx.Exec(ctx, "UPDATE kv SET v = 'x' WHERE k = 1")
				return err
			})
		}()
		<-started
		// What the control plane does at promotion step c.
		mustExec(t, c, "postgres", `ALTER ROLE "t_walled" NOLOGIN`,
			`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 't_walled'`)
		close(hold)
		err := <-res
		var pe *pgconn.PgError
		if !errors.Is(err, ErrTenantPaused) || !errors.As(err, &pe) || pe.Code != "57P01" {
			t.Fatalf("terminated transaction: err = %v, want ErrTenantPaused with SQLSTATE 57P01", err)
		}
		// A fresh router must connect, and the login is refused.
		r2 := newRouter(t, src, nil, nil)
		_, err = readV(ctx, r2, "walled")
		if !errors.Is(err, ErrTenantPaused) || !errors.As(err, &pe) || pe.Code != "28000" {
			t.Fatalf("login while fenced: err = %v, want ErrTenantPaused with SQLSTATE 28000", err)
		}
	})
}

func TestRouter_RefusesStandby(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "A")
	mustRole(t, c, "replica")
	s := pgtest.MustStandby(t, c)
	tp := newTopo().cluster("c1", s).alias("a", "c1", db).tenant("replica", "a", registry.StateActive, 1)
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, nil, nil)
	_, err := readV(context.Background(), r, "replica")
	if !errors.Is(err, ErrNotPrimary) || !errors.Is(err, ErrTenantPaused) {
		t.Fatalf("err = %v, want ErrNotPrimary (retryable)", err)
	}
}

// A pause waits for read-write transactions only: a read-only one in flight
// does not hold the ack back, and when the old placement ends its session
// (the move's fence) it runs again at the new placement once the pause is
// over. A read whose session ends with no new epoch fails as before.
func TestRouter_PauseDoesNotWaitForReads(t *testing.T) {
	c := pgtest.MustCluster(t)
	dbA, dbB := mustKV(t, c, "A"), mustKV(t, c, "B")
	mustRole(t, c, "reader")
	log := &eventLog{}
	tp := newTopo().cluster("c1", c).alias("a", "c1", dbA).alias("b", "c1", dbB).
		tenant("reader", "a", registry.StateActive, 1)
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, &fakeRegistry{log: log}, func(cfg *Config) { cfg.BufferWindow = 20 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	terminate := func(db string) {
		mustExec(t, c, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE usename = 't_reader' AND datname = `+quoteLiteral(db))
	}
	// heldRead starts a read that blocks, on its first run only, until hold
	// is closed; it returns the values read by each run and the result.
	heldRead := func(hold chan struct{}) (started chan struct{}, res chan error, reads *[]string) {
		started, res, reads = make(chan struct{}), make(chan error, 1), &[]string{}
		go func() {
			runs := 0
			res <- r.ReadTx(ctx, "reader", func(tx pgx.Tx) error {
				runs++
				var v string
				if err := tx.QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v); err != nil {
					return err
				}
				if runs == 1 {
					close(started)
					<-hold
					// The session may have been ended meanwhile.
					if err := tx.QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v); err != nil {
						return err
					}
				}
				*reads = append(*reads, v)
				return nil
			})
		}()
		return started, res, reads
	}

	t.Run("ended by the fence, run again at the new placement", func(t *testing.T) {
		hold := make(chan struct{})
		started, res, reads := heldRead(hold)
		<-started
		tp.tenant("reader", "a", registry.StatePaused, 2)
		src.publish(tp.snap())
		eventually(t, 5*time.Second, "ack of the paused epoch with a read in flight", func() bool {
			return log.index("ack reader 2") >= 0
		})
		terminate(dbA) // the fence
		close(hold)
		eventually(t, 5*time.Second, "the ended read waiting at the gate", func() bool { return r.buffered.Load() == 1 })
		tp.tenant("reader", "b", registry.StateActive, 3)
		src.publish(tp.snap())
		if err := <-res; err != nil {
			t.Fatalf("read across the flip: %v", err)
		}
		if want := []string{"B"}; !slices.Equal(*reads, want) {
			t.Errorf("completed runs read %q, want %q (only the run at the new placement completes)", *reads, want)
		}
	})

	t.Run("ended with no new epoch", func(t *testing.T) {
		hold := make(chan struct{})
		started, res, reads := heldRead(hold)
		<-started
		terminate(dbB)
		close(hold)
		err := <-res
		var pe *pgconn.PgError
		if !errors.Is(err, ErrTenantPaused) || !errors.As(err, &pe) || pe.Code != "57P01" {
			t.Fatalf("err = %v, want ErrTenantPaused with SQLSTATE 57P01", err)
		}
		if len(*reads) != 0 {
			t.Errorf("reads = %q, want none (not run again)", *reads)
		}
	})
}

// A read-write transaction admitted before a pause that has not started
// when the old placement refuses its connection (the fence's NOLOGIN, which
// a flip runs while the routers drain) is admitted again, and runs at the
// new placement: nothing of it reached the database.
func TestRouter_NeverStartedTxRunsAgain(t *testing.T) {
	c := pgtest.MustCluster(t)
	dbA, dbB := mustKV(t, c, "A"), mustKV(t, c, "B")
	mustRole(t, c, "late")
	t.Cleanup(func() { mustExec(t, c, "postgres", `ALTER ROLE "t_late" LOGIN`) })
	log := &eventLog{}
	tp := newTopo().cluster("c1", c).alias("a", "c1", dbA).alias("b", "c1", dbB).
		tenant("late", "a", registry.StateActive, 1)
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, &fakeRegistry{log: log}, func(cfg *Config) {
		cfg.BufferWindow = 20 * time.Second
		cfg.TenantMaxConns = 1 // the second transaction waits for a connection
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inflight := func() int {
		v, _ := r.tenants.Load("late")
		st := v.(*tenantState)
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.inflight
	}

	// The first transaction holds the tenant's only connection.
	hold, started := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- r.Tx(ctx, "late", func(tx pgx.Tx) error {
			close(started)
			<-hold
			_, err := tx.Exec(ctx, "SELECT 1")
			return err
		})
	}()
	<-started
	// The second is admitted under epoch 1 and waits for a connection.
	runs := 0
	second := make(chan error, 1)
	go func() {
		second <- r.Tx(ctx, "late", func(tx pgx.Tx) error {
			runs++
			_, err := tx.Exec(ctx, "UPDATE kv SET v = 'late' WHERE k = 1")
			return err
		})
	}()
	eventually(t, 5*time.Second, "two transactions admitted", func() bool { return inflight() == 2 })

	mustExec(t, c, "postgres", `ALTER ROLE "t_late" NOLOGIN`)
	tp.tenant("late", "a", registry.StatePaused, 2)
	src.publish(tp.snap())
	eventually(t, 5*time.Second, "router on the paused epoch", func() bool { return r.Snapshot().Version == 2 })
	// End the first transaction's session: the pool must open a new
	// connection for the second, and the login is refused.
	mustExec(t, c, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE usename = 't_late' AND datname = `+quoteLiteral(dbA))
	close(hold)
	if err := <-first; !errors.Is(err, ErrTenantPaused) {
		t.Fatalf("first transaction: err = %v, want ErrTenantPaused (its session was ended)", err)
	}
	eventually(t, 5*time.Second, "the refused transaction waiting at the gate", func() bool { return r.buffered.Load() == 1 })
	eventually(t, 5*time.Second, "ack of the paused epoch", func() bool { return log.index("ack late 2") >= 0 })

	mustExec(t, c, "postgres", `ALTER ROLE "t_late" LOGIN`)
	tp.tenant("late", "b", registry.StateActive, 3)
	src.publish(tp.snap())
	if err := <-second; err != nil {
		t.Fatalf("second transaction across the flip: %v", err)
	}
	if runs != 1 {
		t.Errorf("fn ran %d times, want once (at the new placement)", runs)
	}
	if v, err := readV(ctx, r, "late"); err != nil || v != "late" {
		t.Errorf("B reads %q, %v; want the second transaction's write", v, err)
	}
}
