package oms_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/oms"
	"tenantry/pgtest"
	"tenantry/provision"
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

// TestSeedHistory_ListPlan checks that the list page right after a seed is
// read through an index, as the tenant's role sees it (row level security
// on): without statistics, the planner guessed a few hundred rows for
// tenant_id = $1 AND id > $2, fetched every seeded order with a bitmap
// scan and sorted them for LIMIT 21 (130–230 ms per page at 350,000
// orders, until autovacuum came by).
func TestSeedHistory_ListPlan(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))
	if err := oms.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := provision.SetupDatabase(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := provision.EnsureTenantRole(ctx, pool, "acme", "acme-password"); err != nil {
		t.Fatal(err)
	}
	// Autovacuum must not gather the statistics in SeedHistory's stead.
	_, err := pool.Exec(ctx, `
		ALTER TABLE orders SET (autovacuum_enabled = false);
		INSERT INTO products (tenant_id, id, sku, name) VALUES ('acme', 1, 's1', 'one');
		INSERT INTO locations (tenant_id, id, code, name) VALUES ('acme', 1, 'l1', 'one');
		INSERT INTO inventory (tenant_id, product_id, location_id, on_hand) VALUES ('acme', 1, 1, 10);`)
	if err != nil {
		t.Fatal(err)
	}
	if err := oms.SeedHistory(ctx, pool, "acme", 60_000, 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		sql   string
		args  []any
		index string
	}{
		{"all", oms.ListOrdersSQL(false), []any{"acme", 0, 21}, "orders_pkey"},
		{"by status", oms.ListOrdersSQL(true), []any{"acme", 0, 21, "reserved"}, "orders_status_idx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := tenantPlan(t, pool, "acme", tc.sql, tc.args...)
			if want := []string{"Limit", "Index Scan " + tc.index}; !slices.Equal(nodes, want) {
				t.Fatalf("plan %v, want %v", nodes, want)
			}
		})
	}
}

// tenantPlan returns the nodes of the plan of sql (with args, a custom
// plan) as tenant's role plans it, depth first: node type, then the
// index for index scans.
func tenantPlan(t *testing.T, pool *pgxpool.Pool, tenant, sql string, args ...any) []string {
	t.Helper()
	var doc []struct{ Plan planNode }
	err := pgx.BeginTxFunc(context.Background(), pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		ctx := context.Background()
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{provision.RoleName(tenant)}.Sanitize()); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&doc)
	})
	if err != nil || len(doc) != 1 {
		t.Fatalf("explain %s: %v (%d plans)", sql, err, len(doc))
	}
	var nodes []string
	var walk func(n planNode)
	walk = func(n planNode) {
		nodes = append(nodes, strings.TrimSpace(n.NodeType+" "+n.IndexName))
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(doc[0].Plan)
	return nodes
}

type planNode struct {
	NodeType  string     `json:"Node Type"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
}
