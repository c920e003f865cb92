package route

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/puddle/v2"
	"github.com/prometheus/client_golang/prometheus"

	"tenantry/pgtest"
	"tenantry/registry"
)

// scaleSnapshot is a registry of n tenants on alias "a" (database db of
// cluster c1 at host:port), every entry freshly allocated as
// registry.Watcher loads them, at version v.
func scaleSnapshot(v int64, n int, host string, port int, db string) *registry.Snapshot {
	s := &registry.Snapshot{Version: v,
		Clusters: map[string]*registry.Cluster{"c1": {Name: "c1", Members: []registry.Member{{Name: "c1-1", Host: host, Port: port, Role: registry.RolePrimary}}}},
		Aliases:  map[string]*registry.Alias{"a": {Name: "a", Cluster: "c1", Database: db}},
		Tenants:  make(map[string]*registry.Tenant, n),
	}
	for i := range n {
		id := scaleTenant(i)
		s.Tenants[id] = &registry.Tenant{ID: id, Alias: "a", State: registry.StateActive, Epoch: 1}
	}
	return s
}

func scaleTenant(i int) string { return fmt.Sprintf("t%05d", i) }

// copySnapshot is a fresh copy of s at version v: new entries with the same
// values, as the watcher's next load would be.
func copySnapshot(s *registry.Snapshot, v int64) *registry.Snapshot {
	c := &registry.Snapshot{Version: v, Clusters: map[string]*registry.Cluster{}, Aliases: map[string]*registry.Alias{},
		Tenants: make(map[string]*registry.Tenant, len(s.Tenants))}
	for k, x := range s.Clusters {
		y := *x
		y.Members = slices.Clone(x.Members)
		c.Clusters[k] = &y
	}
	for k, x := range s.Aliases {
		y := *x
		c.Aliases[k] = &y
	}
	for k, x := range s.Tenants {
		y := *x
		c.Tenants[k] = &y
	}
	return c
}

func TestChanges(t *testing.T) {
	base := func() *registry.Snapshot {
		s := scaleSnapshot(1, 4, "h1", 5432, "db")
		s.Aliases["b"] = &registry.Alias{Name: "b", Cluster: "c1", Database: "db-b"}
		s.Tenants["t00003"].Alias = "b"
		return s
	}
	for _, tc := range []struct {
		name             string
		edit             func(s *registry.Snapshot)
		changed, removed []string
	}{
		{"nothing", func(*registry.Snapshot) {}, nil, nil},
		{"epoch", func(s *registry.Snapshot) { s.Tenants["t00001"].Epoch = 2 }, []string{"t00001"}, nil},
		{"state", func(s *registry.Snapshot) { s.Tenants["t00001"].State = registry.StatePaused }, []string{"t00001"}, nil},
		{"alias", func(s *registry.Snapshot) { s.Tenants["t00001"].Alias = "b" }, []string{"t00001"}, nil},
		{"new tenant", func(s *registry.Snapshot) {
			s.Tenants["new"] = &registry.Tenant{ID: "new", Alias: "a", State: registry.StateActive, Epoch: 1}
		}, []string{"new"}, nil},
		{"removed tenant", func(s *registry.Snapshot) { delete(s.Tenants, "t00002") }, nil, []string{"t00002"}},
		{"removed and added", func(s *registry.Snapshot) {
			delete(s.Tenants, "t00002")
			s.Tenants["new"] = &registry.Tenant{ID: "new", Alias: "a", State: registry.StateActive, Epoch: 1}
		}, []string{"new"}, []string{"t00002"}},
		{"alias's database", func(s *registry.Snapshot) { s.Aliases["b"].Database = "db-c" }, []string{"t00003"}, nil},
		{"cluster's primary", func(s *registry.Snapshot) { s.Clusters["c1"].Members[0].Port = 5433 },
			[]string{"t00000", "t00001", "t00002", "t00003"}, nil},
		{"alias gone", func(s *registry.Snapshot) { delete(s.Aliases, "b") }, []string{"t00003"}, nil},
		{"tenant field routing ignores", func(s *registry.Snapshot) { s.Tenants["t00001"].CreatedAt = time.Unix(1, 0) }, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := base()
			snap := copySnapshot(old, 2)
			tc.edit(snap)
			changed, removed := changes(old, snap)
			slices.Sort(changed)
			slices.Sort(removed)
			if !slices.Equal(changed, tc.changed) || !slices.Equal(removed, tc.removed) {
				t.Errorf("changes = %v, removed %v; want %v, removed %v", changed, removed, tc.changed, tc.removed)
			}
		})
	}
	t.Run("first snapshot", func(t *testing.T) {
		changed, removed := changes(nil, base())
		if len(changed) != 4 || removed != nil {
			t.Errorf("changes = %v, removed %v; want every tenant changed", changed, removed)
		}
	})
}

// TestRouter_SwapAtScale: with 10,000 registered tenants, 200 of them with
// pools, a swap keeps the pools of unchanged tenants, retires and closes
// the pools of moved and removed ones (and forgets the removed ones), and
// serves new ones.
func TestRouter_SwapAtScale(t *testing.T) {
	const (
		registered = 10000
		active     = 200
	)
	c := pgtest.MustCluster(t)
	dbA, dbB := mustKV(t, c, "A"), mustKV(t, c, "B")
	mustRole(t, c, "scale")
	s1 := scaleSnapshot(1, registered, c.Host, c.Port, dbA)
	s1.Aliases["b"] = &registry.Alias{Name: "b", Cluster: "c1", Database: dbB}
	src := &fakeSource{}
	src.publish(s1)
	r := newRouter(t, src, nil, func(cfg *Config) {
		cfg.Credentials = func(string) (string, string) { return credentials("scale") }
		cfg.TenantMaxConns = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	read := func(id string) string {
		t.Helper()
		v, err := readV(ctx, r, id)
		if err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		return v
	}
	pools := map[string]*tenantPool{}
	for i := range active {
		id := scaleTenant(i)
		if v := read(id); v != "A" {
			t.Fatalf("%s read %q, want A", id, v)
		}
		pools[id] = r.pool(id)
	}

	// Tenants 0-49 move to alias b, 50-99 leave the registry, 100-199 and
	// the idle rest stay as they were; 100 new tenants arrive.
	s2 := copySnapshot(s1, 2)
	for i := range 50 {
		s2.Tenants[scaleTenant(i)].Alias, s2.Tenants[scaleTenant(i)].Epoch = "b", 2
		delete(s2.Tenants, scaleTenant(50+i))
	}
	for i := range 100 {
		id := scaleTenant(registered + i)
		s2.Tenants[id] = &registry.Tenant{ID: id, Alias: "a", State: registry.StateActive, Epoch: 1}
	}
	r.Apply(s2)

	for i := 100; i < active; i++ {
		id := scaleTenant(i)
		if p := r.pool(id); p != pools[id] {
			t.Fatalf("unchanged %s: pool replaced by the swap", id)
		}
		if v := read(id); v != "A" || r.pool(id) != pools[id] {
			t.Fatalf("unchanged %s: read %q on a new pool, want A on its pool", id, v)
		}
	}
	for i := range 50 {
		moved, gone := scaleTenant(i), scaleTenant(50+i)
		for _, id := range []string{moved, gone} {
			if r.pool(id) != nil {
				t.Fatalf("%s: still has a pool after the swap", id)
			}
			eventually(t, 10*time.Second, id+"'s old pool closed", func() bool {
				return errors.Is(pools[id].pool.Ping(ctx), puddle.ErrClosedPool)
			})
		}
		if v := read(moved); v != "B" || r.pool(moved) == pools[moved] {
			t.Fatalf("moved %s: read %q, want B on a new pool", moved, v)
		}
		if _, ok := r.tenants.Load(gone); ok {
			t.Fatalf("removed %s: its state kept after the swap", gone)
		}
		if n := r.m.transactions.DeletePartialMatch(prometheus.Labels{"tenant": gone}); n != 0 {
			t.Fatalf("removed %s: %d transaction series kept after the swap", gone, n)
		}
		if _, err := readV(ctx, r, gone); !errors.Is(err, ErrTenantNotFound) {
			t.Fatalf("removed %s: err = %v, want ErrTenantNotFound", gone, err)
		}
		if _, ok := r.tenants.Load(gone); ok {
			t.Fatalf("removed %s: a state stored by the read answered not found", gone)
		}
	}
	if v := read(scaleTenant(registered + 7)); v != "A" {
		t.Fatalf("new tenant read %q, want A", v)
	}

	// The alias's database changes under unchanged tenants (as a failover
	// repoints its cluster): every tenant on it gets a new pool.
	s3 := copySnapshot(s2, 3)
	s3.Aliases["a"].Database = dbB
	r.Apply(s3)
	for i := 100; i < active; i++ {
		id := scaleTenant(i)
		if r.pool(id) != nil {
			t.Fatalf("%s: pool to the old database kept after its alias moved", id)
		}
		if v := read(id); v != "B" {
			t.Fatalf("%s read %q after its alias moved, want B", id, v)
		}
	}
}

// pool returns the tenant's current pool, or nil.
func (r *Router) pool(tenant string) *tenantPool {
	v, ok := r.tenants.Load(tenant)
	if !ok {
		return nil
	}
	st := v.(*tenantState)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pool
}

func BenchmarkRouter_AdmitRelease(b *testing.B) {
	src := &fakeSource{}
	src.publish(scaleSnapshot(1, 1, "127.0.0.1", 1, "db"))
	r := newRouter(b, src, nil, nil)
	ctx := context.Background()
	st, err := r.state(ctx, scaleTenant(0))
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, gen, err := r.admit(ctx, st, true)
			if err != nil {
				b.Error(err)
				return
			}
			r.release(st, p, gen, true)
			st.count(nil)
		}
	})
}

// BenchmarkRouter_Swap times one snapshot swap of a router with 10,000
// registered tenants, 1,000 of them with pools: each new snapshot is a fresh
// copy of the registry in which one of the active tenants' epoch moved on.
// The pools are never dialed (nothing listens on the endpoint).
func BenchmarkRouter_Swap(b *testing.B) {
	const tenants, active = 10000, 1000
	src := &fakeSource{}
	snap := scaleSnapshot(1, tenants, "127.0.0.1", 1, "db")
	src.publish(snap)
	r := newRouter(b, src, nil, nil)
	ctx := context.Background()
	for i := range active {
		st, err := r.state(ctx, scaleTenant(i))
		if err != nil {
			b.Fatal(err)
		}
		p, gen, err := r.admit(ctx, st, true)
		if err != nil {
			b.Fatal(err)
		}
		r.release(st, p, gen, true)
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		snap = copySnapshot(snap, snap.Version+1)
		snap.Tenants[scaleTenant(i%active)].Epoch++
		b.StartTimer()
		r.Apply(snap)
	}
}
