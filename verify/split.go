package verify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// samplePages is about how many pages of a table split reads to place its
// range bounds: enough that ranges come out within about a factor of two of
// the chunk, few enough that sampling (and sorting the sampled keys) costs
// about a hundredth of hashing the rows: 10-13 ms for a 350k-row table of
// 3,500 pages, where walking every key of the index costs 30-80 ms and a
// sample of 1,024 pages 70-100 ms. A variable so that tests can sample
// small tables.
var samplePages int64 = 256

// split places ts's range bounds on conn and passes emit the ranges in key
// order, from after (nil: the start) to the open end. The bounds are keys
// of a page sample of the table (TABLESAMPLE SYSTEM, about samplePages
// pages; the whole table when it is no larger), one every chunk rows of the
// tenant as the sample scales up: ranges of about chunk rows, found for a
// small fraction of what an index walk over every key costs (ORDER BY key
// OFFSET chunk), whatever the key's type or distribution. A range may hold
// more or fewer rows than chunk; every key lies in exactly one range, and
// an empty tenant or sample gives one range (after, end]. emit's error stops
// the walk.
func split(ctx context.Context, conn *pgx.Conn, ts *tableSQL, tenant string, chunk int, after Key, emit func(Range) error) error {
	var pages int64
	if err := conn.QueryRow(ctx, ts.pages).Scan(&pages); err != nil {
		return fmt.Errorf("size of %s: %w", ts.name, err)
	}
	pct := 100.0
	if pages > samplePages {
		pct = 100 * float64(samplePages) / float64(pages)
	}
	// One sampled row stands for 100/pct rows: a bound every step sampled
	// rows is a bound every chunk rows.
	step := max(1, int64(float64(chunk)*pct/100+0.5))
	a := []any{tenant, pct, step}
	for _, k := range after {
		a = append(a, k)
	}
	rows, err := conn.Query(ctx, ts.sample(after != nil), a...)
	if err != nil {
		return fmt.Errorf("sample %s: %w", ts.name, err)
	}
	var bounds []Key
	hi := make(Key, ts.nkey)
	dst := make([]any, ts.nkey)
	for i := range hi {
		dst[i] = &hi[i]
	}
	_, err = pgx.ForEachRow(rows, dst, func() error {
		bounds = append(bounds, append(Key(nil), hi...))
		return nil
	})
	if err != nil {
		return fmt.Errorf("sample %s: %w", ts.name, err)
	}
	lo := after
	for _, b := range bounds {
		if err := emit(Range{After: lo, Upto: b}); err != nil {
			return err
		}
		lo = b
	}
	return emit(Range{After: lo})
}
