package registry_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"tenantry/localpg"
	"tenantry/pgtest"
	"tenantry/registry"
)

func mustWatcher(t *testing.T, dsn string, opts registry.WatcherOptions) *registry.Watcher {
	t.Helper()
	w := registry.NewWatcher(dsn, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, w.Start(ctx))
	t.Cleanup(w.Stop)
	return w
}

// putStack writes one change and returns the version it produced.
func putStack(t *testing.T, s *registry.Store, i int) int64 {
	t.Helper()
	ctx := context.Background()
	must(t, s.PutStack(ctx, registry.Stack{Name: "s", Version: fmt.Sprint(i), Status: registry.StackReady}))
	v, err := s.Version(ctx)
	must(t, err)
	return v
}

func TestWatcher_NotifyLatency(t *testing.T) {
	s, dsn := mustStore(t)
	// A long poll interval: only notifications can make changes visible fast.
	w := mustWatcher(t, dsn, registry.WatcherOptions{PollInterval: time.Minute})
	if w.Current() == nil {
		t.Fatal("no snapshot after Start")
	}
	var lat []time.Duration
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		v := putStack(t, s, i)
		snap, err := w.WaitVersion(ctx, v)
		cancel()
		must(t, err)
		lat = append(lat, time.Since(start))
		if snap.Stacks["s"].Version != fmt.Sprint(i) {
			t.Fatalf("snapshot at version %d has stack version %q, want %d", snap.Version, snap.Stacks["s"].Version, i)
		}
	}
	slices.Sort(lat)
	median := lat[len(lat)/2]
	t.Logf("change -> snapshot latency over %d changes: median %v, max %v", len(lat), median, lat[len(lat)-1])
	if median >= 100*time.Millisecond {
		t.Fatalf("median latency %v, want < 100ms", median)
	}
}

func TestWatcher_SubscribeDeliversLatest(t *testing.T) {
	s, dsn := mustStore(t)
	w := mustWatcher(t, dsn, registry.WatcherOptions{PollInterval: time.Minute})
	ch, unsubscribe := w.Subscribe()
	defer unsubscribe()
	first := <-ch
	if first.Version != w.Current().Version {
		t.Fatalf("first delivery is version %d, current %d", first.Version, w.Current().Version)
	}
	var last int64
	for i := range 3 {
		last = putStack(t, s, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := w.WaitVersion(ctx, last)
	must(t, err)
	got := <-ch
	if got.Version != last {
		t.Fatalf("subscriber got version %d, want the latest %d", got.Version, last)
	}
	select {
	case extra := <-ch:
		t.Fatalf("stale snapshot %d still queued", extra.Version)
	default:
	}
	unsubscribe()
	putStack(t, s, 9)
	// Refresh publishes synchronously: an unsubscribed channel gets nothing.
	must(t, w.Refresh(ctx))
	select {
	case extra := <-ch:
		t.Fatalf("unsubscribed channel got version %d", extra.Version)
	default:
	}
}

func TestWatcher_StartFailsWithoutDatabase(t *testing.T) {
	port, err := localpg.FreePort()
	must(t, err)
	w := registry.NewWatcher(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=x sslmode=disable", port), registry.WatcherOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.Start(ctx); err == nil {
		w.Stop()
		t.Fatal("Start succeeded with no database")
	}
}

func TestWatcher_SurvivesControlOutage(t *testing.T) {
	ctx := context.Background()
	ctl := pgtest.MustNewCluster(t, "control")
	dsn := ctl.DSN(pgtest.MustDBOn(t, ctl))
	s, err := registry.OpenStore(ctx, dsn, nil)
	must(t, err)
	defer s.Close()
	w := mustWatcher(t, dsn, registry.WatcherOptions{
		PollInterval: 200 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
	})
	v := putStack(t, s, 1)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = w.WaitVersion(wctx, v)
	cancel()
	must(t, err)

	must(t, ctl.Stop(ctx))
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := w.Refresh(rctx); err == nil {
		t.Fatal("Refresh succeeded with the control cluster stopped")
	}
	cancel()
	if cur := w.Current(); cur == nil || cur.Version != v || cur.Stacks["s"] == nil {
		t.Fatalf("during outage current = %+v, want the last snapshot at version %d", cur, v)
	}

	must(t, ctl.Start(ctx))
	// The store's pool may hold connections broken by the restart: retry
	// the write until it goes through.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.PutStack(ctx, registry.Stack{Name: "after", Status: registry.StackReady})
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	must(t, err)
	after, err := s.Version(ctx)
	must(t, err)
	wctx, cancel = context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	snap, err := w.WaitVersion(wctx, after)
	must(t, err)
	if snap.Stacks["after"] == nil {
		t.Fatalf("snapshot %d after restart lacks the new stack", snap.Version)
	}
}
