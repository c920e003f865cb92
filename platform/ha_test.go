package platform

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/control"
	"tenantry/ha"
	"tenantry/move"
	"tenantry/registry"
	"tenantry/workflow"
)

func apiClient() *control.Client {
	return &control.Client{BaseURL: plat.APIURL, Token: plat.Local.State.AdminToken}
}

// TestCluster_AddRemoveStandby adds a standby in a zone of its own through
// the API, sees it streaming with its lag, refuses bad requests, and
// removes it again: gone from the registry and from disk.
func TestCluster_AddRemoveStandby(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	c := apiClient()
	if _, err := c.CreateCluster(ctx, control.CreateClusterRequest{Name: "standbys-1"}); err != nil {
		t.Fatal(err)
	}
	m, err := c.AddStandby(ctx, "standbys-1", control.AddStandbyRequest{Zone: "zone-b"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Role != registry.RoleStandby || m.Zone != "zone-b" || m.Name != "standbys-1-1" {
		t.Fatalf("new standby %+v, want standbys-1-1, standby, zone-b", m)
	}
	var st *control.ClusterStatus
	err = poll(ctx, "standby streaming", func() (bool, error) {
		st, err = c.ClusterStatus(ctx, "standbys-1")
		if err != nil {
			return false, err
		}
		for _, ms := range st.Members {
			if ms.Name == m.Name {
				return ms.Replication == "streaming" && ms.LagBytes != nil && ms.LagSeconds != nil, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster status: %+v", st.Members)

	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"bad zone", func() error {
			_, err := c.AddStandby(ctx, "standbys-1", control.AddStandbyRequest{Zone: "Bad Zone"})
			return err
		}, registry.ErrInvalid},
		{"no such cluster", func() error {
			_, err := c.AddStandby(ctx, "nope-1", control.AddStandbyRequest{})
			return err
		}, registry.ErrNotFound},
		{"remove the primary", func() error { return c.RemoveStandby(ctx, "standbys-1", "standbys-1-0") }, registry.ErrConflict},
		{"remove no such member", func() error { return c.RemoveStandby(ctx, "standbys-1", "standbys-1-7") }, registry.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	// Every local cluster bounds the WAL its slots may hold.
	conn, err := plat.Local.Cluster("standbys-1")[1].Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var keep string
	err = conn.QueryRow(ctx, "SHOW max_slot_wal_keep_size").Scan(&keep)
	conn.Close(ctx)
	if err != nil || keep != "2GB" {
		t.Fatalf("max_slot_wal_keep_size on the standby = %q (%v), want 2GB", keep, err)
	}

	dir := m.DataDir
	if err := c.RemoveStandby(ctx, "standbys-1", m.Name); err != nil {
		t.Fatal(err)
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Clusters["standbys-1"].Member(m.Name); ok {
		t.Errorf("the registry still has %s", m.Name)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("standby directory %s still there (%v)", dir, err)
	}
	if n := len(plat.Local.Cluster("standbys-1")); n != 1 {
		t.Errorf("local cluster has %d members, want 1", n)
	}
}

// TestSwitchover_UnderLoad switches a cluster over to its standby and back
// while load runs on two of its tenants and a bystander on another
// cluster: no request fails, the checker passes, the old primary follows
// the new one each time.
func TestSwitchover_UnderLoad(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	c := apiClient()
	if _, err := c.CreateCluster(ctx, control.CreateClusterRequest{Name: "switch-1", Standbys: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, registry.Alias{Name: "switch", Cluster: "switch-1"}); err != nil {
		t.Fatal(err)
	}
	// A second standby, which must follow each new primary.
	if _, err := c.AddStandby(ctx, "switch-1", control.AddStandbyRequest{Zone: "zone-c"}); err != nil {
		t.Fatal(err)
	}
	fs := []tenantFixture{newTenantOn(t, ctx, "switch-a", "switch", 500), newTenantOn(t, ctx, "switch-b", "switch", 0),
		newTenant(t, ctx, "switch-bystander", 0)}
	lr := startLoad(t, ctx, 60, fs...)
	lr.served(t, ctx, 20)

	for i, want := range []string{"switch-1-1", "switch-1-0"} {
		in := switchover(t, ctx, c, "switch-1", want)
		if in.Data.To != want {
			t.Errorf("switchover %d promoted %s, want %s", i, in.Data.To, want)
		}
		t.Logf("switchover %d: %s -> %s, %d tenants paused %.1f ms, parts %v", i, in.Data.From, in.Data.To,
			len(in.Data.Paused), in.Data.PauseMS, in.Data.Parts)
		if len(in.Data.Paused) != 2 || !in.Data.Rejoined {
			t.Errorf("switchover %d paused %v, rejoined %v; want the two tenants of switch-1, rejoined", i, in.Data.Paused, in.Data.Rejoined)
		}
		wantRoles(t, ctx, c, "switch-1", want)
		for _, f := range fs[:2] {
			if p := placement(t, ctx, f.target.Tenant); p.State != registry.StateActive || p.Alias != "switch" {
				t.Errorf("tenant %s is %s on %s after the switchover", f.target.Tenant, p.State, p.Alias)
			}
		}
		lr.served(t, ctx, 20)
	}
	// An upgrade: a restart-requiring setting on the standby, a switchover
	// to it, the setting on the old primary before it rejoins.
	in, err := c.Upgrade(ctx, "switch-1", "", map[string]string{"shared_buffers": "144MB"})
	if err != nil {
		t.Fatal(err)
	}
	in = waitHA(t, ctx, c, in)
	t.Logf("upgrade: %s -> %s, paused %.1f ms", in.Data.From, in.Data.To, in.Data.PauseMS)
	wantRoles(t, ctx, c, "switch-1", in.Data.To)
	for _, m := range plat.Local.Cluster("switch-1") {
		conn, err := m.Connect(ctx, "postgres")
		if err != nil {
			t.Fatal(err)
		}
		var sb string
		err = conn.QueryRow(ctx, "SHOW shared_buffers").Scan(&sb)
		conn.Close(ctx)
		if err != nil || sb != "144MB" {
			t.Errorf("%s: shared_buffers %q (%v) after the upgrade, want 144MB", m.Name, sb, err)
		}
	}
	lr.served(t, ctx, 20)
	lr.finish(t)
	lr.check(t, ctx)

	t.Run("refused", func(t *testing.T) {
		_, err := c.Switchover(ctx, "switch-1", in.Data.To) // the primary now
		if !errors.Is(err, ha.ErrPrecheck) {
			t.Errorf("switchover to the primary: %v, want ErrPrecheck", err)
		}
		_, err = c.Switchover(ctx, "nope-1", "")
		if !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("switchover of no cluster: %v, want ErrNotFound", err)
		}
		_, err = c.Switchover(ctx, "dedicated-1", "") // no standby
		if !errors.Is(err, ha.ErrPrecheck) {
			t.Errorf("switchover without a standby: %v, want ErrPrecheck", err)
		}
		for _, bad := range []map[string]string{nil, {"Bad Name": "1"}, {"work_mem": "1\nevil = 2"}} {
			if _, err := c.Upgrade(ctx, "switch-1", "", bad); !errors.Is(err, registry.ErrInvalid) {
				t.Errorf("upgrade with settings %q: %v, want ErrInvalid", bad, err)
			}
		}
	})
}

// switchover runs a switchover through the API and waits for it to end.
func switchover(t *testing.T, ctx context.Context, c *control.Client, cluster, to string) *ha.Info {
	t.Helper()
	in, err := c.Switchover(ctx, cluster, to)
	if err != nil {
		t.Fatal(err)
	}
	return waitHA(t, ctx, c, in)
}

// waitHA waits for a switchover or an upgrade to end and wants it
// succeeded.
func waitHA(t *testing.T, ctx context.Context, c *control.Client, in *ha.Info) *ha.Info {
	t.Helper()
	var err error
	err = poll(ctx, in.Kind+" "+in.ID, func() (bool, error) {
		in, err = c.SwitchoverInfo(ctx, in.ID)
		return err == nil && in.Status != workflow.StatusRunning, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != workflow.StatusSucceeded {
		t.Fatalf("%s %s: %s at %s: %s", in.Kind, in.ID, in.Status, in.Step, in.Error)
	}
	return in
}

// wantRoles waits until primary is the cluster's only primary, in the
// registry and in fact, and every other member streams from it (the
// primary's pg_stat_replication names it).
func wantRoles(t *testing.T, ctx context.Context, c *control.Client, cluster, primary string) {
	t.Helper()
	if st, err := c.WaitFollows(ctx, cluster, primary); err != nil {
		t.Fatalf("%v; status %+v", err, st)
	}
}

// TestSwitchover_RollsBack: a router that never acknowledges the pause
// fails the switchover before anything is stopped; it rolls back (tenants
// active on the same primary) with no failed request, and a switchover
// without that router then succeeds.
func TestSwitchover_RollsBack(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	runMoves(t)
	c := apiClient()
	if _, err := c.CreateCluster(ctx, control.CreateClusterRequest{Name: "roll-1", Standbys: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, registry.Alias{Name: "roll", Cluster: "roll-1"}); err != nil {
		t.Fatal(err)
	}
	f := newTenantOn(t, ctx, "roll-a", "roll", 0)
	lr := startLoad(t, ctx, 40, f)
	lr.served(t, ctx, 20)

	stop := fakeRouter(t, ctx, "silent-router")
	in, err := c.Switchover(ctx, "roll-1", "")
	if err != nil {
		t.Fatal(err)
	}
	err = poll(ctx, "switchover "+in.ID, func() (bool, error) {
		in, err = c.SwitchoverInfo(ctx, in.ID)
		return err == nil && in.Status != workflow.StatusRunning, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != workflow.StatusRolledBack || in.Data.Stopped || in.Data.Promoted {
		t.Fatalf("switchover %s at %s (stopped %v, promoted %v): %s; want rolled back before the stop",
			in.Status, in.Step, in.Data.Stopped, in.Data.Promoted, in.Error)
	}
	t.Logf("rolled back: %s", in.Error)
	if p := placement(t, ctx, "roll-a"); p.State != registry.StateActive || p.Alias != "roll" {
		t.Errorf("tenant roll-a is %s on %s after the rollback", p.State, p.Alias)
	}
	wantRoles(t, ctx, c, "roll-1", "roll-1-0")
	stop()

	switchover(t, ctx, c, "roll-1", "roll-1-1")
	wantRoles(t, ctx, c, "roll-1", "roll-1-1")
	lr.served(t, ctx, 20)
	lr.finish(t)
	lr.check(t, ctx)
}

// TestMove_CompleteAddsWantedStandby moves a tenant to an alias that wants
// one standby, on a cluster that has none: completing the move gives the
// cluster a streaming standby, so the tenant does not end on one server.
func TestMove_CompleteAddsWantedStandby(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	runMoves(t)
	c := apiClient()
	if _, err := c.CreateCluster(ctx, control.CreateClusterRequest{Name: "wants-standby"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateAlias(ctx, registry.Alias{Name: "wants-standby", Cluster: "wants-standby", Standbys: control.MaxStandbys + 1})
	if !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("alias wanting %d standbys: got %v, want ErrInvalid", control.MaxStandbys+1, err)
	}
	al, err := c.CreateAlias(ctx, registry.Alias{Name: "wants-standby", Cluster: "wants-standby", Standbys: 1})
	if err != nil {
		t.Fatal(err)
	}
	if al.Standbys != 1 {
		t.Fatalf("alias %+v, want standbys 1", al)
	}
	tenant := newTenant(t, ctx, "standby-after-move", 0).target.Tenant
	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: "wants-standby", Auto: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "hypercare" }); err != nil {
		t.Fatalf("move: %v", err)
	}
	if n := len(plat.Local.Cluster("wants-standby")); n != 1 {
		t.Fatalf("cluster has %d members before complete, want 1", n)
	}
	finishMove(t, ctx, mv.ID, move.SignalComplete)
	var st *control.ClusterStatus
	err = poll(ctx, "a streaming standby of wants-standby", func() (bool, error) {
		st, err = c.ClusterStatus(ctx, "wants-standby")
		if err != nil {
			return false, err
		}
		for _, ms := range st.Members {
			if ms.Role == registry.RoleStandby && ms.Replication == "streaming" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 2 {
		t.Fatalf("after complete: %d members, want a primary and 1 standby: %+v", len(st.Members), st.Members)
	}
	if p := placement(t, ctx, tenant); p.Alias != "wants-standby" {
		t.Fatalf("tenant on %s, want wants-standby", p.Alias)
	}
}

// TestCluster_SyncReplication turns synchronous replication on for a
// cluster with one standby: the primary names the standby in
// synchronous_standby_names, which reports sync_state quorum, and a commit
// waits (SyncRep) while the standby is down and is acknowledged once it is
// back. A switchover applies it to the new primary; removing the last
// standby falls back to asynchronous commits with an event saying so.
func TestCluster_SyncReplication(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	runMoves(t)
	c := apiClient()
	cl, err := c.CreateCluster(ctx, control.CreateClusterRequest{Name: "sync-1", Standbys: 1, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	if !cl.Sync {
		t.Fatalf("cluster created with sync: %+v", cl)
	}
	wantSync(t, ctx, "sync-1", "sync-1-0", `ANY 1 ("sync-1-1")`, "sync-1-1")
	if cl, err = c.SetSync(ctx, "sync-1", false); err != nil || cl.Sync {
		t.Fatalf("set-sync off: %+v, %v", cl, err)
	}
	wantSync(t, ctx, "sync-1", "sync-1-0", "", "")
	if cl, err = c.SetSync(ctx, "sync-1", true); err != nil || !cl.Sync {
		t.Fatalf("set-sync on: %+v, %v", cl, err)
	}
	if _, err := c.SetSync(ctx, "nope-1", true); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("set-sync of no such cluster: %v, want ErrNotFound", err)
	}
	wantSync(t, ctx, "sync-1", "sync-1-0", `ANY 1 ("sync-1-1")`, "sync-1-1")

	primary := memberConn(t, ctx, "sync-1", "sync-1-0")
	if _, err := primary.Exec(ctx, "CREATE TABLE sync_probe (n int)"); err != nil {
		t.Fatal(err)
	}
	if err := plat.Local.StopMember(ctx, "sync-1", "sync-1-1"); err != nil {
		t.Fatal(err)
	}
	writer := memberConn(t, ctx, "sync-1", "sync-1-0")
	var pid int
	if err := writer.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := writer.Exec(ctx, "INSERT INTO sync_probe VALUES (1)")
		done <- err
	}()
	err = poll(ctx, "the commit waiting for the standby", func() (bool, error) {
		var ev string
		err := primary.QueryRow(ctx, "SELECT COALESCE(wait_event, '') FROM pg_stat_activity WHERE pid = $1", pid).Scan(&ev)
		return ev == "SyncRep", err
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the commit returned (%v) with the only standby down", err)
	default:
	}
	if err := plat.Local.StartMember(ctx, "sync-1", "sync-1-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the commit was not acknowledged after the standby came back")
	}

	switchover(t, ctx, c, "sync-1", "sync-1-1")
	wantSync(t, ctx, "sync-1", "sync-1-1", `ANY 1 ("sync-1-0")`, "sync-1-0")

	if err := c.RemoveStandby(ctx, "sync-1", "sync-1-0"); err != nil {
		t.Fatal(err)
	}
	wantSync(t, ctx, "sync-1", "sync-1-1", "", "")
	evs, err := plat.Store.Events(ctx, registry.EventFilter{Subject: "sync-1", Kind: registry.EventSyncDegraded})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d sync_degraded events, want 1: %+v", len(evs), evs)
	}
	t.Logf("event: %s", evs[0].Message)
	if _, err := memberConn(t, ctx, "sync-1", "sync-1-1").Exec(ctx, "INSERT INTO sync_probe VALUES (2)"); err != nil {
		t.Fatalf("commit with no standby left: %v", err)
	}
}

// memberConn connects to database postgres of a local cluster's member;
// closed when the test ends.
func memberConn(t *testing.T, ctx context.Context, cluster, member string) *pgx.Conn {
	t.Helper()
	for _, m := range plat.Local.Cluster(cluster) {
		if m.Name == member {
			conn, err := m.Connect(ctx, "postgres")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
	}
	t.Fatalf("no member %s in cluster %s", member, cluster)
	return nil
}

// wantSync checks the synchronous_standby_names of cluster's primary and, when
// standby is set, waits for the standby to report as a quorum standby.
func wantSync(t *testing.T, ctx context.Context, cluster, primary, names, standby string) {
	t.Helper()
	conn := memberConn(t, ctx, cluster, primary)
	var got string
	if err := conn.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&got); err != nil || got != names {
		t.Fatalf("synchronous_standby_names on %s = %q (%v), want %q", primary, got, err, names)
	}
	if standby == "" {
		return
	}
	err := poll(ctx, standby+" a quorum standby of "+primary, func() (bool, error) {
		var state string
		err := conn.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", standby).Scan(&state)
		return state == "quorum", err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSwitchover_SlowStepNotFailedOver: a switchover, on its own or inside
// an upgrade, whose old primary stays stopped longer than the failover
// monitor's window (a slow promotion) is not failed over under it: the
// monitor counts the stopped primary's failed probes past FailAfter (4)
// and leaves the cluster to the switchover, which ends as usual, under
// load, nothing lost. (An upgrade's switchover was failed over so: the
// monitor looked for a running workflow of the switchover's kind only.)
func TestSwitchover_SlowStepNotFailedOver(t *testing.T) {
	for _, kind := range []string{ha.SwitchoverKind, ha.UpgradeKind} {
		t.Run(kind, func(t *testing.T) {
			ctx := testContext(t, 2*time.Minute)
			runMoves(t)
			alias := "slow-" + kind
			cluster := alias + "-1"
			c := apiClient()
			clusterWithAlias(t, ctx, control.CreateClusterRequest{Name: cluster, Standbys: 1}, alias)
			f := newTenantOn(t, ctx, alias+"-a", alias, 0)
			lr := startLoad(t, ctx, 40, f)
			lr.served(t, ctx, 20)

			var held atomic.Int64 // failed probes seen while held
			h := func(ctx context.Context, point string) error {
				if point != "switchover:stopped" || held.Load() != 0 {
					return nil
				}
				return poll(ctx, "the monitor to fail the stopped primary's probes", func() (bool, error) {
					n := plat.Plane.Monitor.FailedProbes(cluster)
					if n > 5 {
						held.Store(int64(n))
					}
					return n > 5 || failedOver(cluster), nil
				})
			}
			testHooks.Store(&h)
			t.Cleanup(func() { testHooks.Store(nil) })
			var in *ha.Info
			var err error
			if kind == ha.UpgradeKind {
				in, err = c.Upgrade(ctx, cluster, "", map[string]string{"work_mem": "8MB"})
			} else {
				in, err = c.Switchover(ctx, cluster, "")
			}
			if err != nil {
				t.Fatal(err)
			}
			in = waitHA(t, ctx, c, in)
			if failedOver(cluster) {
				t.Fatalf("the monitor failed %s over inside its %s", cluster, kind)
			}
			if held.Load() == 0 {
				t.Fatal("the switchover never stopped at switchover:stopped")
			}
			wantRoles(t, ctx, c, cluster, in.Data.To)
			t.Logf("%s held %d failed probes past its stop; %s -> %s, tenants paused %.0f ms", kind, held.Load(), in.Data.From, in.Data.To, in.Data.PauseMS)
			lr.served(t, ctx, 20)
			lr.end(t)
			lr.check(t, ctx)
		})
	}
}

// failedOver reports whether the platform's monitor failed cluster over.
func failedOver(cluster string) bool {
	for _, r := range plat.Plane.Monitor.Failovers() {
		if r.Cluster == cluster {
			return true
		}
	}
	return false
}
