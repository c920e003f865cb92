package platform

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/registry"
	"tenantry/workflow"
)

// The clusters that fail over here replicate synchronously (`cluster
// create --sync`): an acknowledged commit is on the standby before the
// client hears of it, so the checker can demand every acknowledged write
// after a kill -9 of the primary. (Asynchronous replication may lose
// acknowledged writes at a failover; TestFailover_KillPrimary reports how
// many.)

// syncCluster creates cluster name with one synchronous standby and alias
// on it.
func syncCluster(t *testing.T, ctx context.Context, name, alias string) {
	t.Helper()
	clusterWithAlias(t, ctx, control.CreateClusterRequest{Name: name, Standbys: 1, Sync: true}, alias)
}

// clusterWithAlias creates the cluster req asks for, and alias on it.
func clusterWithAlias(t *testing.T, ctx context.Context, req control.CreateClusterRequest, alias string) {
	t.Helper()
	c := apiClient()
	if _, err := c.CreateCluster(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, registry.Alias{Name: alias, Cluster: req.Name}); err != nil {
		t.Fatal(err)
	}
}

// killPrimary kills (SIGKILL) member, the primary of cluster, and waits
// until the failover monitor has promoted promoted in its place.
func killPrimary(t *testing.T, ctx context.Context, cluster, member, promoted string) time.Time {
	t.Helper()
	m, err := plat.Local.member(cluster, member)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	err = poll(ctx, "failover of "+cluster, func() (bool, error) {
		snap, err := plat.Store.Snapshot(ctx)
		if err != nil {
			return false, err
		}
		p, ok := snap.Clusters[cluster].Primary()
		return ok && p.Name == promoted, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9 of %s: %s primary %.2f s later", member, promoted, time.Since(killed).Seconds())
	return killed
}

// holdAt makes the move's hook block at point (once) until release is
// called; reached is closed when it gets there.
func holdAt(t *testing.T, point string) (reached <-chan struct{}, release func()) {
	t.Helper()
	r, rel := make(chan struct{}), make(chan struct{})
	var held atomic.Bool
	var relOnce sync.Once
	h := func(hctx context.Context, p string) error {
		if p != point || held.Swap(true) {
			return nil
		}
		close(r)
		select {
		case <-rel:
			return nil
		case <-hctx.Done():
			return hctx.Err()
		}
	}
	testHooks.Store(&h)
	release = func() {
		relOnce.Do(func() { close(rel) })
		testHooks.Store(nil)
	}
	t.Cleanup(release)
	return r, release
}

// killHeld waits until the move's hook holds (reached, from holdAt), kills
// the primary of cluster there (killPrimary) and releases the hook.
func killHeld(t *testing.T, ctx context.Context, reached <-chan struct{}, release func(), cluster, member, promoted string) {
	t.Helper()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("the move never reached the point it was held at")
	}
	killPrimary(t, ctx, cluster, member, promoted)
	release()
}

// waitRelinked waits until the move has rebuilt its link after a failover
// and is back at step, and returns the rebuild's record.
func waitRelinked(t *testing.T, ctx context.Context, id, step string) (*move.Info, move.Relink) {
	t.Helper()
	st, err := plat.Moves.Wait(ctx, id, func(i *move.Info) bool {
		return i.Step == step && len(i.Data.Relinks) > 0 && i.Data.LinkDown == ""
	})
	if err != nil {
		t.Fatalf("move after the failover: %v", err)
	}
	rl := st.Data.Relinks[0]
	t.Logf("relink: noticed in %s: %s; %s; in sync again %.2f s later", rl.Step, rl.Reason, rl.Action, rl.Done.Sub(rl.At).Seconds())
	return st, rl
}

// wantRestarted waits until a move whose source or target (side) cluster
// failed over or switched over has restarted replication and is ready
// again, verified, its subscription on the new primary; it returns the
// restart's record.
func wantRestarted(t *testing.T, ctx context.Context, id, side, cluster, how string) move.Relink {
	t.Helper()
	st, rl := waitRelinked(t, ctx, id, "ready")
	if !strings.Contains(rl.Reason, side+" cluster "+cluster+" "+how) || rl.Action != "replication restarted" {
		t.Errorf("relink recorded %+v, want the %s %s and a restart", rl, side, how)
	}
	if v := st.Data.Verify; v == nil || !v.OK {
		t.Fatalf("parity after the restart: %+v", v)
	}
	wantSubscriptionOn(t, ctx, st.Data.Link)
	return rl
}

// wantSubscriptionOn checks that the move's subscription connects to the
// current primary of its publisher's alias.
func wantSubscriptionOn(t *testing.T, ctx context.Context, l *move.Link) {
	t.Helper()
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := snap.AliasEndpoint(l.From)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := logrepl.SubscriptionPublisher(ctx, aliasPool(t, ctx, l.To), l.Subscription)
	if err != nil {
		t.Fatal(err)
	}
	if want := net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)); addr != want {
		t.Errorf("subscription %s on %s connects to %s, want the primary of %s at %s", l.Subscription, l.To, addr, l.From, want)
	}
}

// promoteAndComplete promotes move id, ready again after a change of
// primary, checks that the tenant is served from to (and fenced on from),
// lets the load run on, ends it (with no failed request allowed when
// strict), runs the checker and completes the move, whose record it
// returns.
func promoteAndComplete(t *testing.T, ctx context.Context, lr *loadRun, id, tenant, to, from string, strict bool) *move.Info {
	t.Helper()
	if _, err := plat.Moves.Command(ctx, id, move.SignalPromote, true); err != nil {
		t.Fatalf("promote after the restart: %v", err)
	}
	wantServing(t, ctx, tenant, to, from)
	lr.served(t, ctx, 20)
	if strict {
		lr.finish(t)
	} else {
		lr.end(t)
	}
	lr.check(t, ctx)
	return finishMove(t, ctx, id, move.SignalComplete)
}

// TestMove_SourceFailoverInReplicate kills (kill -9) the primary of a
// move's source cluster while the move replicates, under load: the monitor
// promotes the standby, the move notices (its slot stayed on the dead
// primary, its subscription points there), drops the target's copy and
// the stale link, replicates and verifies again from the new primary, and
// promotes; the checker finds every acknowledged write on the target.
func TestMove_SourceFailoverInReplicate(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	syncCluster(t, ctx, "fmsrc-1", "fmsrc")
	tenant, lr := loadedTenant(t, ctx, "fmsrc", "fm-src", 2000)
	reached, release := holdAt(t, "replicating")
	lr.served(t, ctx, 20)

	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	killHeld(t, ctx, reached, release, "fmsrc-1", "fmsrc-1-0", "fmsrc-1-1")

	wantRestarted(t, ctx, mv.ID, "source", "fmsrc-1", "failed over")
	evs, err := plat.Moves.Get(ctx, mv.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	var said bool
	for _, e := range evs.Events {
		said = said || strings.Contains(e.Message, "replication restarted")
	}
	if !said {
		t.Error("the move's events do not say that replication restarted")
	}

	// A request cut off inside its commit by the kill has an unknown
	// outcome and fails; the checker demands every acknowledged write.
	st := promoteAndComplete(t, ctx, lr, mv.ID, tenant, dedicatedAlias, "fmsrc", false)
	if n := countRows(t, ctx, "fmsrc", tenant, st.Data.Tables); n != 0 {
		t.Errorf("%d rows of %s left on the source after complete", n, tenant)
	}
}

// TestMove_TargetFailoverInHypercare kills (kill -9) the primary of the
// cluster a moved tenant is served from, in hypercare, under load: the
// link back to the source lost its slot; cutback is refused (409
// link_not_in_sync) while the move rebuilds the link with a fresh copy of
// the tenant from the new primary, then allowed; the cutback and the
// completion work and the checker finds every acknowledged write.
func TestMove_TargetFailoverInHypercare(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	syncCluster(t, ctx, "fmdst-1", "fmdst")
	f := newTenant(t, ctx, "fm-dst", 2000)
	tenant := f.target.Tenant
	lr := startLoad(t, ctx, 60, f)
	runMoves(t)
	lr.served(t, ctx, 20)

	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: "fmdst", Auto: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "hypercare" && len(i.Data.Flips) == 1 }); err != nil {
		t.Fatalf("move: %v", err)
	}
	lr.served(t, ctx, 20)
	reached, release := holdAt(t, "relinking")
	killPrimary(t, ctx, "fmdst-1", "fmdst-1-0", "fmdst-1-1")

	c := apiClient()
	refused := func(when string) {
		t.Helper()
		_, err := c.MoveCommand(ctx, mv.ID, move.SignalCutback)
		var ae *control.APIError
		if !errors.Is(err, move.ErrLinkNotInSync) || !errors.As(err, &ae) || ae.Code != "link_not_in_sync" {
			t.Fatalf("cutback %s: %v, want 409 link_not_in_sync", when, err)
		}
		t.Logf("cutback %s: %v", when, err)
	}
	refused("right after the failover")
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("move never started to rebuild its link")
	}
	refused("while the link is rebuilt")
	release()

	st, rl := waitRelinked(t, ctx, mv.ID, "hypercare")
	if !strings.Contains(rl.Reason, "target cluster fmdst-1 failed over") || rl.Done.IsZero() {
		t.Errorf("relink recorded %+v, want the target's failover, done", rl)
	}
	wantSubscriptionOn(t, ctx, st.Data.Link)
	lr.served(t, ctx, 20)

	if _, err := c.MoveCommand(ctx, mv.ID, move.SignalCutback); err != nil {
		t.Fatalf("cutback once the link is in sync: %v", err)
	}
	wantServing(t, ctx, tenant, PooledAlias, "fmdst")
	lr.served(t, ctx, 20)
	// A request cut off inside its commit by the kill has an unknown
	// outcome and fails; the checker demands every acknowledged write.
	lr.end(t)
	lr.check(t, ctx)
	st, err = plat.Moves.Get(ctx, mv.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	waitLinkApplied(t, ctx, st.Data.Link, aliasPool(t, ctx, PooledAlias), aliasPool(t, ctx, "fmdst"))
	wantSameOrders(t, ctx, tenant, aliasPool(t, ctx, PooledAlias), aliasPool(t, ctx, "fmdst"))
	st = finishMove(t, ctx, mv.ID, move.SignalComplete)
	if n := countRows(t, ctx, "fmdst", tenant, st.Data.Tables); n != 0 {
		t.Errorf("%d rows of %s left on fmdst after complete", n, tenant)
	}
}

// TestMove_SlotInvalidated: a move whose subscriber stopped consuming
// while the source wrote more than max_slot_wal_keep_size fails with the
// reason (its slot invalidated) instead of waiting for ever; the tenant
// stays served from the source and the target's copy is removed.
func TestMove_SlotInvalidated(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	c := apiClient()
	if _, err := c.CreateCluster(ctx, control.CreateClusterRequest{Name: "fmslot-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, registry.Alias{Name: "fmslot", Cluster: "fmslot-1"}); err != nil {
		t.Fatal(err)
	}
	f := newTenantOn(t, ctx, "fm-slot", "fmslot", 200)
	tenant := f.target.Tenant
	runMoves(t)
	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "ready" })
	if err != nil {
		t.Fatal(err)
	}
	l := st.Data.Link
	if err := logrepl.SetSubscriptionEnabled(ctx, aliasPool(t, ctx, dedicatedAlias), l.Subscription, false); err != nil {
		t.Fatal(err)
	}
	src := aliasPool(t, ctx, "fmslot")
	for _, q := range []string{"ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'", "SELECT pg_reload_conf()",
		"CREATE TABLE wal_filler (n int)"} {
		if _, err := src.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	err = poll(ctx, "slot invalidated", func() (bool, error) {
		for _, q := range []string{"INSERT INTO wal_filler VALUES (1)", "SELECT pg_switch_wal()", "CHECKPOINT"} {
			if _, err := src.Exec(ctx, q); err != nil {
				return false, err
			}
		}
		s, err := logrepl.Slot(ctx, src, l.Slot)
		return s.WALStatus == "lost", err
	})
	if err != nil {
		t.Fatal(err)
	}
	invalidated := time.Now()
	st, err = plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Status != workflow.StatusRunning })
	if st == nil {
		t.Fatal(err)
	}
	t.Logf("move %s %.1f s after the slot was invalidated: %s", st.Status, time.Since(invalidated).Seconds(), st.Error)
	if st.Status != workflow.StatusRolledBack || !strings.Contains(st.Error, move.ErrSlotInvalidated.Error()) ||
		!strings.Contains(st.Error, "max_slot_wal_keep_size") {
		t.Errorf("move ended %s (%q), want rolled back with the slot invalidated as the reason", st.Status, st.Error)
	}
	wantServing(t, ctx, tenant, "fmslot", "")
	if n := countRows(t, ctx, dedicatedAlias, tenant, st.Data.Tables); n != 0 {
		t.Errorf("%d rows of %s left on the target", n, tenant)
	}
	if _, err := src.Exec(ctx, "ALTER SYSTEM RESET max_slot_wal_keep_size"); err != nil {
		t.Fatal(err)
	}
}

// loadedTenant makes a tenant of orders on alias under 60 req/s of load,
// with the moves running; it returns the tenant and the load.
func loadedTenant(t *testing.T, ctx context.Context, alias, id string, orders int) (string, *loadRun) {
	t.Helper()
	f := newTenantOn(t, ctx, id, alias, orders)
	lr := startLoad(t, ctx, 60, f)
	runMoves(t)
	return f.target.Tenant, lr
}

// TestMove_SwitchoverInReady switches the source cluster of a move waiting
// in ready over to its standby, under load: the slot stayed on the former
// primary (now a standby), so the move restarts replication on the new
// primary, verifies again and is ready; the promotion and completion work
// and the checker passes.
func TestMove_SwitchoverInReady(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	syncCluster(t, ctx, "fmsw-1", "fmsw")
	tenant, lr := loadedTenant(t, ctx, "fmsw", "fm-sw", 1000)
	id := readyMove(t, ctx, tenant, dedicatedAlias).ID
	c := apiClient()
	switchover(t, ctx, c, "fmsw-1", "fmsw-1-1")
	// The former primary, a standby now, kept no copy of the move's slot
	// (it would hold WAL there, and catalog rows on the primary through
	// hot_standby_feedback).
	var slots []string
	err := memberConn(t, ctx, "fmsw-1", "fmsw-1-0").QueryRow(ctx,
		"SELECT coalesce(array_agg(slot_name::text), '{}') FROM pg_replication_slots WHERE slot_type = 'logical'").Scan(&slots)
	if err != nil || len(slots) != 0 {
		t.Errorf("logical slots on the former primary, now a standby: %v (%v), want none", slots, err)
	}
	if rl := wantRestarted(t, ctx, id, "source", "fmsw-1", "switched over"); rl.Step != "ready" {
		t.Errorf("the switchover was noticed in %s, want ready", rl.Step)
	}
	promoteAndComplete(t, ctx, lr, id, tenant, dedicatedAlias, "fmsw", true)
}

// TestMove_TargetFailoverInReady kills (kill -9) the primary of a move's
// target cluster while the move waits in ready, under load: the
// subscription survived on the promoted standby (catalogs are replicated)
// but may have lost changes the slot counts as applied, so the move drops
// it with the target's copy and replicates and verifies again; the
// promotion and completion work and the checker passes.
func TestMove_TargetFailoverInReady(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	syncCluster(t, ctx, "fmtr-1", "fmtr")
	tenant, lr := loadedTenant(t, ctx, PooledAlias, "fm-tr", 1000)
	id := readyMove(t, ctx, tenant, "fmtr").ID
	killPrimary(t, ctx, "fmtr-1", "fmtr-1-0", "fmtr-1-1")
	wantRestarted(t, ctx, id, "target", "fmtr-1", "failed over")
	// The tenant was served from the source: no request may fail.
	promoteAndComplete(t, ctx, lr, id, tenant, "fmtr", PooledAlias, true)
}

// TestMove_SourceFailoverInHypercare kills (kill -9) the primary of the
// cluster a moved tenant came from, in hypercare, under load: the tenant is
// served from the target all along; the link back (its subscription on the
// source) lost what the dead primary had applied, so the move rebuilds it
// with a fresh copy into the source's new primary, and a cutback onto it
// then works; the checker finds every acknowledged write.
func TestMove_SourceFailoverInHypercare(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	syncCluster(t, ctx, "fmsh-1", "fmsh")
	tenant, lr := loadedTenant(t, ctx, "fmsh", "fm-sh", 1000)
	lr.served(t, ctx, 20)
	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias, Auto: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "hypercare" && len(i.Data.Flips) == 1 }); err != nil {
		t.Fatalf("move: %v", err)
	}
	lr.served(t, ctx, 20)
	killPrimary(t, ctx, "fmsh-1", "fmsh-1-0", "fmsh-1-1")
	lr.served(t, ctx, 20) // served from the target: the source's failover is no outage

	st, rl := waitRelinked(t, ctx, mv.ID, "hypercare")
	if !strings.Contains(rl.Reason, "source cluster fmsh-1 failed over") || rl.Done.IsZero() {
		t.Errorf("relink recorded %+v, want the source's failover, done", rl)
	}
	wantSubscriptionOn(t, ctx, st.Data.Link)
	if _, err := apiClient().MoveCommand(ctx, mv.ID, move.SignalCutback); err != nil {
		t.Fatalf("cutback once the link is in sync: %v", err)
	}
	wantServing(t, ctx, tenant, "fmsh", dedicatedAlias)
	lr.served(t, ctx, 20)
	lr.finish(t) // the tenant was served from the target through the failover: no request failed
	lr.check(t, ctx)
	finishMove(t, ctx, mv.ID, move.SignalComplete)
}

// TestMove_FailoverInFlip kills (kill -9) the primary of a move's source or
// target cluster inside a promotion's pause, under load: the source's right
// after the fence (its NOLOGIN replicated to the standby), the target's once
// it has caught up. The flip can then neither prove the target complete nor
// raise the sequences and unfence the tenant there, so it rolls back (the
// tenant unfenced and served from the source, on its new primary where the
// source failed over), the move restarts replication on the current
// primaries and is ready again; a second promotion works and the checker
// finds every acknowledged write.
func TestMove_FailoverInFlip(t *testing.T) {
	for _, tc := range []struct {
		side, cluster, alias, at string
		source, target           string // aliases
	}{
		{side: "source", cluster: "fmfl-1", alias: "fmfl", at: "fenced", source: "fmfl", target: dedicatedAlias},
		{side: "target", cluster: "fmtf-1", alias: "fmtf", at: "applied", source: PooledAlias, target: "fmtf"},
	} {
		t.Run(tc.side+" at "+tc.at, func(t *testing.T) {
			ctx := testContext(t, 5*time.Minute)
			syncCluster(t, ctx, tc.cluster, tc.alias)
			tenant, lr := loadedTenant(t, ctx, tc.source, "fm-fl-"+tc.side[:3], 1000)
			id := readyMove(t, ctx, tenant, tc.target).ID
			lr.served(t, ctx, 20)
			reached, release := holdAt(t, tc.at)
			if _, err := plat.Moves.Command(ctx, id, move.SignalPromote, false); err != nil {
				t.Fatalf("promote: %v", err)
			}
			killHeld(t, ctx, reached, release, tc.cluster, tc.cluster+"-0", tc.cluster+"-1")

			wantRestarted(t, ctx, id, tc.side, tc.cluster, "failed over")
			st, err := plat.Moves.Get(ctx, id, false)
			if err != nil {
				t.Fatal(err)
			}
			if d := st.Data; d.FailedFlips != 1 || len(d.Flips) != 0 || d.On != tc.source {
				t.Fatalf("after the failover in the pause: %d failed flips, flips %+v, tenant on %s; want the flip failed, none made, on %s",
					d.FailedFlips, d.Flips, d.On, tc.source)
			}
			wantServing(t, ctx, tenant, tc.source, "")
			lr.served(t, ctx, 20)
			// Requests held by the pause while a primary was down, or cut off
			// inside their commit by the kill, may fail; the checker demands
			// every acknowledged write.
			promoteAndComplete(t, ctx, lr, id, tenant, tc.target, tc.source, false)
		})
	}
}
