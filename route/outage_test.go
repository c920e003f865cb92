package route

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/pgtest"
	"tenantry/registry"
)

// TestRouter_ServesThroughControlOutage: with a real registry and watcher,
// the router keeps serving tenants from its last snapshot while the control
// cluster is down, and follows the registry again after it is back.
func TestRouter_ServesThroughControlOutage(t *testing.T) {
	ctx := context.Background()
	ctl := pgtest.MustNewCluster(t, "ctl")
	ctlDB := pgtest.MustDBOn(t, ctl)
	store, err := registry.OpenStore(ctx, ctl.DSN(ctlDB), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	data := pgtest.MustCluster(t)
	db := mustKV(t, data, "one")
	mustRole(t, data, "acme")
	err = store.CreateCluster(ctx, registry.Cluster{Name: "data", Members: []registry.Member{
		{Name: "data-0", Host: data.Host, Port: data.Port, Role: registry.RolePrimary}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateAlias(ctx, registry.Alias{Name: "a1", Cluster: "data", Database: db}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateTenant(ctx, "acme", "a1"); err != nil {
		t.Fatal(err)
	}
	w := registry.NewWatcher(ctl.DSN(ctlDB), registry.WatcherOptions{PollInterval: 200 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	r, err := New(Config{Source: w, Registry: store, Credentials: credentials, HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	read := func() error {
		return r.ReadTx(ctx, "acme", func(tx pgx.Tx) error {
			var v string
			return tx.QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v)
		})
	}
	if err := read(); err != nil {
		t.Fatalf("before the outage: %v", err)
	}

	if err := ctl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := read(); err != nil {
			t.Fatalf("transaction %d during the control outage: %v", i, err)
		}
	}
	// Long enough for the watcher's reconnect loop and the heartbeats to fail
	// several times; the router must keep serving throughout.
	deadline := time.Now().Add(time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		if err := read(); err != nil {
			t.Fatalf("transaction %d, later in the outage: %v", n, err)
		}
	}

	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// After the outage the router follows the registry again: pause the
	// tenant and wait for the router's acknowledgement of that epoch.
	store2, err := registry.OpenStore(ctx, ctl.DSN(ctlDB), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store2.Close()
	var tn *registry.Tenant
	for {
		snap, err := store2.Snapshot(ctx)
		if err == nil {
			tn = snap.Tenants["acme"]
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("control database not back: %v", err)
		}
		<-time.After(20 * time.Millisecond) // poll interval
	}
	paused, err := store2.SetPlacement(ctx, "acme", tn.Epoch, "a1", registry.StatePaused)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := store2.WaitAcks(wctx, "acme", paused.Epoch, 5*time.Second); err != nil {
		t.Fatalf("router did not acknowledge the pause after the outage: %v", err)
	}
	if _, err := store2.SetPlacement(ctx, "acme", paused.Epoch, "a1", registry.StateActive); err != nil {
		t.Fatal(err)
	}
	if err := read(); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}
