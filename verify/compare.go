package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
	"tenantry/tenanttable"
)

// sessionSettings make a row's text form identical on both sides.
const sessionSettings = `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3;
SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'`

// Compare compares tenant's rows in every tenant table of src with dst. It
// returns the report and, if rows still differ after the re-checks, a
// *MismatchError (errors.Is ErrMismatch); ErrDeadline if Options.Deadline
// passed first.
func Compare(ctx context.Context, src, dst *pgxpool.Pool, tenant string, opts Options) (*Report, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	opts = withDefaults(opts)
	s, err := session(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer s.Close(context.WithoutCancel(ctx))
	d, err := session(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	defer d.Close(context.WithoutCancel(ctx))
	tables, err := tenanttable.List(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	c := &comparer{src: s, dst: d, tenant: tenant, opts: opts}
	rep := &Report{Tenant: tenant, OK: true}
	start := time.Now()
	var mismatch *MismatchError
	for _, t := range tables {
		if slices.Contains(opts.SkipTables, t.Name) {
			continue
		}
		tr, mm, err := c.table(ctx, t)
		if tr != nil {
			rep.Tables = append(rep.Tables, *tr)
			rep.Rows += tr.Rows
		}
		if err != nil {
			rep.OK = false
			rep.finish(start)
			return rep, err
		}
		if mm != nil {
			rep.OK = false
			if mismatch == nil {
				mismatch = mm
			}
		}
	}
	rep.finish(start)
	if mismatch != nil {
		return rep, mismatch
	}
	return rep, nil
}

func (r *Report) finish(start time.Time) {
	r.Elapsed = time.Since(start)
	if s := r.Elapsed.Seconds(); s > 0 {
		r.RowsPerSec = float64(r.Rows) / s
	}
}

func withDefaults(o Options) Options {
	if o.ChunkRows <= 0 {
		o.ChunkRows = 10_000
	}
	if o.Recheck == 0 {
		o.Recheck = 3
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 20
	}
	return o
}

// session takes a connection out of pool for the comparison and sets the
// settings that fix row text; it is closed afterwards rather than returned
// to the pool with changed settings.
func session(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, sessionSettings); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("set session: %w", err)
	}
	return conn, nil
}

type comparer struct {
	src, dst *pgx.Conn
	tenant   string
	opts     Options
}

// tableSQL holds one table's statements; key bounds are text parameters
// cast to the key columns' types.
type tableSQL struct {
	name     string
	nkey     int
	boundary string // next upper bound after $2.. (OFFSET chunk-1)
	first    string // first upper bound
	hash     func(r Range) string
	rowHash  func(r Range) string
}

func (c *comparer) prepare(ctx context.Context, t tenanttable.Table) (*tableSQL, error) {
	keyCols := t.PK[1:]
	types := make([]string, len(keyCols))
	for i, col := range keyCols {
		if err := c.src.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
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
	order := "x.tenant_id, " + strings.Join(quoted, ", ")
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
	ts := &tableSQL{name: t.Name, nkey: len(keyCols)}
	ts.first = "SELECT " + strings.Join(asText, ", ") + from + "x.tenant_id = $1 ORDER BY " + order + " OFFSET $2 LIMIT 1"
	ts.boundary = "SELECT " + strings.Join(asText, ", ") + from + "x.tenant_id = $1 AND " + keyTuple + " > " + bound(3) +
		" ORDER BY " + order + " OFFSET $2 LIMIT 1"
	ts.hash = func(r Range) string {
		return "SELECT count(*), coalesce(bit_xor(hashtextextended(x::text, 0)), 0)" + from + where(r)
	}
	ts.rowHash = func(r Range) string {
		return "SELECT " + strings.Join(asText, ", ") + ", hashtextextended(x::text, 0)" + from + where(r)
	}
	return ts, nil
}

// args returns the parameters for where(r).
func (c *comparer) args(r Range) []any {
	a := []any{c.tenant}
	for _, k := range r.After {
		a = append(a, k)
	}
	for _, k := range r.Upto {
		a = append(a, k)
	}
	return a
}

// ranges walks the source's key index from after and returns the ranges of
// ChunkRows rows each; the last is open-ended.
func (c *comparer) ranges(ctx context.Context, ts *tableSQL, after Key) ([]Range, error) {
	var out []Range
	lo := after
	for {
		var row pgx.Row
		if lo == nil {
			row = c.src.QueryRow(ctx, ts.first, c.tenant, c.opts.ChunkRows-1)
		} else {
			args := []any{c.tenant, c.opts.ChunkRows - 1}
			for _, k := range lo {
				args = append(args, k)
			}
			row = c.src.QueryRow(ctx, ts.boundary, args...)
		}
		hi := make(Key, ts.nkey)
		dst := make([]any, ts.nkey)
		for i := range hi {
			dst[i] = &hi[i]
		}
		err := row.Scan(dst...)
		if errors.Is(err, pgx.ErrNoRows) {
			return append(out, Range{After: lo}), nil
		}
		if err != nil {
			return nil, fmt.Errorf("split %s into ranges: %w", ts.name, err)
		}
		out = append(out, Range{After: lo, Upto: hi})
		lo = hi
	}
}

type sum struct {
	count int64
	hash  int64
}

// hashBoth computes a range's count and hash on both sides at once.
func (c *comparer) hashBoth(ctx context.Context, ts *tableSQL, r Range) (s, d sum, err error) {
	sql, args := ts.hash(r), c.args(r)
	errc := make(chan error, 1)
	go func() { errc <- c.dst.QueryRow(ctx, sql, args...).Scan(&d.count, &d.hash) }()
	serr := c.src.QueryRow(ctx, sql, args...).Scan(&s.count, &s.hash)
	derr := <-errc
	if serr != nil {
		return s, d, fmt.Errorf("hash %s on source: %w", ts.name, serr)
	}
	if derr != nil {
		return s, d, fmt.Errorf("hash %s on target: %w", ts.name, derr)
	}
	return s, d, nil
}
