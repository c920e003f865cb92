package verify

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
	"tenantry/tenanttable"
)

// Compare compares tenant's rows in every tenant table of src with dst. It
// returns the report and, if rows still differ after the re-checks, a
// *MismatchError (errors.Is ErrMismatch); ErrDeadline if Options.Deadline
// passed first.
//
// One connection to the source splits the tables into ranges, table after
// table, while Options.Parallel pairs of connections (one to each side)
// hash the ranges found so far, both sides of a range at once.
func Compare(ctx context.Context, src, dst *pgxpool.Pool, tenant string, opts Options) (*Report, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	opts = withDefaults(opts)
	n := min(opts.Parallel, int(src.Config().MaxConns), int(dst.Config().MaxConns))
	c, err := open(ctx, src, dst, n)
	if err != nil {
		return nil, err
	}
	defer c.close(context.WithoutCancel(ctx))
	c.tenant, c.opts = tenant, opts
	tables, err := tenanttable.List(ctx, c.meta)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var runs []*tableRun
	for _, t := range tables {
		if slices.Contains(opts.SkipTables, t.Name) {
			continue
		}
		ts, err := prepareSQL(ctx, c.meta, t)
		if err != nil {
			return nil, err
		}
		runs = append(runs, &tableRun{sql: ts, after: opts.StartAfter[t.Name]})
	}
	rep := &Report{Tenant: tenant, OK: true}
	start := time.Now()
	c.progress = startProgress(opts.OnChunk)
	err = c.pass(ctx, runs)
	c.progress.stop()
	if err == nil {
		err = c.recheck(ctx, runs)
	}
	var mismatch *MismatchError
	if err == nil {
		mismatch, err = c.nameKeys(ctx, runs)
	}
	for _, t := range runs {
		if t.started.IsZero() {
			continue
		}
		rep.Tables = append(rep.Tables, t.report())
		rep.Rows += t.rows
		if len(t.differing) > 0 {
			rep.OK = false
		}
	}
	rep.finish(start)
	if err != nil {
		rep.OK = false
		return rep, err
	}
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
		o.ChunkRows = DefaultChunkRows
	}
	if o.Parallel <= 0 {
		o.Parallel = 2 * runtime.NumCPU()
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

// pair is one connection to each side; a range's two hashes run at once.
type pair struct{ src, dst *pgx.Conn }

type comparer struct {
	meta     *pgx.Conn // source: catalog and splitting
	pairs    []pair
	tenant   string
	opts     Options
	progress *progress

	mu sync.Mutex // guards every tableRun during a pass
}

// open opens the source's splitting session and n pairs, all at once.
func open(ctx context.Context, src, dst *pgxpool.Pool, n int) (*comparer, error) {
	c := &comparer{pairs: make([]pair, n)}
	conns := make([]*pgx.Conn, 1+2*n)
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i := range conns {
		pool, side := src, "source"
		if i > n {
			pool, side = dst, "target"
		}
		wg.Go(func() {
			if conns[i], errs[i] = session(ctx, pool); errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", side, errs[i])
			}
		})
	}
	wg.Wait()
	c.meta = conns[0]
	for i := range c.pairs {
		c.pairs[i] = pair{src: conns[1+i], dst: conns[1+n+i]}
	}
	for _, err := range errs {
		if err != nil {
			c.close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	return c, nil
}

func (c *comparer) close(ctx context.Context) {
	for _, conn := range append([]*pgx.Conn{c.meta}, c.conns()...) {
		if conn != nil {
			conn.Close(ctx)
		}
	}
}

func (c *comparer) conns() []*pgx.Conn {
	var out []*pgx.Conn
	for _, p := range c.pairs {
		out = append(out, p.src, p.dst)
	}
	return out
}

// tableRun is one table's progress; the comparer's mutex guards it.
type tableRun struct {
	sql       *tableSQL
	after     Key     // Options.StartAfter
	ranges    []Range // found so far, in key order
	done      []bool
	prefix    int // ranges[:prefix] are compared
	compared  int
	rows      int64
	differing []int // indexes into ranges
	keys      []Key
	started   time.Time
	elapsed   time.Duration
}

func (t *tableRun) report() TableReport {
	return TableReport{Table: t.sql.name, Rows: t.rows, Chunks: len(t.ranges), Mismatches: len(t.differing),
		Keys: t.keys, Elapsed: t.elapsed}
}

// job is one range to hash.
type job struct {
	t *tableRun
	i int
}

func (j job) r() Range { return j.t.ranges[j.i] }

// pass splits every table into ranges and compares each range once,
// len(c.pairs) at a time.
func (c *comparer) pass(ctx context.Context, runs []*tableRun) error {
	jobs := make(chan job, 2*len(c.pairs))
	return c.work(ctx, jobs, func(ctx context.Context) error {
		defer close(jobs)
		for _, t := range runs {
			c.mu.Lock()
			t.started = time.Now()
			c.mu.Unlock()
			err := split(ctx, c.meta, t.sql, c.tenant, c.opts.ChunkRows, t.after, func(r Range) error {
				if err := c.pastDeadline(t, -1); err != nil {
					return err
				}
				c.mu.Lock()
				t.ranges = append(t.ranges, r)
				t.done = append(t.done, false)
				j := job{t: t, i: len(t.ranges) - 1}
				c.mu.Unlock()
				select {
				case jobs <- j:
					return nil
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			})
			if err != nil {
				return err
			}
		}
		return nil
	}, func(ctx context.Context, p pair, j job) error {
		c.mu.Lock()
		r := j.r()
		c.mu.Unlock()
		if err := c.pastDeadline(j.t, j.i); err != nil {
			return err
		}
		s, d, err := p.hash(ctx, j.t.sql, c.tenant, r)
		if err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.compared(j, s, d)
		return nil
	})
}

// compared records job j's result; c.mu is held.
func (c *comparer) compared(j job, s, d sum) {
	t := j.t
	t.rows += s.count
	t.compared++
	t.done[j.i] = true
	for t.prefix < len(t.done) && t.done[t.prefix] {
		t.prefix++
	}
	if s != d {
		t.differing = append(t.differing, j.i)
	}
	t.elapsed = time.Since(t.started)
	last := t.after
	if t.prefix > 0 {
		last = t.ranges[t.prefix-1].Upto
	}
	c.progress.post(chunkState{table: t.sql.name, chunk: t.compared, chunks: len(t.ranges), rows: t.rows, last: last})
}

// pastDeadline returns ErrDeadline once Options.Deadline passed; i is the
// range about to be compared, -1 while splitting.
func (c *comparer) pastDeadline(t *tableRun, i int) error {
	if c.opts.Deadline.IsZero() || time.Now().Before(c.opts.Deadline) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 {
		i = len(t.ranges)
	}
	return fmt.Errorf("%w: table %s at range %d of %d found (%d compared)",
		ErrDeadline, t.sql.name, i+1, len(t.ranges), t.compared)
}

// recheck compares the differing ranges again after Options.CatchUp, up to
// Options.Recheck times, and keeps those that still differ.
func (c *comparer) recheck(ctx context.Context, runs []*tableRun) error {
	for try := 0; try < c.opts.Recheck; try++ {
		var todo []job
		for _, t := range runs {
			for _, i := range t.differing {
				todo = append(todo, job{t: t, i: i})
			}
			t.differing = nil
		}
		if len(todo) == 0 {
			return nil
		}
		if c.opts.CatchUp != nil {
			if err := c.opts.CatchUp(ctx); err != nil {
				return fmt.Errorf("catch up: %w", err)
			}
		}
		jobs := make(chan job, len(todo))
		for _, j := range todo {
			jobs <- j
		}
		close(jobs)
		err := c.work(ctx, jobs, nil, func(ctx context.Context, p pair, j job) error {
			s, d, err := p.hash(ctx, j.t.sql, c.tenant, j.r())
			if err != nil || s == d {
				return err
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			j.t.differing = append(j.t.differing, j.i)
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, t := range runs {
		slices.Sort(t.differing)
	}
	return nil
}

// nameKeys names up to Options.MaxKeys differing keys per table with
// differences and returns the first such table's *MismatchError.
func (c *comparer) nameKeys(ctx context.Context, runs []*tableRun) (*MismatchError, error) {
	var first *MismatchError
	for _, t := range runs {
		if len(t.differing) == 0 {
			continue
		}
		mm := &MismatchError{Table: t.sql.name}
		for _, i := range t.differing {
			mm.Ranges = append(mm.Ranges, t.ranges[i])
		}
		for _, r := range mm.Ranges {
			if len(mm.Keys) >= c.opts.MaxKeys {
				break
			}
			keys, err := c.pairs[0].differingKeys(ctx, t.sql, c.tenant, r, c.opts.MaxKeys-len(mm.Keys))
			if err != nil {
				return nil, err
			}
			mm.Keys = append(mm.Keys, keys...)
		}
		t.keys = mm.Keys
		if first == nil {
			first = mm
		}
	}
	return first, nil
}

// work runs do on every job of jobs, one worker per pair, while produce
// (if not nil) fills jobs and closes it. The first error cancels the rest
// and is returned.
func (c *comparer) work(ctx context.Context, jobs <-chan job, produce func(ctx context.Context) error,
	do func(ctx context.Context, p pair, j job) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, p := range c.pairs {
		wg.Go(func() {
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := do(ctx, p, j); err != nil {
					cancel(err)
				}
			}
		})
	}
	if produce != nil {
		if err := produce(ctx); err != nil {
			cancel(err)
		}
	}
	wg.Wait()
	return context.Cause(ctx)
}

type sum struct {
	count int64
	hash  int64
}

// hash computes a range's count and hash on both sides at once.
func (p pair) hash(ctx context.Context, ts *tableSQL, tenant string, r Range) (s, d sum, err error) {
	sql, a := ts.hash(r), args(tenant, r)
	errc := make(chan error, 1)
	go func() { errc <- p.dst.QueryRow(ctx, sql, a...).Scan(&d.count, &d.hash) }()
	serr := p.src.QueryRow(ctx, sql, a...).Scan(&s.count, &s.hash)
	derr := <-errc
	if serr != nil {
		return s, d, fmt.Errorf("hash %s on source: %w", ts.name, serr)
	}
	if derr != nil {
		return s, d, fmt.Errorf("hash %s on target: %w", ts.name, derr)
	}
	return s, d, nil
}
