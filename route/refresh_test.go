package route

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tenantry/pgtest"
	"tenantry/registry"
)

// lateSource is a SnapshotSource that has not noticed the newest registry
// version yet: pending becomes current only when the router asks it to
// Refresh, as a watcher between a change and its notification.
type lateSource struct {
	fakeSource
	mu        sync.Mutex
	pending   *registry.Snapshot
	fail      error         // Refresh's error, if any
	gate      chan struct{} // when set, Refresh waits for it to close
	refreshes atomic.Int64
}

func (s *lateSource) Refresh(ctx context.Context) error {
	s.refreshes.Add(1)
	s.mu.Lock()
	gate, fail, pending := s.gate, s.fail, s.pending
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	if pending != nil {
		s.publish(pending)
	}
	return nil
}

// TestRouter_RefreshBeforeNotFound: a router that does not know a tenant
// asks its source to refresh before it answers ErrTenantNotFound, so a
// tenant created a moment ago is served; concurrent misses share refreshes.
func TestRouter_RefreshBeforeNotFound(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "new")
	mustRole(t, c, "fresh")
	for _, tc := range []struct {
		name       string
		tenant     string
		created    bool  // the pending snapshot has the tenant
		fail       error // the refresh fails
		concurrent int
		wantErr    error // nil: served
		maxRefresh int64
	}{
		{"created after the router's snapshot", "fresh", true, nil, 1, nil, 1},
		{"does not exist", "nobody", false, nil, 1, ErrTenantNotFound, 1},
		{"registry unreachable", "fresh", true, errors.New("control database down"), 1, ErrTenantPaused, 1},
		{"many at once", "fresh", true, nil, 50, nil, 2},
		{"many at once, none exists", "nobody", false, nil, 50, ErrTenantNotFound, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo().cluster("c1", c).alias("a", "c1", db)
			src := &lateSource{fail: tc.fail}
			src.publish(tp.snap())
			if tc.created {
				tp.tenant(tc.tenant, "a", registry.StateActive, 1)
			}
			src.pending = tp.snap()
			gate := make(chan struct{})
			if tc.concurrent > 1 {
				src.gate = gate
			}
			r := newRouter(t, src, nil, nil)
			errs := make(chan error, tc.concurrent)
			for range tc.concurrent {
				go func() {
					v, err := readV(context.Background(), r, tc.tenant)
					if err == nil && v != "new" {
						err = errors.New("read " + v)
					}
					errs <- err
				}()
			}
			if tc.concurrent > 1 {
				eventually(t, 10*time.Second, "every request waiting for a refresh", func() bool { return r.refresh.waiting() == tc.concurrent })
				close(gate)
			}
			for range tc.concurrent {
				if err := <-errs; !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			}
			if n := src.refreshes.Load(); n < 1 || n > tc.maxRefresh {
				t.Errorf("%d refreshes for %d requests, want 1..%d", n, tc.concurrent, tc.maxRefresh)
			}
		})
	}
}

// A source that cannot refresh (a fixed snapshot) answers at once.
func TestRouter_NotFoundWithoutRefresher(t *testing.T) {
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "a")
	r := newRouter(t, registry.StaticSource{Snapshot: newTopo().cluster("c1", c).alias("a", "c1", db).snap()}, nil, nil)
	if _, err := readV(context.Background(), r, "nobody"); !errors.Is(err, ErrTenantNotFound) {
		t.Fatalf("err = %v, want ErrTenantNotFound", err)
	}
}

// TestRouter_RegistersAgainAfterExpiry: a router that the control plane
// expired (status removes routers silent past the expiry) while its process
// was stalled registers again on its next heartbeat, reporting its version.
func TestRouter_RegistersAgainAfterExpiry(t *testing.T) {
	ctx := context.Background()
	store, err := registry.OpenStore(ctx, pgtest.MustCluster(t).DSN(pgtest.MustDB(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	src := &fakeSource{}
	src.publish(&registry.Snapshot{Version: 7})
	// Heartbeats only when a new snapshot is applied, so that none comes
	// between the test's stall and the expiry.
	r := newRouter(t, src, store, func(c *Config) { c.ID, c.HeartbeatInterval = "r-stalled", time.Hour })
	eventually(t, 10*time.Second, "the router registered", func() bool {
		rs, err := store.Routers(ctx)
		return err == nil && len(rs) == 1 && rs[0].Version == 7
	})
	// Expire it as status would after a long stall.
	if _, err := store.Pool().Exec(ctx, "UPDATE routers SET heartbeat = now() - interval '1 hour'"); err != nil {
		t.Fatal(err)
	}
	expired, err := store.ExpireRouters(ctx, time.Minute)
	if err != nil || len(expired) != 1 || expired[0] != r.ID() {
		t.Fatalf("expired %v, %v; want [%s]", expired, err, r.ID())
	}
	src.publish(&registry.Snapshot{Version: 8}) // the next heartbeat
	eventually(t, 10*time.Second, "the router registered again", func() bool {
		rs, err := store.LiveRouters(ctx, 5*time.Second)
		return err == nil && len(rs) == 1 && rs[0].ID == r.ID() && rs[0].Version == 8
	})
}
