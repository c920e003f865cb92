package verify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/pgtest"
)

// TestCompare_RangeEdges is a property test of the range splitting: for
// tenants of 0, 1, 2 and more rows among other tenants' rows, with integer,
// text and composite keys, chunk sizes from 1 up, and the table read whole
// or sampled a page at a time, every row lies in exactly one range (the
// counts add up and identical copies compare equal) and any one changed,
// missing or extra row is found and named (texts has a column named x, the
// name of the row in the hash statement).
func TestCompare_RangeEdges(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	src, dst := pgtest.MustPool(t, c, pgtest.MustDB(t)), pgtest.MustPool(t, c, pgtest.MustDB(t))
	const schema = `
CREATE TABLE ints (tenant_id text NOT NULL, k bigint NOT NULL, v text, PRIMARY KEY (tenant_id, k));
CREATE TABLE texts (tenant_id text NOT NULL, k text NOT NULL, v text, x text DEFAULT 'x', PRIMARY KEY (tenant_id, k));
CREATE TABLE pairs (tenant_id text NOT NULL, a text NOT NULL, b int NOT NULL, v text, PRIMARY KEY (tenant_id, a, b));`
	for _, p := range []*pgxpool.Pool{src, dst} {
		if _, err := p.Exec(ctx, schema); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	// Keys that sort and cast awkwardly: quotes, spaces, commas,
	// parentheses, backslashes, non-ASCII, negative numbers.
	word := func() string {
		parts := []string{"a", "B", " ", "'", `"`, ",", "(", ")", `\`, "é", "日", "z9", "-1"}
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		return b.String()
	}
	newRow := func(table string) testRow {
		switch table {
		case "ints":
			return testRow{table, []any{rng.Int64N(1_000_000) - 500_000}}
		case "texts":
			return testRow{table, []any{word()}}
		}
		return testRow{table, []any{word(), rng.IntN(5)}}
	}
	exec := func(p *pgxpool.Pool, sql string, args ...any) {
		t.Helper()
		if _, err := p.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s %v: %v", sql, args, err)
		}
	}
	defer func(n int64) { samplePages = n }(samplePages)
	for _, n := range []int{0, 1, 2, 3, 57, 700} {
		for _, p := range []*pgxpool.Pool{src, dst} {
			exec(p, "TRUNCATE ints, texts, pairs")
		}
		// The same n rows of acme per table on both sides; other tenants'
		// rows, before and after acme in key order, differ.
		seen := map[string]bool{}
		var rows []testRow
		for _, table := range []string{"ints", "texts", "pairs"} {
			for countOf(rows, table) < n {
				r := newRow(table)
				if seen[r.id()] {
					continue
				}
				seen[r.id()] = true
				rows = append(rows, r)
				for _, p := range []*pgxpool.Pool{src, dst} {
					exec(p, r.insert(), r.args("acme")...)
				}
			}
		}
		for i := range 300 {
			r := newRow("ints")
			r.key[0] = int64(i)
			exec([]*pgxpool.Pool{src, dst}[i%2], r.insert(), r.args([]string{"aaa", "zzz"}[i%2])...)
		}
		for _, pages := range []int64{1024, 1} {
			samplePages = pages
			for _, chunk := range []int{1, 3, 10, 1000} {
				name := fmt.Sprintf("%d rows a table, chunk %d, sample %d pages", n, chunk, pages)
				opts := Options{ChunkRows: chunk, Parallel: 1 + rng.IntN(3), Recheck: -1}
				rep, err := Compare(ctx, src, dst, "acme", opts)
				if err != nil || !rep.OK || rep.Rows != int64(3*n) {
					t.Fatalf("%s: identical copies: %v, report %+v", name, err, rep)
				}
				if n == 0 {
					continue
				}
				// One row changed, missing or extra on the target.
				r := rows[rng.IntN(len(rows))]
				kind := rng.IntN(3)
				switch kind {
				case 0:
					exec(dst, r.update("changed"), r.args("acme")...)
				case 1:
					exec(dst, r.delete(), r.args("acme")...)
				case 2:
					for r = newRow(r.table); seen[r.id()]; r = newRow(r.table) {
					}
					exec(dst, r.insert(), r.args("acme")...)
				}
				_, err = Compare(ctx, src, dst, "acme", opts)
				var mm *MismatchError
				if !errors.As(err, &mm) || mm.Table != r.table || len(mm.Keys) != 1 || !slices.Equal(mm.Keys[0], r.keyText()) {
					t.Fatalf("%s: row %s %s (kind %d): Compare = %v", name, r.table, r.keyText(), kind, err)
				}
				switch kind {
				case 0:
					exec(dst, r.update("v"), r.args("acme")...)
				case 1:
					exec(dst, r.insert(), r.args("acme")...)
				case 2:
					exec(dst, r.delete(), r.args("acme")...)
				}
			}
		}
	}
}

// testRow is a row of TestCompare_RangeEdges: its table and key after
// tenant_id; its value column v is 'v'.
type testRow struct {
	table string
	key   []any
}

func (r testRow) id() string { return r.table + fmt.Sprintf("%q", r.key) }

func (r testRow) args(tenant string) []any { return append([]any{tenant}, r.key...) }

func (r testRow) keyText() Key {
	k := make(Key, len(r.key))
	for i, v := range r.key {
		k[i] = fmt.Sprint(v)
	}
	return k
}

func (r testRow) where() string {
	cols := map[string][]string{"ints": {"k"}, "texts": {"k"}, "pairs": {"a", "b"}}[r.table]
	w := "tenant_id = $1"
	for i, c := range cols {
		w += fmt.Sprintf(" AND %s = $%d", c, i+2)
	}
	return w
}

func (r testRow) insert() string {
	ps := make([]string, len(r.key)+1)
	for i := range ps {
		ps[i] = fmt.Sprintf("$%d", i+1)
	}
	return "INSERT INTO " + r.table + " VALUES (" + strings.Join(ps, ", ") + ", 'v')"
}

func (r testRow) update(v string) string {
	return "UPDATE " + r.table + " SET v = '" + v + "' WHERE " + r.where()
}

func (r testRow) delete() string { return "DELETE FROM " + r.table + " WHERE " + r.where() }

func countOf(rows []testRow, table string) (n int) {
	for _, r := range rows {
		if r.table == table {
			n++
		}
	}
	return n
}
