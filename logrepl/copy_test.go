package logrepl_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
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

	t.Run("an empty table loads before its indexes are built, all or nothing", func(t *testing.T) {
		a, b := mustSide(t, ca, true), mustSide(t, cb, false)
		l := mustNames(t, "c3")
		// order_lines is empty on the target: its primary key, a plain
		// index and a unique constraint are built after its load; not the
		// commented index, nor the one CLUSTER uses. orders holds another tenant's row: it loads
		// into its indexes, and its primary key, which a foreign key
		// references, stays in any case.
		mustExec(t, b.db, `CREATE INDEX order_lines_qty_idx ON order_lines (tenant_id, qty);
			ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_key UNIQUE (tenant_id, order_id, id);
			CREATE INDEX order_lines_commented_idx ON order_lines (order_id);
			COMMENT ON INDEX order_lines_commented_idx IS 'kept';
			CREATE INDEX order_lines_clustered_idx ON order_lines (tenant_id, order_id);
			ALTER TABLE order_lines CLUSTER ON order_lines_clustered_idx;
			CREATE INDEX orders_note_idx ON orders (note);
			INSERT INTO orders (tenant_id, id, note) VALUES ('zz', 1, 'other')`)
		before := indexes(t, b.db)
		// A unique index the tenant's rows break (three lines per order)
		// fails the build after the load: nothing of the load is left,
		// every index is as it was.
		mustExec(t, b.db, `CREATE UNIQUE INDEX order_lines_one_per_order ON order_lines (tenant_id, order_id)`)
		failing := indexes(t, b.db)
		_, err := logrepl.CopyLink(ctx, a.db, b.db, a.ep, l, tenant, parents, logrepl.CopyOptions{Workers: 2, DeferIndexPages: 1})
		if err == nil || !strings.Contains(err.Error(), "build its indexes after the load") || !strings.Contains(err.Error(), "order_lines_one_per_order") {
			t.Fatalf("CopyLink with a unique index the rows break = %v, want its violation", err)
		}
		if got := indexes(t, b.db); !maps.Equal(got, failing) {
			t.Fatalf("indexes after a failed build:\n%v\nwant\n%v", got, failing)
		}
		if n := count(t, b.db, `SELECT count(*) FROM order_lines`); n != 0 {
			t.Fatalf("%d rows left by the failed load", n)
		}
		mustExec(t, b.db, `DROP INDEX order_lines_one_per_order`)

		stop := startWriter(t, a.db, tenant)
		res, err := logrepl.CopyLink(ctx, a.db, b.db, a.ep, l, tenant, parents, logrepl.CopyOptions{Workers: 2, DeferIndexPages: 1})
		if err != nil {
			t.Fatal(err)
		}
		built := map[string]int{}
		for _, ts := range res.Tables {
			built[ts.Table] = ts.IndexesBuilt
		}
		if want := map[string]int{"orders": 0, "order_lines": 3}; !maps.Equal(built, want) {
			t.Errorf("indexes built after the load, as CopyLink reports them: %v, want %v", built, want)
		}
		stop()
		wantSame(t, a, b, tenant, parents)
		after := indexes(t, b.db)
		var rebuilt []string
		for name, ix := range before {
			if after[name].def != ix.def {
				t.Errorf("index %s after the copy: %q, want %q", name, after[name].def, ix.def)
			}
			if after[name].oid != ix.oid {
				rebuilt = append(rebuilt, name)
			}
		}
		if len(after) != len(before) {
			t.Errorf("%d indexes after the copy, want %d", len(after), len(before))
		}
		slices.Sort(rebuilt)
		if want := []string{"order_lines_order_key", "order_lines_pkey", "order_lines_qty_idx"}; !slices.Equal(rebuilt, want) {
			t.Errorf("indexes built after the load: %v, want %v", rebuilt, want)
		}
		mustDropLink(t, a, b, l)
	})
}

// index is one index of a table: its definition and its oid, which a
// rebuilt index changes.
type index struct {
	def string
	oid uint32
}

// indexes are the indexes of orders and order_lines on db, by name, with
// the constraints they back.
func indexes(t *testing.T, db *pgxpool.Pool) map[string]index {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) || coalesce(' ' || pg_get_constraintdef(con.oid), ''), i.indexrelid
		FROM pg_index i LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
		WHERE i.indrelid IN ('orders'::regclass, 'order_lines'::regclass)`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]index{}
	for rows.Next() {
		var name string
		var ix index
		if err := rows.Scan(&name, &ix.def, &ix.oid); err != nil {
			t.Fatal(err)
		}
		out[name] = ix
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
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
