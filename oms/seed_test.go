package oms_test

import (
	"context"
	"testing"

	"tenantry/oms"
	"tenantry/pgtest"
)

func TestSeedHistory(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))
	if err := oms.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec(ctx, `
		INSERT INTO products (tenant_id, id, sku, name) VALUES ('acme', 1, 's1', 'one');
		INSERT INTO locations (tenant_id, id, code, name) VALUES ('acme', 1, 'l1', 'one');
		INSERT INTO inventory (tenant_id, product_id, location_id, on_hand) VALUES ('acme', 1, 1, 10);
		INSERT INTO inventory_adjustments (tenant_id, product_id, location_id, delta, reason) VALUES ('acme', 1, 1, 10, 'set');`)
	if err != nil {
		t.Fatal(err)
	}
	var batches []int
	if err := oms.SeedHistory(ctx, pool, "acme", 60_001, 1, 1, func(done int) { batches = append(batches, done) }); err != nil {
		t.Fatal(err)
	}
	if len(batches) != 2 || batches[1] != 60_001 {
		t.Fatalf("progress = %v, want two batches ending at 60001", batches)
	}
	var orders, lines, fulfilments, shipped, onHand, ledger int64
	err = pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM orders WHERE tenant_id = 'acme' AND status = 'fulfilled'),
		(SELECT coalesce(sum(quantity), 0) FROM order_lines WHERE tenant_id = 'acme'),
		(SELECT count(*) FROM fulfilments WHERE tenant_id = 'acme'),
		(SELECT shipped FROM inventory WHERE tenant_id = 'acme'),
		(SELECT on_hand FROM inventory WHERE tenant_id = 'acme'),
		(SELECT sum(delta) FROM inventory_adjustments WHERE tenant_id = 'acme')`).
		Scan(&orders, &lines, &fulfilments, &shipped, &onHand, &ledger)
	if err != nil {
		t.Fatal(err)
	}
	if orders != 60_001 || lines != 60_001 || fulfilments != 60_001 || shipped != 60_001 {
		t.Fatalf("orders %d lines %d fulfilments %d shipped %d; want 60001 each", orders, lines, fulfilments, shipped)
	}
	if onHand+shipped != ledger {
		t.Fatalf("conservation: on_hand %d + shipped %d != ledger %d", onHand, shipped, ledger)
	}
	if err := oms.SeedHistory(ctx, pool, "acme", 1, 2, 1, nil); err == nil {
		t.Fatal("seeding a product without a stock position succeeded")
	}
}
