package logrepl_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/logrepl"
)

// TestCopyLink: a link made by CopyLink holds every row of the tenant
// exactly once, whether it was written before the slot, during the copy
// (inserted, updated or deleted in a table not copied yet, or in one copied
// already) or after it; a copy interrupted after its first table is made
// again cleanly, with tables split between workers while they are written;
// a link that exists is left alone.
func TestCopyLink(t *testing.T) {
	ctx := context.Background()
	ca, cb := mustClusters(t)
	const tenant = "xx"
	parents := []string{"orders", "order_lines"}

	t.Run("writes during the copy arrive exactly once", func(t *testing.T) {
		a, b := mustSide(t, ca, true), mustSide(t, cb, false)
		l := mustNames(t, "c1")
		stop := startWriter(t, a.db, tenant)
		var after atomic.Int32
		res, err := logrepl.CopyLink(ctx, a.db, b.db, a.ep, l, tenant, parents, logrepl.CopyOptions{
			Workers: 1, // tables in order: orders, then order_lines
			AfterTable: func(ctx context.Context, table string) error {
				if after.Add(1) != 1 {
					return nil
				}
				// orders is copied, order_lines is not: change both.
				mustExec(t, a.db, `UPDATE order_lines SET qty = qty + 10 WHERE tenant_id = $1 AND id % 5 = 0`, tenant)
				mustExec(t, a.db, `DELETE FROM order_lines WHERE tenant_id = $1 AND id % 7 = 0`, tenant)
				mustExec(t, a.db, `UPDATE orders SET note = note || '-during' WHERE tenant_id = $1 AND id % 3 = 0`, tenant)
				mustExec(t, a.db, `INSERT INTO order_lines (tenant_id, order_id, qty) SELECT tenant_id, id, 2 FROM orders WHERE tenant_id = $1 AND id % 4 = 0`, tenant)
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Copied || len(res.Tables) != 2 || res.Tables[0].State != logrepl.SyncReady || res.Tables[0].Bytes == 0 {
			t.Fatalf("CopyLink = %+v", res)
		}
		mustExec(t, a.db, `UPDATE orders SET note = note || '-after' WHERE tenant_id = $1 AND id % 11 = 0`, tenant)
		stop()
		wantSame(t, a, b, tenant, parents)
		if n := count(t, b.db, `SELECT count(*) FROM orders WHERE tenant_id <> $1`, tenant); n != 0 {
			t.Errorf("%d rows of other tenants copied", n)
		}
		// The move vacuums the target after the copy, before it can be
		// promoted: without statistics the planner sorts every order of
		// the tenant for each page of GET /v1/orders.
		if err := logrepl.Vacuum(ctx, b.db, parents); err != nil {
			t.Fatal(err)
		}
		if n := count(t, b.db, `SELECT count(DISTINCT tablename) FROM pg_stats WHERE schemaname = 'public' AND tablename = ANY($1)`, parents); n != int64(len(parents)) {
			t.Errorf("statistics of %d of the %d copied tables after Vacuum", n, len(parents))
		}
		again, err := logrepl.CopyLink(ctx, a.db, b.db, a.ep, l, tenant, parents, logrepl.CopyOptions{})
		if err != nil || again.Copied {
			t.Errorf("CopyLink on a made link = %+v, %v; want nothing done", again, err)
		}
		wantSame(t, a, b, tenant, parents)
		mustDropLink(t, a, b, l)
	})

	t.Run("a copy interrupted after its first table is made again", func(t *testing.T) {
		a, b := mustSide(t, ca, true), mustSide(t, cb, false)
		l := mustNames(t, "c2")
		crash := errors.New("crash")
		_, err := logrepl.CopyLink(ctx, a.db, b.db, a.ep, l, tenant, parents, logrepl.CopyOptions{
			Workers:    1,
			AfterTable: func(context.Context, string) error { return crash },
		})
		if !errors.Is(err, crash) {
			t.Fatalf("CopyLink = %v, want the crash", err)
		}
		// One worker copies the largest table first and stops after it.
		if n := mustCount(t, b.db, tenant); (n["orders"] == 0) == (n["order_lines"] == 0) {
			t.Fatalf("after the crash the target holds %v; want one table's rows only", n)
		}
		if n := count(t, a.db, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, l.Slot); n != 1 {
			t.Fatalf("%d slots left by the crash, want 1 (to be replaced)", n)
		}
		stop := startWriter(t, a.db, tenant)
		res, err := logrepl.CopyLink(ctx, a.db, b.db, a.ep, l, tenant, parents, logrepl.CopyOptions{Workers: 3, ChunkPages: 1, PurgeBatch: 50})
		if err != nil || !res.Copied {
			t.Fatalf("CopyLink after the crash = %+v, %v", res, err)
		}
		stop()
		wantSame(t, a, b, tenant, parents)
		mustDropLink(t, a, b, l)
	})
}

func mustNames(t *testing.T, id string) logrepl.Link {
	t.Helper()
	n, err := logrepl.NamesFor(id)
	if err != nil {
		t.Fatal(err)
	}
	return n.Forward
}

func mustDropLink(t *testing.T, a, b side, l logrepl.Link) {
	t.Helper()
	if err := logrepl.DropLink(context.Background(), a.db, b.db, l); err != nil {
		t.Fatal(err)
	}
}

// startWriter writes the tenant's orders and lines on db (inserts,
// updates, deletes, one transaction each) until the returned stop is
// called, which then commits a last order with note 'end' (the marker
// wantSame waits for).
func startWriter(t *testing.T, db *pgxpool.Pool, tenant string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			var err error
			switch i % 3 {
			case 0:
				_, err = db.Exec(ctx, `WITH o AS (INSERT INTO orders (tenant_id, note) VALUES ($1, 'w') RETURNING tenant_id, id)
					INSERT INTO order_lines (tenant_id, order_id, qty) SELECT tenant_id, id, 3 FROM o`, tenant)
			case 1:
				_, err = db.Exec(ctx, `UPDATE order_lines SET qty = qty + 1 WHERE tenant_id = $1
					AND id = (SELECT max(id) FROM order_lines WHERE tenant_id = $1) - $2`, tenant, i%50)
			case 2:
				_, err = db.Exec(ctx, `DELETE FROM order_lines WHERE tenant_id = $1
					AND id = (SELECT min(id) FROM order_lines WHERE tenant_id = $1) + $2`, tenant, i%40)
			}
			if err != nil && ctx.Err() == nil {
				werr = err
				return
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		if werr != nil {
			t.Fatalf("writer: %v", werr)
		}
		mustExec(t, db, `INSERT INTO orders (tenant_id, note) VALUES ($1, 'end')`, tenant)
	}
}

// wantSame waits for the 'end' order to reach b (the link applies in
// commit order), then compares every row of the tenant on both sides.
func wantSame(t *testing.T, a, b side, tenant string, tables []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for count(t, b.db, `SELECT count(*) FROM orders WHERE tenant_id = $1 AND note = 'end'`, tenant) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the last write never reached the target")
		}
		time.Sleep(20 * time.Millisecond) // polling for the condition
	}
	for _, tb := range tables {
		q := `SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM ` + tb + ` t WHERE tenant_id = $1`
		var sa, sb string
		if err := a.db.QueryRow(context.Background(), q, tenant).Scan(&sa); err != nil {
			t.Fatal(err)
		}
		if err := b.db.QueryRow(context.Background(), q, tenant).Scan(&sb); err != nil {
			t.Fatal(err)
		}
		if sa != sb {
			t.Errorf("%s differs: source %s, target %s", tb, sa, sb)
		}
	}
}
