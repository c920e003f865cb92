package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"tenantry/tenanttable"
)

// sessionSettings make a row's text form identical on both sides: every
// setting that changes the output of a column type (time zone, date and
// interval styles, float digits, bytea and money formats). A custom plan
// for every range keeps the bitmap scan the planner picks for a range's
// bounds; the generic plan a prepared statement falls back to after five
// runs scans the index row by row, about half again as slow.
const sessionSettings = `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3;
SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; SET lc_monetary = 'C';
SET plan_cache_mode = force_custom_plan`

// rowHashSQL is the hash of one row: its whole text form, so that any changed
// column changes it. XOR of the row hashes is order-independent, so a
// range's hash needs no sort; count(*) catches a pair of identical rows
// cancelling out. The row is (x.*), never x: a column named x would win
// over the table alias and only that column would be hashed.
const rowHashSQL = "hashtextextended((x.*)::text, 0)"

// tableSQL holds one table's statements; key bounds are text parameters
// cast to the key columns' types, so any key type works.
type tableSQL struct {
	name    string
	nkey    int
	pages   string // the table's size in pages
	whole   string // count and hash of the tenant's rows, no bounds
	hash    func(r Range) string
	rowHash func(r Range) string
	// sample returns every $3rd key of a $2 percent page sample of the
	// tenant's rows ($1), after the key at $4.. if after.
	sample func(after bool) string
}

// queryRower is a *pgx.Conn or a *pgxpool.Pool.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// prepareSQL reads the key columns' types of t on q and builds its
// statements.
func prepareSQL(ctx context.Context, q queryRower, t tenanttable.Table) (*tableSQL, error) {
	keyCols := t.PK[1:]
	types := make([]string, len(keyCols))
	for i, col := range keyCols {
		if err := q.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
			WHERE attrelid = $1::regclass AND attname = $2`, t.Ident(), col).Scan(&types[i]); err != nil {
			return nil, fmt.Errorf("read key type %s.%s: %w", t.Name, col, err)
		}
	}
	quoted := make([]string, len(keyCols))
	asText := make([]string, len(keyCols))
	for i, col := range keyCols {
		quoted[i] = "x." + pgx.Identifier{col}.Sanitize()
		asText[i] = quoted[i] + "::text"
	}
	keyTuple := "(" + strings.Join(quoted, ", ") + ")"
	// bound renders ($n::text::type, ...) for key parameters starting at n.
	bound := func(n int) string {
		ps := make([]string, len(types))
		for i, ty := range types {
			ps[i] = fmt.Sprintf("$%d::text::%s", n+i, ty)
		}
		return "(" + strings.Join(ps, ", ") + ")"
	}
	where := func(r Range) string {
		w, n := "x.tenant_id = $1", 2
		if r.After != nil {
			w += " AND " + keyTuple + " > " + bound(n)
			n += len(types)
		}
		if r.Upto != nil {
			w += " AND " + keyTuple + " <= " + bound(n)
		}
		return w
	}
	from := " FROM " + t.Ident() + " x WHERE "
	hash := "SELECT count(*), coalesce(bit_xor(" + rowHashSQL + "), 0)" + from
	ts := &tableSQL{name: t.Name, nkey: len(keyCols)}
	ts.pages = "SELECT pg_relation_size(" + quoteLiteral(t.Ident()) + "::regclass) / current_setting('block_size')::bigint"
	ts.sample = func(after bool) string {
		w := "x.tenant_id = $1"
		if after {
			w += " AND " + keyTuple + " > " + bound(4)
		}
		return "SELECT " + strings.Join(asText, ", ") + " FROM (SELECT " + strings.Join(quoted, ", ") +
			", row_number() OVER (ORDER BY " + strings.Join(quoted, ", ") + ") AS rn FROM " + t.Ident() +
			" x TABLESAMPLE SYSTEM ($2::float8) WHERE " + w + ") x WHERE x.rn % $3::bigint = 0 ORDER BY x.rn"
	}
	ts.whole = hash + "x.tenant_id = $1"
	ts.hash = func(r Range) string { return hash + where(r) }
	ts.rowHash = func(r Range) string {
		return "SELECT " + strings.Join(asText, ", ") + ", " + rowHashSQL + from + where(r)
	}
	return ts, nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// args returns the parameters for a statement over r.
func args(tenant string, r Range) []any {
	a := []any{tenant}
	for _, k := range r.After {
		a = append(a, k)
	}
	for _, k := range r.Upto {
		a = append(a, k)
	}
	return a
}
