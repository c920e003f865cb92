package registry_test

import (
	"context"
	"maps"
	"testing"

	"tenantry/registry"
)

// A switchover pauses a cluster's tenants together, then repoints the
// cluster and resumes them in one transaction; a re-run changes nothing.
func TestStore_PauseTenantsAndSwitch(t *testing.T) {
	ctx := context.Background()
	s, snap := twoTenants(t)
	var err error
	want := map[string]int64{"acme": snap.Tenants["acme"].Epoch, "bolt": snap.Tenants["bolt"].Epoch}

	t.Run("stale epoch changes nothing", func(t *testing.T) {
		_, err := s.PauseTenants(ctx, map[string]int64{"acme": want["acme"], "bolt": want["bolt"] + 5})
		wantErr(t, err, registry.ErrConflict)
		snap, err := s.Snapshot(ctx)
		must(t, err)
		if st := snap.Tenants["acme"].State; st != registry.StateActive {
			t.Fatalf("acme is %s after a refused pause", st)
		}
	})

	v0 := snap.Version
	paused, err := s.PauseTenants(ctx, want)
	must(t, err)
	snap, err = s.Snapshot(ctx)
	must(t, err)
	if snap.Version != v0+1 {
		t.Errorf("pause took registry versions %d..%d, want one", v0, snap.Version)
	}
	for id, e := range want {
		if tn := snap.Tenants[id]; tn.State != registry.StatePaused || tn.Epoch != e+1 || paused[id] != e+1 {
			t.Errorf("tenant %s %s at %d (returned %d), want paused at %d", id, tn.State, tn.Epoch, paused[id], e+1)
		}
	}

	for run := range 2 {
		must(t, s.Switch(ctx, "c1", "m2", registry.RoleStandby, paused))
		snap, err = s.Snapshot(ctx)
		must(t, err)
		if p, _ := snap.Clusters["c1"].Primary(); p.Name != "m2" {
			t.Errorf("run %d: primary %s, want m2", run, p.Name)
		}
		if m, _ := snap.Clusters["c1"].Member("m1"); m.Role != registry.RoleStandby {
			t.Errorf("run %d: m1 is %s, want standby", run, m.Role)
		}
		for id, e := range paused {
			if tn := snap.Tenants[id]; tn.State != registry.StateActive || tn.Epoch != e+1 {
				t.Errorf("run %d: tenant %s %s at %d, want active at %d", run, id, tn.State, tn.Epoch, e+1)
			}
		}
	}
	wantErr(t, s.Switch(ctx, "c1", "m9", registry.RoleFenced, nil), registry.ErrNotFound)
	wantErr(t, s.Switch(ctx, "c1", "m1", registry.RolePrimary, nil), registry.ErrInvalid)
}

// A failover records the tenants it paused with the cluster: one cut short
// before its repoint leaves them for the next, whose PauseForFailover
// returns them with its own; the repoint resumes them all and clears the
// record.
func TestStore_PauseForFailover(t *testing.T) {
	ctx := context.Background()
	s, snap := twoTenants(t)
	acme, bolt := snap.Tenants["acme"].Epoch, snap.Tenants["bolt"].Epoch

	_, err := s.PauseForFailover(ctx, "nope", map[string]int64{"acme": acme})
	wantErr(t, err, registry.ErrNotFound)
	_, err = s.PauseForFailover(ctx, "c1", map[string]int64{"acme": acme + 5})
	wantErr(t, err, registry.ErrConflict)

	// The first failover pauses acme and is cut short.
	first, err := s.PauseForFailover(ctx, "c1", map[string]int64{"acme": acme})
	must(t, err)
	if len(first) != 1 || first["acme"] != acme+1 {
		t.Fatalf("first failover paused %v, want acme at %d", first, acme+1)
	}
	// The next finds acme paused (not in its want) and bolt active.
	second, err := s.PauseForFailover(ctx, "c1", map[string]int64{"bolt": bolt})
	must(t, err)
	if len(second) != 2 || second["acme"] != acme+1 || second["bolt"] != bolt+1 {
		t.Fatalf("second failover holds %v, want acme at %d and bolt at %d", second, acme+1, bolt+1)
	}
	snap, err = s.Snapshot(ctx)
	must(t, err)
	if got := snap.Clusters["c1"].FailoverPaused; !maps.Equal(got, second) {
		t.Errorf("snapshot's failover record %v, want %v", got, second)
	}
	must(t, s.Switch(ctx, "c1", "m2", registry.RoleFenced, second))
	snap, err = s.Snapshot(ctx)
	must(t, err)
	if got := snap.Clusters["c1"].FailoverPaused; got != nil {
		t.Errorf("snapshot's failover record after the repoint: %v, want none", got)
	}
	// The fenced primary's standbys are yet to follow the new one.
	if !snap.Clusters["c1"].FollowPending {
		t.Error("no pending follow after a failover's repoint")
	}
	wantErr(t, s.FollowDone(ctx, "nope"), registry.ErrNotFound)
	must(t, s.FollowDone(ctx, "c1"))
	must(t, s.FollowDone(ctx, "c1")) // done already: nothing to do
	// A switchover's repoint (the old primary a standby) has none.
	must(t, s.Switch(ctx, "c1", "m1", registry.RoleStandby, nil))
	snap, err = s.Snapshot(ctx)
	must(t, err)
	if snap.Clusters["c1"].FollowPending {
		t.Error("a pending follow after FollowDone and a switchover's repoint")
	}
	for id, e := range second {
		if tn := snap.Tenants[id]; tn.State != registry.StateActive || tn.Epoch != e+1 {
			t.Errorf("tenant %s %s at %d after the repoint, want active at %d", id, tn.State, tn.Epoch, e+1)
		}
	}
	// The record is clear: a later failover returns only what it pauses.
	third, err := s.PauseForFailover(ctx, "c1", nil)
	must(t, err)
	if len(third) != 0 {
		t.Errorf("failover record after the repoint: %v, want empty", third)
	}
}

// twoTenants is a store seeded with cluster c1 (m1 primary, m2 standby)
// and tenants acme and bolt on it, and its snapshot.
func twoTenants(t *testing.T) (*registry.Store, *registry.Snapshot) {
	t.Helper()
	s, _ := mustStore(t)
	seed(t, s)
	if _, err := s.CreateTenant(context.Background(), "bolt", "pool-1"); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(context.Background())
	must(t, err)
	return s, snap
}
