package oms

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SeedHistory writes n fulfilled one-line orders (quantity 1 of product at
// location) for tenant in batches, with their fulfilments, and keeps the
// stock ledger exact: the shipped units are added to the stock ledger
// (inventory_adjustments) and to the position's shipped count, so
// on_hand + reserved + shipped = sum(delta) still holds. The position must
// exist. It is how the demo and the benchmarks give a tenant a realistic
// history quickly (the API would take minutes); it writes as a superuser,
// outside any router. progress, if not nil, is called after each batch.
// It ends with ANALYZE of the tables it filled, as a bulk load should:
// without statistics, the planner reads a seeded tenant's first page of
// orders by sorting all of them (seedAnalyzed).
func SeedHistory(ctx context.Context, db Beginner, tenant string, n int, product, location int64, progress func(done int)) error {
	const batch = 50_000
	for done := 0; done < n; {
		k := min(batch, n-done)
		if err := seedBatch(ctx, db, tenant, k, product, location); err != nil {
			return fmt.Errorf("seed history of %s: %w", tenant, err)
		}
		done += k
		if progress != nil {
			progress(done)
		}
	}
	if err := analyze(ctx, db, seedAnalyzed); err != nil {
		return fmt.Errorf("seed history of %s: %w", tenant, err)
	}
	return nil
}

// seedAnalyzed are the tables SeedHistory bulk-loads. Until they have
// statistics (autovacuum's first pass, up to a minute later), the planner
// takes orders for a few hundred rows and serves "GET /v1/orders?limit=20"
// with a bitmap scan of every order of the tenant and a sort, instead of
// the first 21 entries of orders_pkey (130–230 ms instead of 0.2 ms per
// page at 350,000 orders; TestSeedHistory_ListPlan).
var seedAnalyzed = []string{"orders", "order_lines", "fulfilments", "inventory_adjustments"}

// analyze runs ANALYZE on tables, in one transaction (ANALYZE, unlike
// VACUUM, may run in one).
func analyze(ctx context.Context, db Beginner, tables []string) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for _, t := range tables {
			if _, err := tx.Exec(ctx, "ANALYZE "+pgx.Identifier{t}.Sanitize()); err != nil {
				return fmt.Errorf("analyze %s: %w", t, err)
			}
		}
		return nil
	})
}

func seedBatch(ctx context.Context, db Beginner, tenant string, k int, product, location int64) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE inventory SET shipped = shipped + $4, updated_at = now()
			WHERE tenant_id = $1 AND product_id = $2 AND location_id = $3`, tenant, product, location, k)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("no stock position for product %d at location %d", product, location)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO inventory_adjustments (tenant_id, product_id, location_id, delta, reason)
			VALUES ($1, $2, $3, $4, 'receipt')`, tenant, product, location, k); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			WITH o AS (
				INSERT INTO orders (tenant_id, location_id, status, created_at, updated_at)
				SELECT $1, $3, 'fulfilled', now() - make_interval(secs => g), now()
				FROM generate_series(1, $4) g
				RETURNING id
			), l AS (
				INSERT INTO order_lines (tenant_id, order_id, line_no, product_id, quantity)
				SELECT $1, id, 1, $2, 1 FROM o
			)
			INSERT INTO fulfilments (tenant_id, order_id) SELECT $1, id FROM o`, tenant, product, location, k)
		return err
	})
}
