package logrepl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"tenantry/logrepl"
	"tenantry/pgtest"
)

// TestWaitMarker: once WaitMarker returns, every change the publisher
// committed before it is visible on the subscriber, with no polling; a
// stopped link times out with ErrNotCaughtUp.
func TestWaitMarker(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	a, b := mustSide(t, c, true), mustSide(t, c, false)
	for _, s := range []side{a, b} {
		if err := logrepl.EnsureMarkerTable(ctx, s.db); err != nil {
			t.Fatal(err)
		}
		if err := logrepl.EnsureMarkerTable(ctx, s.db); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	tabs := append([]string{logrepl.MarkerTable}, tables...)
	if !logrepl.HasMarker(tabs) || logrepl.HasMarker(tables) {
		t.Fatal("HasMarker is wrong")
	}
	n, err := logrepl.NamesFor("marker_test")
	if err != nil {
		t.Fatal(err)
	}
	if err := logrepl.CreatePublication(ctx, a.db, n.Forward.Publication, "xx", tabs); err != nil {
		t.Fatal(err)
	}
	if _, err := logrepl.CreateSlot(ctx, a.db, n.Forward.Slot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = logrepl.DropSubscription(context.Background(), b.db, n.Forward.Subscription)
		_ = logrepl.DropSlot(context.Background(), a.db, n.Forward.Slot)
	})
	if err := logrepl.CreateSubscription(ctx, b.db, n.Forward.Subscription, a.ep, n.Forward.Publication,
		logrepl.SubOpts{CopyData: true, SlotName: n.Forward.Slot, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := logrepl.WaitSynced(ctx, b.db, n.Forward.Subscription, "xx", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		mustExec(t, a.db, `INSERT INTO orders (tenant_id, note) VALUES ('xx', 'm' || $1::int)`, i)
		start := time.Now()
		if err := logrepl.WaitMarker(ctx, a.db, b.db, "xx", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("marker round trip %v", time.Since(start))
		}
		if got := count(t, b.db, `SELECT count(*) FROM orders WHERE tenant_id = 'xx' AND note = 'm' || $1::int`, i); got != 1 {
			t.Fatalf("row %d committed before the marker: %d on the subscriber after WaitMarker", i, got)
		}
	}
	if got := count(t, b.db, `SELECT count(*) FROM tenantry_markers WHERE tenant_id <> 'xx'`); got != 0 {
		t.Fatalf("%d markers of other tenants replicated", got)
	}
	if err := logrepl.SetSubscriptionEnabled(ctx, b.db, n.Forward.Subscription, false); err != nil {
		t.Fatal(err)
	}
	err = logrepl.WaitMarker(ctx, a.db, b.db, "xx", 300*time.Millisecond)
	if !errors.Is(err, logrepl.ErrNotCaughtUp) {
		t.Fatalf("WaitMarker on a disabled link = %v, want ErrNotCaughtUp", err)
	}
}
