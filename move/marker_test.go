package move_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"tenantry/move"
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
		if err := move.EnsureMarkerTable(ctx, s.db); err != nil {
			t.Fatal(err)
		}
		if err := move.EnsureMarkerTable(ctx, s.db); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	tabs := append([]string{move.MarkerTable}, tables...)
	if !move.HasMarker(tabs) || move.HasMarker(tables) {
		t.Fatal("HasMarker is wrong")
	}
	n, err := move.NamesFor("marker_test")
	if err != nil {
		t.Fatal(err)
	}
	if err := move.CreatePublication(ctx, a.db, n.Publication, "xx", tabs); err != nil {
		t.Fatal(err)
	}
	if _, err := move.CreateSlot(ctx, a.db, n.Slot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = move.DropSubscription(context.Background(), b.db, n.Subscription)
		_ = move.DropSlot(context.Background(), a.db, n.Slot)
	})
	if err := move.CreateSubscription(ctx, b.db, n.Subscription, a.ep, n.Publication,
		move.SubOpts{CopyData: true, SlotName: n.Slot, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := move.WaitSynced(ctx, b.db, n.Subscription, "xx", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		mustExec(t, a.db, `INSERT INTO orders (tenant_id, note) VALUES ('xx', 'm' || $1::int)`, i)
		start := time.Now()
		if err := move.WaitMarker(ctx, a.db, b.db, "xx", 10*time.Second); err != nil {
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
	if err := move.SetSubscriptionEnabled(ctx, b.db, n.Subscription, false); err != nil {
		t.Fatal(err)
	}
	err = move.WaitMarker(ctx, a.db, b.db, "xx", 300*time.Millisecond)
	if !errors.Is(err, move.ErrNotCaughtUp) {
		t.Fatalf("WaitMarker on a disabled link = %v, want ErrNotCaughtUp", err)
	}
}
