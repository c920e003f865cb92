package verify_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/logrepl"
	"tenantry/pgtest"
	"tenantry/verify"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const schema = `
CREATE TABLE items (tenant_id text NOT NULL, id bigint NOT NULL, name text, price float8, at timestamptz,
  span interval, PRIMARY KEY (tenant_id, id));
CREATE TABLE lines (tenant_id text NOT NULL, item bigint NOT NULL, n int NOT NULL, qty int NOT NULL,
  PRIMARY KEY (tenant_id, item, n), FOREIGN KEY (tenant_id, item) REFERENCES items (tenant_id, id));`

func seed(tenant string, n int, salt string) string {
	return fmt.Sprintf(`
INSERT INTO items SELECT '%[1]s', g, 'item ' || g || '%[3]s', g / 7.0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', g * interval '1 second'
  FROM generate_series(1, %[2]d) g;
INSERT INTO lines SELECT '%[1]s', g, k, g + k FROM generate_series(1, %[2]d) g, generate_series(1, 2) k;`, tenant, n, salt)
}

// mustPair returns a source and a target database with the same rows of
// acme and different rows of other tenants; the target's sessions default
// to another time zone and date style, which Compare must neutralise.
func mustPair(t testing.TB, rows int) (src, dst *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	sdb, ddb := pgtest.MustDB(t), pgtest.MustDB(t)
	admin := pgtest.MustPool(t, c, "postgres")
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{ddb}.Sanitize()+" SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{ddb}.Sanitize()+" SET DateStyle = 'SQL, DMY'"); err != nil {
		t.Fatal(err)
	}
	src, dst = pgtest.MustPool(t, c, sdb), pgtest.MustPool(t, c, ddb)
	for _, x := range []struct {
		p     *pgxpool.Pool
		other string
	}{{src, seed("other", 50, "src")}, {dst, seed("other", 70, "dst") + seed("third", 5, "")}} {
		if _, err := x.p.Exec(ctx, schema+seed("acme", rows, "")+x.other); err != nil {
			t.Fatal(err)
		}
		if _, err := x.p.Exec(ctx, "VACUUM ANALYZE"); err != nil {
			t.Fatal(err)
		}
	}
	return src, dst
}

func mustExec(t *testing.T, p *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := p.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}

func TestCompare(t *testing.T) {
	ctx := context.Background()
	src, dst := mustPair(t, 1000)
	opts := verify.Options{ChunkRows: 100}

	t.Run("identical", func(t *testing.T) {
		for _, parallel := range []int{1, 2, 5} {
			prev := map[string]int{}
			final := map[string]string{}
			o := opts
			o.Parallel = parallel
			o.OnChunk = func(table string, chunk, n int, rows int64, last verify.Key) {
				if chunk <= prev[table] || chunk > n {
					t.Errorf("OnChunk(%s, %d, %d) after chunk %d", table, chunk, n, prev[table])
				}
				prev[table] = chunk
				final[table] = fmt.Sprintf("%d/%d %d rows, last %v", chunk, n, rows, last)
			}
			rep, err := verify.Compare(ctx, src, dst, "acme", o)
			if err != nil {
				t.Fatal(err)
			}
			// Tables this small are sampled whole: a bound every 100 keys,
			// and an empty range after the last.
			if !rep.OK || rep.Rows != 3000 || len(rep.Tables) != 2 || rep.Tables[0].Table != "items" || rep.Tables[0].Chunks != 11 {
				t.Fatalf("parallel %d: report = %+v", parallel, rep)
			}
			want := map[string]string{"items": "11/11 1000 rows, last ()", "lines": "21/21 2000 rows, last ()"}
			if !maps.Equal(final, want) {
				t.Fatalf("parallel %d: last OnChunk calls = %v, want %v", parallel, final, want)
			}
		}
	})

	cases := []struct {
		name, table, breakSQL, fixSQL string
		key                           verify.Key
	}{
		{"changed row", "items", `UPDATE items SET name = 'changed' WHERE tenant_id = 'acme' AND id = 417`,
			`UPDATE items SET name = 'item 417' WHERE tenant_id = 'acme' AND id = 417`, verify.Key{"417"}},
		{"deleted row", "lines", `DELETE FROM lines WHERE tenant_id = 'acme' AND item = 5 AND n = 2`,
			`INSERT INTO lines VALUES ('acme', 5, 2, 7)`, verify.Key{"5", "2"}},
		{"extra row", "items", `INSERT INTO items (tenant_id, id, name) VALUES ('acme', 5000, 'extra')`,
			`DELETE FROM items WHERE tenant_id = 'acme' AND id = 5000`, verify.Key{"5000"}},
		{"extra row before the first", "items", `INSERT INTO items (tenant_id, id, name) VALUES ('acme', -1, 'extra')`,
			`DELETE FROM items WHERE tenant_id = 'acme' AND id = -1`, verify.Key{"-1"}},
		{"changed value, composite key", "lines", `UPDATE lines SET qty = qty + 1 WHERE tenant_id = 'acme' AND item = 640 AND n = 1`,
			`UPDATE lines SET qty = qty - 1 WHERE tenant_id = 'acme' AND item = 640 AND n = 1`, verify.Key{"640", "1"}},
		{"changed time, same instant in another zone's text", "items",
			`UPDATE items SET at = at + interval '1 microsecond' WHERE tenant_id = 'acme' AND id = 77`,
			`UPDATE items SET at = at - interval '1 microsecond' WHERE tenant_id = 'acme' AND id = 77`, verify.Key{"77"}},
		{"changed float in its last digit", "items",
			`UPDATE items SET price = price + 1e-13 WHERE tenant_id = 'acme' AND id = 999`,
			`UPDATE items SET price = 999 / 7.0 WHERE tenant_id = 'acme' AND id = 999`, verify.Key{"999"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustExec(t, dst, tc.breakSQL)
			defer mustExec(t, dst, tc.fixSQL)
			rep, err := verify.Compare(ctx, src, dst, "acme", opts)
			var mm *verify.MismatchError
			if !errors.Is(err, verify.ErrMismatch) || !errors.As(err, &mm) {
				t.Fatalf("Compare = %v, want MismatchError", err)
			}
			if mm.Table != tc.table || len(mm.Ranges) != 1 || len(mm.Keys) != 1 || !slices.Equal(mm.Keys[0], tc.key) || rep.OK {
				t.Fatalf("mismatch = %+v (%v), want key %v in %s", mm, err, tc.key, tc.table)
			}
		})
	}

	t.Run("transient difference fixed by catch-up", func(t *testing.T) {
		mustExec(t, dst, `UPDATE items SET name = 'stale' WHERE tenant_id = 'acme' AND id = 3`)
		caughtUp := 0
		o := opts
		o.CatchUp = func(ctx context.Context) error {
			caughtUp++
			_, err := dst.Exec(ctx, `UPDATE items SET name = 'item 3' WHERE tenant_id = 'acme' AND id = 3`)
			return err
		}
		rep, err := verify.Compare(ctx, src, dst, "acme", o)
		if err != nil || !rep.OK || caughtUp != 1 {
			t.Fatalf("Compare = %v, ok %v, catch-ups %d", err, rep.OK, caughtUp)
		}
	})

	t.Run("resume and deadline", func(t *testing.T) {
		o := opts
		o.StartAfter = map[string]verify.Key{"items": {"900"}}
		o.SkipTables = []string{"lines"}
		rep, err := verify.Compare(ctx, src, dst, "acme", o)
		if err != nil || rep.Rows != 100 || len(rep.Tables) != 1 {
			t.Fatalf("resumed Compare = %+v, %v", rep, err)
		}
		o = opts
		o.Deadline = time.Now().Add(-time.Second)
		if _, err := verify.Compare(ctx, src, dst, "acme", o); !errors.Is(err, verify.ErrDeadline) {
			t.Fatalf("past deadline: %v", err)
		}
		if _, err := verify.Compare(ctx, src, dst, "x'; drop", o); err == nil {
			t.Fatal("bad tenant id accepted")
		}
	})
}

func TestCompare_200kRows(t *testing.T) {
	ctx := context.Background()
	src, dst := mustPair(t, 200_000)
	rep, err := verify.Compare(ctx, src, dst, "acme", verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 600_000 {
		t.Fatalf("rows = %d, want 600000", rep.Rows)
	}
	t.Logf("verified %d rows in %v: %.0f rows/s", rep.Rows, rep.Elapsed, rep.RowsPerSec)
}

func BenchmarkCompare(b *testing.B) {
	ctx := context.Background()
	src, dst := mustPair(b, 200_000)
	var rows int64
	start := time.Now()
	for b.Loop() {
		rep, err := verify.Compare(ctx, src, dst, "acme", verify.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rows += rep.Rows
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

// TestCompare_LiveReplication compares a tenant while a subscription
// applies a stream of writes to the target: verify must report no
// difference that the link applies anyway (it re-checks differing ranges
// after catching up), and still name a row changed on the target alone.
func TestCompare_LiveReplication(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sc, dc := pgtest.MustCluster(t), pgtest.MustNewCluster(t, "verify-live")
	sdb, ddb := pgtest.MustDBOn(t, sc), pgtest.MustDBOn(t, dc)
	src, dst := pgtest.MustPool(t, sc, sdb), pgtest.MustPool(t, dc, ddb)
	mustExec(t, src, schema+seed("acme", 20_000, "")+seed("other", 100, ""))
	mustExec(t, dst, schema)
	const link = "verify_live"
	if err := logrepl.CreatePublication(ctx, src, link, "acme", []string{"items", "lines"}); err != nil {
		t.Fatal(err)
	}
	if err := logrepl.CreateSubscription(ctx, dst, link, sc.Config(sdb), link,
		logrepl.SubOpts{CopyData: true, CreateSlot: true, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	// Dropping the subscription drops its slot on the shared cluster.
	t.Cleanup(func() { _ = logrepl.DropSubscription(context.Background(), dst, link) })
	if err := logrepl.WaitSynced(ctx, dst, link, "acme", nil); err != nil {
		t.Fatal(err)
	}
	var catchUps atomic.Int64
	catchUp := func(ctx context.Context) error {
		catchUps.Add(1)
		lsn, err := logrepl.CurrentLSN(ctx, src)
		if err != nil {
			return err
		}
		return logrepl.WaitApplied(ctx, src, dst, link, link, lsn, time.Minute)
	}

	// The writer changes, adds and deletes rows all over the key space
	// (never item 15000), about 100 writes a second.
	var wrote atomic.Int64
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-tick.C:
			}
			id := rng.Int64N(20_000) + 1
			if id == 15_000 {
				continue
			}
			var err error
			switch i % 4 {
			case 0:
				_, err = src.Exec(ctx, `UPDATE items SET name = 'w' || $2::text WHERE tenant_id = 'acme' AND id = $1`, id, fmt.Sprint(i))
			case 1:
				_, err = src.Exec(ctx, `UPDATE lines SET qty = qty + 1 WHERE tenant_id = 'acme' AND item = $1`, id)
			case 2:
				_, err = src.Exec(ctx, `WITH i AS (INSERT INTO items (tenant_id, id, name) VALUES ('acme', 100000 + $1, 'new') RETURNING id)
					INSERT INTO lines SELECT 'acme', id, 1, 1 FROM i`, i)
			case 3:
				_, err = src.Exec(ctx, `DELETE FROM lines WHERE tenant_id = 'acme' AND item = $1 AND n = 2`, id)
			}
			if err != nil {
				done <- err
				return
			}
			wrote.Add(1)
		}
	}()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()

	opts := verify.Options{ChunkRows: 500, CatchUp: catchUp}
	for range 3 {
		before := wrote.Load()
		rep, err := verify.Compare(ctx, src, dst, "acme", opts)
		if err != nil || !rep.OK {
			t.Fatalf("Compare under writes = %v (report %+v)", err, rep)
		}
		t.Logf("verified %d rows in %d+%d chunks while %d writes were made (%d catch-ups so far)",
			rep.Rows, rep.Tables[0].Chunks, rep.Tables[1].Chunks, wrote.Load()-before, catchUps.Load())
	}
	if wrote.Load() == 0 {
		t.Fatal("the writer made no write during the comparisons")
	}

	mustExec(t, dst, `UPDATE items SET name = 'planted' WHERE tenant_id = 'acme' AND id = 15000`)
	_, err := verify.Compare(ctx, src, dst, "acme", opts)
	var mm *verify.MismatchError
	if !errors.As(err, &mm) || mm.Table != "items" || len(mm.Keys) != 1 || !slices.Equal(mm.Keys[0], verify.Key{"15000"}) {
		t.Fatalf("Compare with a row changed on the target alone = %v, want item 15000 named", err)
	}
}
