package platform

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/registry"
)

// TestMove_UnderLoad moves a tenant to a database of its own on the dedicated cluster, cuts it back and
// moves it again while load runs across three tenants, and checks what
// clients were told against both copies.
func TestMove_UnderLoad(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	runMoves(t)
	moved := newTenant(t, ctx, "under-load", 3000)
	others := []tenantFixture{newTenant(t, ctx, "bystander-a", 0), newTenant(t, ctx, "bystander-b", 0)}
	tenant := moved.target.Tenant
	// A database of its own on the dedicated cluster: its tables are empty
	// whatever other tests moved to the dedicated alias before.
	const to = "under-load-target"
	if err := plat.Service.CreateAlias(ctx, registry.Alias{Name: to, Cluster: "dedicated-1", Database: "under_load_target"}); err != nil {
		t.Fatal(err)
	}
	lr := startLoad(t, ctx, 60, moved, others[0], others[1])
	lr.served(t, ctx, 20)

	mv, err := plat.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: to, Auto: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "hypercare" && len(i.Data.Flips) == 1 })
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	if v := st.Data.Verify; v == nil || !v.OK {
		t.Fatalf("parity before promotion: %+v", v)
	}
	// The target's tables were empty: they were loaded before their
	// indexes were built (testMoveOptions), order_lines' primary key among
	// them (no foreign key references it).
	if built := copyOf(st.Data.Copy, "order_lines").IndexesBuilt; built < 1 {
		t.Errorf("order_lines: %d indexes built after its load, want its primary key at least: %+v", built, st.Data.Copy)
	}
	wantServing(t, ctx, tenant, to, PooledAlias)
	lr.served(t, ctx, 20)
	if _, err := plat.Moves.Command(ctx, mv.ID, move.SignalCutback, true); err != nil {
		t.Fatalf("cutback: %v", err)
	}
	wantServing(t, ctx, tenant, PooledAlias, to)
	lr.served(t, ctx, 20)
	st, err = plat.Moves.Command(ctx, mv.ID, move.SignalPromote, true)
	if err != nil {
		t.Fatalf("move again: %v", err)
	}
	wantServing(t, ctx, tenant, to, PooledAlias)
	lr.served(t, ctx, 20)
	lr.finish(t)
	for i, f := range st.Data.Flips {
		t.Logf("flip %d: %s %s -> %s, pause %.1f ms %v", i+1, f.Kind, f.From, f.To, f.PauseMS, f.Phases)
	}
	if len(st.Data.Flips) != 3 {
		t.Fatalf("flips = %d, want 3", len(st.Data.Flips))
	}
	lr.check(t, ctx)

	src, dst := aliasPool(t, ctx, PooledAlias), aliasPool(t, ctx, to)
	st, err = plat.Moves.Get(ctx, mv.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	waitLinkApplied(t, ctx, st.Data.Link, dst, src)
	wantSameOrders(t, ctx, tenant, src, dst)
	wantIDsAfterFlips(t, ctx, dst, tenant, st.Data.Flips)

	st = finishMove(t, ctx, mv.ID, move.SignalComplete)
	if n := countRows(t, ctx, PooledAlias, tenant, st.Data.Tables); n != 0 {
		t.Errorf("%d rows of %s left on the source after complete", n, tenant)
	}
	t.Logf("complete: %d rows purged from %s", st.Data.Purged, PooledAlias)
}

// waitLinkApplied waits until the link's subscriber (on to) has applied
// everything its publisher (on from) wrote so far.
func waitLinkApplied(t *testing.T, ctx context.Context, l *move.Link, from, to *pgxpool.Pool) {
	t.Helper()
	if l == nil {
		t.Fatal("move has no replication link")
	}
	lsn, err := logrepl.CurrentLSN(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	if err := logrepl.WaitApplied(ctx, from, to, l.Subscription, l.Slot, lsn, 20*time.Second); err != nil {
		t.Fatalf("link %s -> %s: %v", l.From, l.To, err)
	}
}

// wantSameOrders checks that every order id of the tenant names the same
// order on both copies (no id was given to two different orders, one on
// each side) and that both copies hold the same orders.
func wantSameOrders(t *testing.T, ctx context.Context, tenant string, a, b *pgxpool.Pool) {
	t.Helper()
	read := func(p *pgxpool.Pool) map[int64]string {
		rows, err := p.Query(ctx, `SELECT o.id, md5(row(o.id, o.location_id, o.status, o.created_at,
				(SELECT array_agg(row(l.line_no, l.product_id, l.quantity) ORDER BY l.line_no)
				 FROM order_lines l WHERE l.tenant_id = o.tenant_id AND l.order_id = o.id))::text)
			FROM orders o WHERE o.tenant_id = $1`, tenant)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int64]string{}
		for rows.Next() {
			var id int64
			var h string
			if err := rows.Scan(&id, &h); err != nil {
				t.Fatal(err)
			}
			out[id] = h
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ao, bo := read(a), read(b)
	var differ, onlyA, onlyB int
	for id, h := range ao {
		hb, ok := bo[id]
		switch {
		case !ok:
			onlyA++
		case hb != h:
			differ++
			if differ <= 5 {
				t.Errorf("order %d of %s differs between the copies", id, tenant)
			}
		}
	}
	for id := range bo {
		if _, ok := ao[id]; !ok {
			onlyB++
		}
	}
	if differ+onlyA+onlyB > 0 {
		t.Errorf("orders of %s: %d ids name different orders on the two copies, %d only on the first, %d only on the second",
			tenant, differ, onlyA, onlyB)
	}
	t.Logf("orders of %s: %d on each copy, every id the same order on both", tenant, len(ao))
}

// wantIDsAfterFlips checks the sequence bump of every flip: orders created
// after the flip have ids above every order created before its pause.
func wantIDsAfterFlips(t *testing.T, ctx context.Context, p *pgxpool.Pool, tenant string, flips []move.FlipRecord) {
	t.Helper()
	for i, f := range flips {
		pauseStart := f.At.Add(-time.Duration(f.PauseMS*float64(time.Millisecond)) - time.Millisecond)
		var before, after *int64
		err := p.QueryRow(ctx, `SELECT (SELECT max(id) FROM orders WHERE tenant_id = $1 AND created_at < $2),
				(SELECT min(id) FROM orders WHERE tenant_id = $1 AND created_at > $3)`,
			tenant, pauseStart, f.At).Scan(&before, &after)
		if err != nil {
			t.Fatal(err)
		}
		if before == nil || after == nil {
			t.Errorf("flip %d: no orders on one side of it (before %v, after %v): the load did not span it", i+1, before, after)
			continue
		}
		if *after <= *before {
			t.Errorf("flip %d (%s to %s): an order created after it has id %d, not above %d, the highest before it",
				i+1, f.Kind, f.To, *after, *before)
		}
		t.Logf("flip %d (%s to %s): ids jump from %d to %d", i+1, f.Kind, f.To, *before, *after)
	}
}

// copyOf is table's entry of a move's copy progress (zero if none).
func copyOf(ts []logrepl.TableSync, table string) logrepl.TableSync {
	for _, t := range ts {
		if t.Table == table {
			return t
		}
	}
	return logrepl.TableSync{}
}
