package registry_test

import (
	"context"
	"testing"

	"tenantry/registry"
)

// A switchover pauses a cluster's tenants together, then repoints the
// cluster and resumes them in one transaction; a re-run changes nothing.
func TestStore_PauseTenantsAndSwitch(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	if _, err := s.CreateTenant(ctx, "bolt", "pool-1"); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx)
	must(t, err)
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
