package platform

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/route"
)

// readyMove starts a move of tenant to alias to that waits for the
// operator's promote, and returns it once ready.
func readyMove(t *testing.T, ctx context.Context, tenant, to string) *move.Info {
	t.Helper()
	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: to, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "ready" && i.Data.Phase == move.PhaseReady })
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// wantRolledBack checks a promotion that failed: the error names why, the
// move counts the failed flip and waits in ready, and the tenant is active
// and unfenced on the source.
func wantRolledBack(t *testing.T, ctx context.Context, id string, err error, why string) {
	t.Helper()
	if err == nil {
		t.Fatal("promote succeeded, want it refused or rolled back")
	}
	t.Logf("promote failed as it should: %v", err)
	st, gerr := plat.Moves.Get(ctx, id, false)
	if gerr != nil {
		t.Fatal(gerr)
	}
	d := st.Data
	if !errors.Is(err, move.ErrAborted) && !errors.Is(err, move.ErrPrecheck) {
		t.Errorf("promote error %q wraps neither move.ErrAborted nor move.ErrPrecheck", err)
	}
	if !strings.Contains(d.LastError, why) {
		t.Errorf("last error %q does not say %q", d.LastError, why)
	}
	if d.FailedFlips != 1 || len(d.Flips) != 0 || d.Flip != nil || d.On != PooledAlias || st.Step != "ready" {
		t.Errorf("move after the failed promote: step %s, on %s, %d failed flips, %d flips, flip in progress %v",
			st.Step, d.On, d.FailedFlips, len(d.Flips), d.Flip != nil)
	}
	wantServing(t, ctx, d.Tenant, PooledAlias, "")
}

// TestMove_Abort covers promotions that must not go through: the tenant
// stays served from the source, unfenced, and nothing acknowledged is lost.
func TestMove_Abort(t *testing.T) {
	t.Run("lag never catches up", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		runMoves(t)
		fx := newTenant(t, ctx, "abort-lag", 500)
		lr := startLoad(t, ctx, 20, fx)
		mv := readyMove(t, ctx, fx.target.Tenant, dedicatedAlias)
		dst := aliasPool(t, ctx, dedicatedAlias)
		sub := mv.Data.Link.Subscription
		if err := logrepl.SetSubscriptionEnabled(ctx, dst, sub, false); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		_, err := plat.Moves.Command(ctx, mv.ID, move.SignalPromote, true)
		t.Logf("promote with the forward subscription disabled ended after %v", time.Since(began).Round(time.Millisecond))
		wantRolledBack(t, ctx, mv.ID, err, "disabled")

		// The link repaired, the same move goes through.
		if err := logrepl.SetSubscriptionEnabled(ctx, dst, sub, true); err != nil {
			t.Fatal(err)
		}
		if _, err := plat.Moves.Command(ctx, mv.ID, move.SignalPromote, true); err != nil {
			t.Fatalf("promote after the link is repaired: %v", err)
		}
		wantServing(t, ctx, fx.target.Tenant, dedicatedAlias, PooledAlias)
		lr.finish(t)
		lr.check(t, ctx)
		finishMove(t, ctx, mv.ID, move.SignalComplete)
	})

	t.Run("router never acknowledges", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		runMoves(t)
		fx := newTenant(t, ctx, "abort-ack", 500)
		lr := startLoad(t, ctx, 20, fx)
		mv := readyMove(t, ctx, fx.target.Tenant, dedicatedAlias)
		const fake = "router-never-acks"
		stopFake := fakeRouter(t, ctx, fake)
		began := time.Now()
		_, err := plat.Moves.Command(ctx, mv.ID, move.SignalPromote, true)
		took := time.Since(began)
		t.Logf("promote with a router that never acknowledges ended after %v (ack timeout 1s)", took.Round(time.Millisecond))
		wantRolledBack(t, ctx, mv.ID, err, fake)
		if took > 15*time.Second {
			t.Errorf("the promote took %v to give up on a router's ack; the bound is 1 s", took)
		}
		stopFake()
		lr.finish(t)
		lr.check(t, ctx)
		finishMove(t, ctx, mv.ID, move.SignalCancel)
	})

	t.Run("stale router is fenced", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		runMoves(t)
		fx := newTenant(t, ctx, "abort-stale", 300)
		tenant := fx.target.Tenant
		mv := readyMove(t, ctx, tenant, dedicatedAlias)
		w := startStaleWriter(t, ctx, tenant, fx.cat.Products[0], fx.cat.Locations[0])
		if err := poll(ctx, "stale router writing", func() (bool, error) { return w.acked() >= 20, nil }); err != nil {
			t.Fatal(err)
		}
		st, err := plat.Moves.Command(ctx, mv.ID, move.SignalPromote, true)
		if err != nil {
			t.Fatalf("promote: %v", err)
		}
		if err := poll(ctx, "stale router's writes refused", func() (bool, error) { return w.refused() >= 5, nil }); err != nil {
			t.Fatal(err)
		}
		ids, fails, bad, okAfterFail, lastAck := w.stop()
		f := st.Data.Flips[len(st.Data.Flips)-1]
		t.Logf("stale router: %d writes committed (the last %v before the flip), %d refused after the fence; pause %.1f ms %v",
			len(ids), f.At.Sub(lastAck).Round(time.Millisecond), fails, f.PauseMS, f.Phases)
		for _, err := range bad {
			t.Errorf("stale router's write failed with an error that is not retryable (route.ErrTenantPaused): %v", err)
		}
		if okAfterFail > 0 {
			t.Errorf("%d writes of the stale router committed after the fence had refused one", okAfterFail)
		}
		var present int
		if err := aliasPool(t, ctx, dedicatedAlias).QueryRow(ctx,
			"SELECT count(*) FROM orders WHERE tenant_id = $1 AND id = ANY($2)", tenant, ids).Scan(&present); err != nil {
			t.Fatal(err)
		}
		if present != len(ids) {
			t.Errorf("%d of the stale router's %d committed orders are on the target", present, len(ids))
		}
		finishMove(t, ctx, mv.ID, move.SignalComplete)
	})
}

// fakeRouter registers a router that heartbeats but never acknowledges a
// pause; stop (also run when the test ends) deregisters it.
func fakeRouter(t *testing.T, ctx context.Context, id string) (stop func()) {
	t.Helper()
	if err := plat.Store.RegisterRouter(ctx, id); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
				// It follows the registry (tenant creates need not wait
				// for it); it only never acknowledges.
				if v, err := plat.Store.Version(hctx); err == nil {
					_ = plat.Store.Heartbeat(hctx, id, v)
				}
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if err := plat.Store.DeregisterRouter(context.Background(), id); err != nil {
				t.Errorf("deregister %s: %v", id, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// staleWriter writes orders of one tenant through a router that never sees
// a registry change (a frozen snapshot) and is not registered, so no pause
// reaches it: only the fence stops it.
type staleWriter struct {
	stopCh chan struct{}
	done   chan struct{}

	mu          sync.Mutex
	ids         []int64
	lastAck     time.Time
	fails       int
	bad         []error
	okAfterFail int
}

func startStaleWriter(t *testing.T, ctx context.Context, tenant string, product, location int64) *staleWriter {
	t.Helper()
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(plat.Local.State.Secret)
	rt, err := route.New(route.Config{Source: registry.StaticSource{Snapshot: snap}, ID: "router-stale",
		Credentials: func(tn string) (string, string) { return provision.RoleName(tn), provision.Password(secret, tn) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	w := &staleWriter{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer rt.Stop()
		tick := time.NewTicker(5 * time.Millisecond) // pace: about 200 writes/s
		defer tick.Stop()
		for {
			select {
			case <-w.stopCh:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var id int64
			err := rt.Tx(ctx, tenant, func(tx pgx.Tx) error {
				if err := tx.QueryRow(ctx, `INSERT INTO orders (tenant_id, location_id, status) VALUES ($1, $2, 'cancelled')
					RETURNING id`, tenant, location).Scan(&id); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO order_lines (tenant_id, order_id, line_no, product_id, quantity)
					VALUES ($1, $2, 1, $3, 1)`, tenant, id, product)
				return err
			})
			w.record(id, err)
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *staleWriter) record(id int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil && w.fails > 0:
		w.okAfterFail++
		w.ids = append(w.ids, id)
	case err == nil:
		w.ids = append(w.ids, id)
		w.lastAck = time.Now()
	case errors.Is(err, context.Canceled):
	default:
		w.fails++
		if !errors.Is(err, route.ErrTenantPaused) {
			w.bad = append(w.bad, err)
		}
	}
}

func (w *staleWriter) acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ids)
}

func (w *staleWriter) refused() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fails
}

// stop ends the writer and returns what it saw: the ids of its committed
// orders, its refused writes, those refused with an unexpected error, the
// commits after the first refusal, and when its last write before the
// first refusal committed.
func (w *staleWriter) stop() (ids []int64, fails int, bad []error, okAfterFail int, lastAck time.Time) {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ids, w.fails, w.bad, w.okAfterFail, w.lastAck
}
