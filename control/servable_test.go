package control_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/route"
)

// TestService_CreateTenantWaitsForRouters: tenant create returns once every
// live router routes by a registry version that has the tenant (routers
// report their version with each heartbeat, at once after a new snapshot),
// or, past ServeWait, names the routers that had not caught up; routers
// that stopped heartbeating are not waited for.
func TestService_CreateTenantWaitsForRouters(t *testing.T) {
	const serveWait = 700 * time.Millisecond
	for _, tc := range []struct {
		name        string
		routers     func(t *testing.T, a *api) // sets up the routers
		wantReady   bool
		wantPending []string
	}{
		{"no routers", func(*testing.T, *api) {}, true, nil},
		{"a live router following the registry", startRouter, true, nil},
		{"a live router stuck on an old version", func(t *testing.T, a *api) { beating(t, a, "r-stuck") }, false, []string{"r-stuck"}},
		{"a router of a dead process", func(t *testing.T, a *api) {
			ctx := context.Background()
			if err := a.store.RegisterRouter(ctx, "r-dead"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.store.Pool().Exec(ctx, "UPDATE routers SET heartbeat = now() - interval '1 minute' WHERE id = 'r-dead'"); err != nil {
				t.Fatal(err)
			}
		}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPIWith(t, func(c *control.Config) { c.ServeWait = serveWait })
			tc.routers(t, a)
			ctx := context.Background()
			start := time.Now()
			nt, err := a.client.CreateTenant(ctx, "acme", testAlias)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("tenant create answered in %v (ready %v)", took.Round(time.Millisecond), nt.Ready)
			if nt.Ready != tc.wantReady || !slices.Equal(nt.PendingRouters, tc.wantPending) {
				t.Fatalf("ready %v, pending %v; want %v, %v", nt.Ready, nt.PendingRouters, tc.wantReady, tc.wantPending)
			}
			if !tc.wantReady && took < serveWait {
				t.Errorf("answered after %v, before the serve wait of %v", took, serveWait)
			}
			// Every live router that was waited for routes by a version that
			// has the tenant.
			v, err := a.store.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := a.store.LiveRouters(ctx, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if r.Version < v && !slices.Contains(nt.PendingRouters, r.ID) {
					t.Errorf("router %s routes by version %d < %d, yet create answered ready", r.ID, r.Version, v)
				}
			}
		})
	}
}

// startRouter runs a real tenant router on the API's registry: a watcher
// for its snapshots, heartbeats and acks through the store.
func startRouter(t *testing.T, a *api) {
	t.Helper()
	ctx := context.Background()
	w := registry.NewWatcher(a.dsn, registry.WatcherOptions{PollInterval: time.Hour})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	r, err := route.New(route.Config{Source: w, Registry: a.store, ID: "r-real",
		Credentials: func(t string) (string, string) { return provision.RoleName(t), provision.Password(testSecret, t) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
}

// beating registers router id and heartbeats it every 50 ms at registry
// version 0, as a process whose snapshot never advances.
func beating(t *testing.T, a *api, id string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.store.RegisterRouter(ctx, id); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = a.store.Heartbeat(ctx, id, 0)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}
