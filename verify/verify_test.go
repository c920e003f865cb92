package verify_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
		var chunks []string
		o := opts
		o.OnChunk = func(table string, chunk, n int, rows int64, last verify.Key) {
			chunks = append(chunks, fmt.Sprintf("%s %d/%d", table, chunk, n))
		}
		rep, err := verify.Compare(ctx, src, dst, "acme", o)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.Rows != 3000 || len(rep.Tables) != 2 || rep.Tables[0].Table != "items" || rep.Tables[0].Chunks != 11 {
			t.Fatalf("report = %+v", rep)
		}
		if len(chunks) != 11+21 || chunks[0] != "items 1/11" || chunks[len(chunks)-1] != "lines 21/21" {
			t.Fatalf("OnChunk calls = %v", chunks)
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
