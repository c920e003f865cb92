package verify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/tenanttable"
)

// table compares one table: every range once, then the differing ranges
// again after CatchUp up to Recheck times, then names differing keys.
func (c *comparer) table(ctx context.Context, t tenanttable.Table) (*TableReport, *MismatchError, error) {
	start := time.Now()
	tr := &TableReport{Table: t.Name}
	ts, err := c.prepare(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	ranges, err := c.ranges(ctx, ts, c.opts.StartAfter[t.Name])
	if err != nil {
		return nil, nil, err
	}
	tr.Chunks = len(ranges)
	var differing []Range
	for i, r := range ranges {
		if !c.opts.Deadline.IsZero() && time.Now().After(c.opts.Deadline) {
			tr.Elapsed = time.Since(start)
			return tr, nil, fmt.Errorf("%w: table %s at range %d of %d", ErrDeadline, t.Name, i+1, len(ranges))
		}
		s, d, err := c.hashBoth(ctx, ts, r)
		if err != nil {
			return tr, nil, err
		}
		tr.Rows += s.count
		if s != d {
			differing = append(differing, r)
		}
		if c.opts.OnChunk != nil {
			c.opts.OnChunk(t.Name, i+1, len(ranges), tr.Rows, r.Upto)
		}
	}
	for try := 0; try < c.opts.Recheck && len(differing) > 0; try++ {
		if c.opts.CatchUp != nil {
			if err := c.opts.CatchUp(ctx); err != nil {
				return tr, nil, fmt.Errorf("catch up: %w", err)
			}
		}
		still := differing[:0]
		for _, r := range differing {
			s, d, err := c.hashBoth(ctx, ts, r)
			if err != nil {
				return tr, nil, err
			}
			if s != d {
				still = append(still, r)
			}
		}
		differing = still
	}
	tr.Elapsed = time.Since(start)
	tr.Mismatches = len(differing)
	if len(differing) == 0 {
		return tr, nil, nil
	}
	mm := &MismatchError{Table: t.Name, Ranges: differing}
	for _, r := range differing {
		if len(mm.Keys) >= c.opts.MaxKeys {
			break
		}
		keys, err := c.differingKeys(ctx, ts, r, c.opts.MaxKeys-len(mm.Keys))
		if err != nil {
			return tr, nil, err
		}
		mm.Keys = append(mm.Keys, keys...)
	}
	tr.Keys = mm.Keys
	return tr, mm, nil
}

// differingKeys compares per-row hashes of range r on both sides and
// returns up to limit keys that are changed, missing or extra.
func (c *comparer) differingKeys(ctx context.Context, ts *tableSQL, r Range, limit int) ([]Key, error) {
	sql, args := ts.rowHash(r), c.args(r)
	type rows = map[string]rowHash
	var s, d rows
	errc := make(chan error, 1)
	go func() {
		var err error
		d, err = c.rowHashes(ctx, c.dst, ts.nkey, sql, args)
		errc <- err
	}()
	s, serr := c.rowHashes(ctx, c.src, ts.nkey, sql, args)
	if derr := <-errc; derr != nil {
		return nil, fmt.Errorf("row hashes of %s on target: %w", ts.name, derr)
	}
	if serr != nil {
		return nil, fmt.Errorf("row hashes of %s on source: %w", ts.name, serr)
	}
	var out []Key
	add := func(k Key) bool {
		out = append(out, k)
		return len(out) < limit
	}
	for id, sr := range s {
		if dr, ok := d[id]; (!ok || dr.hash != sr.hash) && !add(sr.key) {
			return out, nil
		}
	}
	for id, dr := range d {
		if _, ok := s[id]; !ok && !add(dr.key) {
			return out, nil
		}
	}
	return out, nil
}

type rowHash struct {
	key  Key
	hash int64
}

func (c *comparer) rowHashes(ctx context.Context, conn *pgx.Conn, nkey int, sql string, args []any) (map[string]rowHash, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out := map[string]rowHash{}
	k := make(Key, nkey)
	var h int64
	dst := make([]any, nkey+1)
	for i := range k {
		dst[i] = &k[i]
	}
	dst[nkey] = &h
	_, err = pgx.ForEachRow(rows, dst, func() error {
		key := append(Key(nil), k...)
		out[strings.Join(key, "\x00")] = rowHash{key: key, hash: h}
		return nil
	})
	return out, err
}
