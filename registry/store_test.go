package registry_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"tenantry/dbconn"
	"tenantry/keys"
	"tenantry/pgtest"
	"tenantry/registry"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// mustStore opens a store on a fresh database of the shared cluster.
func mustStore(t *testing.T) (*registry.Store, string) {
	t.Helper()
	dsn := pgtest.MustCluster(t).DSN(pgtest.MustDB(t))
	s, err := registry.OpenStore(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, dsn
}

// seed creates cluster c1 (primary m1, standby m2), alias pool-1 on it,
// stacks blue and green, and tenant acme.
func seed(t *testing.T, s *registry.Store) {
	t.Helper()
	ctx := context.Background()
	must(t, s.CreateCluster(ctx, registry.Cluster{Name: "c1", Members: []registry.Member{
		{Name: "m1", Host: "127.0.0.1", Port: 5432, Zone: "z1", Role: registry.RolePrimary},
		{Name: "m2", Host: "127.0.0.1", Port: 5433, Zone: "z2", Role: registry.RoleStandby},
	}}))
	must(t, s.CreateAlias(ctx, registry.Alias{Name: "pool-1", Cluster: "c1", Database: "app"}))
	must(t, s.PutStack(ctx, registry.Stack{Name: "blue", Version: "v1", Status: registry.StackReady,
		Instances: []registry.Instance{{URL: "http://127.0.0.1:8001", Healthy: true}}}))
	must(t, s.PutStack(ctx, registry.Stack{Name: "green", Version: "v2", Status: registry.StackDeploying}))
	if _, err := s.CreateTenant(ctx, "acme", "pool-1"); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func TestOpenStore_ConcurrentMigrations(t *testing.T) {
	dsn := pgtest.MustCluster(t).DSN(pgtest.MustDB(t))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := registry.OpenStore(context.Background(), dsn, nil)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	s, err := registry.OpenStore(context.Background(), dsn, nil)
	must(t, err)
	defer s.Close()
	var n, latest int
	must(t, s.Pool().QueryRow(context.Background(), "SELECT count(*), max(version) FROM registry_migrations").Scan(&n, &latest))
	if n != latest || n < 2 {
		t.Fatalf("registry_migrations has %d rows up to version %d: a migration was applied twice or not at all", n, latest)
	}
}

func TestStore_Snapshot(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	must(t, s.SetRoute(ctx, registry.Route{Tenant: registry.DefaultRoute, Backends: []registry.Backend{{Stack: "blue", Weight: 1}}}, 0))
	must(t, s.SetRoute(ctx, registry.Route{Tenant: "acme", Backends: []registry.Backend{{Stack: "blue", Weight: 90}, {Stack: "green", Weight: 10}}}, 0))
	secret, key, err := s.CreateAPIKey(ctx, "acme")
	must(t, err)

	snap, err := s.Snapshot(ctx)
	must(t, err)
	v, err := s.Version(ctx)
	must(t, err)
	if snap.Version != v || v != 8 {
		t.Fatalf("snapshot version %d, store version %d, want 8 (one per write)", snap.Version, v)
	}
	tn, ep, err := snap.Resolve("acme")
	must(t, err)
	if tn.State != registry.StateActive || tn.Epoch != 1 || ep.Port != 5432 || ep.Database != "app" || ep.Cluster != "c1" {
		t.Fatalf("resolve acme = %+v %+v", tn, ep)
	}
	if got := snap.Clusters["c1"].Members; len(got) != 2 || got[1].Role != registry.RoleStandby || got[1].Zone != "z2" {
		t.Fatalf("members = %+v", got)
	}
	if st := snap.Stacks["blue"]; st.Version != "v1" || len(st.Instances) != 1 || !st.Instances[0].Healthy {
		t.Fatalf("stack blue = %+v", st)
	}
	if r := snap.RouteFor("acme"); len(r.Backends) != 2 || r.Backends[1].Weight != 10 {
		t.Fatalf("route acme = %+v", r)
	}
	if r := snap.RouteFor("other"); r == nil || r.Backends[0].Stack != "blue" {
		t.Fatalf("default route = %+v", r)
	}
	k, ok := snap.KeysByHash[registry.HashAPIKey(secret)]
	if !ok || k.Tenant != "acme" || k.ID != key.ID {
		t.Fatalf("key lookup = %+v, %v", k, ok)
	}
	must(t, registry.ValidateAPIKey(secret))

	must(t, s.RevokeAPIKey(ctx, "acme", key.ID))
	snap, err = s.Snapshot(ctx)
	must(t, err)
	if _, ok := snap.KeysByHash[registry.HashAPIKey(secret)]; ok {
		t.Fatal("revoked key still in snapshot")
	}
	wantErr(t, s.RevokeAPIKey(ctx, "acme", key.ID), registry.ErrNotFound)
}

func TestStore_SetPlacementCAS(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	must(t, s.CreateAlias(ctx, registry.Alias{Name: "acme-dedicated", Cluster: "c1", Database: "acme"}))

	tn, err := s.SetPlacement(ctx, "acme", 1, "pool-1", registry.StatePaused)
	must(t, err)
	if tn.Epoch != 2 || tn.State != registry.StatePaused {
		t.Fatalf("after pause: %+v", tn)
	}
	before, _ := s.Version(ctx)
	_, err = s.SetPlacement(ctx, "acme", 1, "acme-dedicated", registry.StateActive)
	wantErr(t, err, registry.ErrConflict)
	after, _ := s.Version(ctx)
	if after != before {
		t.Fatalf("a failed CAS bumped the version %d -> %d", before, after)
	}
	tn, err = s.SetPlacement(ctx, "acme", 2, "acme-dedicated", registry.StateActive)
	must(t, err)
	if tn.Epoch != 3 || tn.Alias != "acme-dedicated" {
		t.Fatalf("after move: %+v", tn)
	}
	_, err = s.SetPlacement(ctx, "nobody", 1, "pool-1", registry.StateActive)
	wantErr(t, err, registry.ErrNotFound)
	_, err = s.SetPlacement(ctx, "acme", 3, "no-such-alias", registry.StateActive)
	wantErr(t, err, registry.ErrNotFound)
	_, err = s.SetPlacement(ctx, "acme", 3, "pool-1", registry.State("gone"))
	wantErr(t, err, registry.ErrInvalid)
}

func TestStore_SetRoute(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	v, err := s.Version(ctx)
	must(t, err)
	blue := []registry.Backend{{Stack: "blue", Weight: 1}}
	must(t, s.SetRoute(ctx, registry.Route{Tenant: "acme", Backends: blue}, v))
	// v is stale now: the write above bumped it.
	wantErr(t, s.SetRoute(ctx, registry.Route{Tenant: "acme", Backends: []registry.Backend{{Stack: "green", Weight: 1}}}, v), registry.ErrConflict)

	for name, r := range map[string]registry.Route{
		"zero sum":  {Tenant: "acme", Backends: []registry.Backend{{Stack: "blue", Weight: 0}}},
		"negative":  {Tenant: "acme", Backends: []registry.Backend{{Stack: "blue", Weight: -1}, {Stack: "green", Weight: 2}}},
		"empty":     {Tenant: "acme"},
		"duplicate": {Tenant: "acme", Backends: []registry.Backend{{Stack: "blue", Weight: 1}, {Stack: "blue", Weight: 1}}},
		"bad stack": {Tenant: "acme", Backends: []registry.Backend{{Stack: "Blue;", Weight: 1}}},
	} {
		t.Run(name, func(t *testing.T) { wantErr(t, s.SetRoute(ctx, r, 0), registry.ErrInvalid) })
	}
	wantErr(t, s.SetRoute(ctx, registry.Route{Tenant: "acme", Backends: []registry.Backend{{Stack: "red", Weight: 1}}}, 0), registry.ErrNotFound)
	wantErr(t, s.SetRoute(ctx, registry.Route{Tenant: "nobody", Backends: blue}, 0), registry.ErrNotFound)

	wantErr(t, s.DeleteStack(ctx, "blue"), registry.ErrConflict)
	must(t, s.DeleteStack(ctx, "green"))
	must(t, s.DeleteRoute(ctx, "acme"))
	must(t, s.DeleteStack(ctx, "blue"))
}

func TestStore_ValidationBeforeSQL(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	before, err := s.Version(ctx)
	must(t, err)
	bad := "Robert'); drop table tenants;--"
	_, err = s.CreateTenant(ctx, bad, "pool-1")
	wantErr(t, err, registry.ErrInvalid)
	_, err = s.CreateTenant(ctx, "bobby", bad)
	wantErr(t, err, registry.ErrInvalid)
	wantErr(t, s.DeleteTenant(ctx, bad), registry.ErrInvalid)
	wantErr(t, s.CreateAlias(ctx, registry.Alias{Name: "x", Cluster: "c1", Database: bad}), registry.ErrInvalid)
	wantErr(t, s.CreateCluster(ctx, registry.Cluster{Name: "c2", Members: []registry.Member{
		{Name: "m1", Host: "h; rm -rf", Port: 1, Role: registry.RolePrimary}}}), registry.ErrInvalid)
	wantErr(t, s.CreateCluster(ctx, registry.Cluster{Name: "c2", Members: []registry.Member{
		{Name: "m1", Host: "h", Port: 1, Role: registry.RolePrimary}, {Name: "m2", Host: "h", Port: 2, Role: registry.RolePrimary}}}), registry.ErrInvalid)
	wantErr(t, s.PutStack(ctx, registry.Stack{Name: "s", Status: "weird"}), registry.ErrInvalid)
	wantErr(t, s.PutStack(ctx, registry.Stack{Name: "s", Status: registry.StackReady, Instances: []registry.Instance{{URL: "ftp://x"}}}), registry.ErrInvalid)
	wantErr(t, s.AckEpoch(ctx, "r1", bad, 1), registry.ErrInvalid)
	wantErr(t, s.RegisterRouter(ctx, bad), registry.ErrInvalid)
	wantErr(t, registry.ValidateAPIKey("tk_zz"), registry.ErrInvalid)

	after, err := s.Version(ctx)
	must(t, err)
	snap, err := s.Snapshot(ctx)
	must(t, err)
	if after != before || len(snap.Tenants) != 1 || len(snap.Aliases) != 1 || len(snap.Clusters) != 1 {
		t.Fatalf("bad input changed the registry: version %d -> %d, %d tenants", before, after, len(snap.Tenants))
	}
}

func TestStore_Clusters(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	wantErr(t, s.CreateCluster(ctx, registry.Cluster{Name: "c1"}), registry.ErrExists)
	wantErr(t, s.AddMember(ctx, "c1", registry.Member{Name: "m3", Host: "h", Port: 1, Role: registry.RolePrimary}), registry.ErrConflict)
	must(t, s.AddMember(ctx, "c1", registry.Member{Name: "m3", Host: "h", Port: 1, Role: registry.RoleStandby}))
	wantErr(t, s.SetMemberRole(ctx, "c1", "m3", registry.RolePrimary), registry.ErrConflict)

	must(t, s.SetPrimary(ctx, "c1", "m2", registry.RoleFenced))
	snap, err := s.Snapshot(ctx)
	must(t, err)
	roles := map[string]registry.Role{}
	for _, m := range snap.Clusters["c1"].Members {
		roles[m.Name] = m.Role
	}
	if roles["m1"] != registry.RoleFenced || roles["m2"] != registry.RolePrimary || roles["m3"] != registry.RoleStandby {
		t.Fatalf("roles after SetPrimary = %v", roles)
	}
	wantErr(t, s.SetPrimary(ctx, "c1", "nope", registry.RoleStandby), registry.ErrNotFound)
	must(t, s.RemoveMember(ctx, "c1", "m3"))
	wantErr(t, s.RemoveMember(ctx, "c1", "m3"), registry.ErrNotFound)
	wantErr(t, s.DeleteCluster(ctx, "c1"), registry.ErrConflict) // alias pool-1 names it
	wantErr(t, s.CreateAlias(ctx, registry.Alias{Name: "a2", Cluster: "c9", Database: "d"}), registry.ErrNotFound)
	must(t, s.CreateCluster(ctx, registry.Cluster{Name: "c2"}))
	must(t, s.RepointAlias(ctx, "pool-1", "c2", "app2"))
	must(t, s.DeleteCluster(ctx, "c1"))
}

func TestStore_WaitAcks(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	must(t, s.RegisterRouter(ctx, "r1"))
	must(t, s.RegisterRouter(ctx, "r2"))
	before, _ := s.Version(ctx)
	must(t, s.AckEpoch(ctx, "r1", "acme", 2))
	must(t, s.AckEpoch(ctx, "r1", "acme", 1)) // stores the max
	must(t, s.Heartbeat(ctx, "r2", 1))
	if after, _ := s.Version(ctx); after != before {
		t.Fatalf("acks bumped the registry version %d -> %d", before, after)
	}
	rs, err := s.Routers(ctx)
	must(t, err)
	if len(rs) != 2 || rs[0].Acks["acme"] != 2 || len(rs[1].Acks) != 0 {
		t.Fatalf("routers = %+v", rs)
	}

	t.Run("timeout names the missing router", func(t *testing.T) {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err := s.WaitAcks(wctx, "acme", 2, time.Minute)
		var ate *registry.AckTimeoutError
		if !errors.As(err, &ate) || len(ate.Missing) != 1 || ate.Missing[0] != "r2" || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want AckTimeoutError naming r2", err)
		}
	})
	t.Run("wakes on ack", func(t *testing.T) {
		done := make(chan error, 1)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		go func() { done <- s.WaitAcks(wctx, "acme", 2, time.Minute) }()
		must(t, s.AckEpoch(ctx, "r2", "acme", 3))
		must(t, <-done)
	})
	t.Run("dead routers are not waited for", func(t *testing.T) {
		must(t, s.RegisterRouter(ctx, "r3"))
		_, err := s.Pool().Exec(ctx, "UPDATE routers SET heartbeat = now() - interval '1 hour' WHERE id = 'r3'")
		must(t, err)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		must(t, s.WaitAcks(wctx, "acme", 2, time.Minute))
		live, err := s.LiveRouters(ctx, time.Minute)
		must(t, err)
		if len(live) != 2 {
			t.Fatalf("live routers = %+v", live)
		}
	})
	must(t, s.DeregisterRouter(ctx, "r1"))
	wantErr(t, s.Heartbeat(ctx, "r1", 1), registry.ErrNotFound)
	wantErr(t, s.AckEpoch(ctx, "r1", "acme", 3), registry.ErrNotFound)
}

// TestVault_ClusterCredential: a credential is stored sealed, opens only
// with the platform secret it was sealed with and only for its cluster.
func TestVault_ClusterCredential(t *testing.T) {
	ctx := context.Background()
	s, err := registry.OpenStore(ctx, pgtest.MustCluster(t).DSN(pgtest.MustDB(t)), nil)
	must(t, err)
	defer s.Close()
	v, err := registry.NewVault(s, []byte("secret one"))
	must(t, err)
	cred := dbconn.Credential{User: "admin", Password: "pa'ss word"}
	c := registry.Cluster{Name: "c1", TLS: dbconn.TLS{Mode: dbconn.SSLRequire}, Members: []registry.Member{
		{Name: "c1-0", Host: "db1.example", Port: 5432, Role: registry.RolePrimary}}}
	must(t, v.CreateCluster(ctx, c, cred))
	got, err := v.ClusterCredential(ctx, "c1")
	must(t, err)
	if got != cred {
		t.Fatalf("credential = %v, want %v", got, cred)
	}
	var sealed []byte
	must(t, s.Pool().QueryRow(ctx, "SELECT sealed FROM cluster_credentials WHERE cluster = 'c1'").Scan(&sealed))
	if bytes.Contains(sealed, []byte(cred.Password)) {
		t.Fatal("the password is stored in clear")
	}
	snap, err := s.Snapshot(ctx)
	must(t, err)
	if snap.Clusters["c1"].TLS != c.TLS {
		t.Fatalf("TLS = %+v, want %+v", snap.Clusters["c1"].TLS, c.TLS)
	}
	ep := snap.Clusters["c1"].MemberConfig(snap.Clusters["c1"].Members[0], "db", got)
	if ep.TLS.Mode != dbconn.SSLRequire || ep.Password != cred.Password {
		t.Fatalf("member config %s", ep.Redacted())
	}
	other, err := registry.NewVault(s, []byte("secret two"))
	must(t, err)
	if _, err := other.ClusterCredential(ctx, "c1"); !errors.Is(err, keys.ErrOpen) {
		t.Fatalf("another secret: %v, want keys.ErrOpen", err)
	}
	// A sealed password copied to another cluster's row does not open there.
	must(t, s.CreateCluster(ctx, registry.Cluster{Name: "c2"}))
	_, err = s.Pool().Exec(ctx, "INSERT INTO cluster_credentials SELECT 'c2', username, sealed FROM cluster_credentials WHERE cluster = 'c1'")
	must(t, err)
	if _, err := v.ClusterCredential(ctx, "c2"); !errors.Is(err, keys.ErrOpen) {
		t.Fatalf("moved credential: %v, want keys.ErrOpen", err)
	}
	if _, err := v.ClusterCredential(ctx, "c3"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("no credential: %v, want ErrNotFound", err)
	}
	wantErr(t, v.CreateCluster(ctx, registry.Cluster{Name: "c4", TLS: dbconn.TLS{Mode: "verify-full"}}, cred), registry.ErrInvalid)
	wantErr(t, v.CreateCluster(ctx, registry.Cluster{Name: "c4"}, dbconn.Credential{}), registry.ErrInvalid)
}
