package logrepl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
)

// both runs f against src and dst at the same time and returns the first
// error. The two Queriers must be distinct connections.
func both(ctx context.Context, src, dst Querier, f func(ctx context.Context, q Querier, onSrc bool) error) error {
	var wg sync.WaitGroup
	var dstErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		dstErr = f(ctx, dst, false)
	}()
	srcErr := f(ctx, src, true)
	wg.Wait()
	if srcErr != nil {
		return srcErr
	}
	return dstErr
}

// CountRows counts the tenant's rows in each table (keyed by the names as
// given), in one statement and so in one snapshot.
func CountRows(ctx context.Context, q Querier, tenant string, tables []string) (map[string]int64, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	ts, err := parseTables(tables)
	if err != nil {
		return nil, err
	}
	cols := make([]string, len(ts))
	for i, t := range ts {
		cols[i] = "(SELECT count(*) FROM " + t.ident() + " WHERE tenant_id = $1)"
	}
	counts := make([]int64, len(ts))
	dest := make([]any, len(ts))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := q.QueryRow(ctx, "SELECT "+strings.Join(cols, ", "), tenant).Scan(dest...); err != nil {
		return nil, fmt.Errorf("count rows of %s: %w", tenant, err)
	}
	out := make(map[string]int64, len(ts))
	for i, n := range tables {
		out[n] = counts[i]
	}
	return out, nil
}

// CountMismatch is one table whose tenant row counts differ.
type CountMismatch struct {
	Table          string `json:"table"`
	Source, Target int64
}

// CountBoth counts the tenant's rows on src and dst at the same time, so
// that inside the promotion pause the cost is one scan time, not two, and
// returns both counts and the tables where they differ (ordered as given).
func CountBoth(ctx context.Context, src, dst Querier, tenant string, tables []string) (srcCounts, dstCounts map[string]int64, diff []CountMismatch, err error) {
	err = both(ctx, src, dst, func(ctx context.Context, q Querier, onSrc bool) error {
		c, err := CountRows(ctx, q, tenant, tables)
		if onSrc {
			srcCounts = c
		} else {
			dstCounts = c
		}
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	for _, t := range tables {
		if srcCounts[t] != dstCounts[t] {
			diff = append(diff, CountMismatch{Table: t, Source: srcCounts[t], Target: dstCounts[t]})
		}
	}
	return srcCounts, dstCounts, diff, nil
}

// PurgeTenant deletes the tenant's rows from tables, which must be ordered
// parents before the tables whose foreign keys reference them (as
// tenanttable.List returns them): the last table first, batch rows per
// transaction so no lock
// is held long and no huge transaction is written. Rows of other tenants
// are never touched: every DELETE filters on tenant_id. onProgress (if not
// nil) is called after every batch with the table and the rows deleted from
// it so far. Idempotent: a re-run deletes what is left.
func PurgeTenant(ctx context.Context, q Querier, tenant string, tables []string, batch int, onProgress func(table string, deleted int64)) (map[string]int64, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	if batch <= 0 {
		return nil, fmt.Errorf("%w: purge batch %d must be positive", registry.ErrInvalid, batch)
	}
	ts, err := parseTables(tables)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(ts))
	for i := len(ts) - 1; i >= 0; i-- {
		t := ts[i]
		sql := "DELETE FROM " + t.ident() + " WHERE tenant_id = $1 AND ctid = ANY(ARRAY(SELECT ctid FROM " +
			t.ident() + " WHERE tenant_id = $1 LIMIT $2))"
		for {
			tag, err := q.Exec(ctx, sql, tenant, batch)
			if err != nil {
				return out, fmt.Errorf("purge %s from %s: %w", tenant, t, err)
			}
			if tag.RowsAffected() == 0 {
				break
			}
			out[t.String()] += tag.RowsAffected()
			if onProgress != nil {
				onProgress(t.String(), out[t.String()])
			}
		}
	}
	return out, nil
}

// CountBothParallel is CountBoth with every table counted on its own
// connection, both sides and up to four tables per side at once: inside the
// promotion pause the cost is then about the largest table's scan, not the
// sum of all of them. src and dst must be pools (safe for concurrent use).
func CountBothParallel(ctx context.Context, src, dst *pgxpool.Pool, tenant string, tables []string) (diff []CountMismatch, err error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	ts, err := parseTables(tables)
	if err != nil {
		return nil, err
	}
	type result struct {
		i        int
		src, dst int64
		err      error
	}
	results := make([]result, len(ts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			q := "SELECT count(*) FROM " + t.ident() + " WHERE tenant_id = $1"
			res := result{i: i}
			var swg sync.WaitGroup
			var derr error
			swg.Add(1)
			go func() {
				defer swg.Done()
				derr = dst.QueryRow(ctx, q, tenant).Scan(&res.dst)
			}()
			serr := src.QueryRow(ctx, q, tenant).Scan(&res.src)
			swg.Wait()
			res.err = errors.Join(serr, derr)
			results[i] = res
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			return nil, fmt.Errorf("count rows of %s in %s: %w", tenant, tables[i], r.err)
		}
		if r.src != r.dst {
			diff = append(diff, CountMismatch{Table: tables[i], Source: r.src, Target: r.dst})
		}
	}
	return diff, nil
}

// Vacuum runs VACUUM (ANALYZE) on tables: after a bulk copy it sets the
// visibility map, so that index-only counts inside a later pause do not
// visit the heap, and gives the planner statistics.
func Vacuum(ctx context.Context, q Querier, tables []string) error {
	ts, err := parseTables(tables)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if _, err := q.Exec(ctx, "VACUUM (ANALYZE) "+t.ident()); err != nil {
			return fmt.Errorf("vacuum %s: %w", t, err)
		}
	}
	return nil
}
