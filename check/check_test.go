package check_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/check"
	"tenantry/load"
	"tenantry/oms"
	"tenantry/pgtest"
	"tenantry/tenantsig"
	"tenantry/tenanttable"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var headerKey = tenantsig.StackKey(tenantsig.RootKey([]byte("check-test-secret")), "check")

// startOMS serves a real OMS on a fresh migrated database behind a thin
// front that plays the gateway: it maps the bearer API key "key-<tenant>"
// to the tenant and signs the tenant header.
func startOMS(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.MustPool(t, pgtest.MustCluster(t), pgtest.MustDB(t))
	if err := oms.Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	srv, err := oms.NewServer(oms.Config{DB: oms.PoolDB{Pool: pool}, HeaderKey: headerKey, Stack: "check"})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer key-")
		if !ok {
			http.Error(w, `{"error":{"code":"unauthenticated"}}`, http.StatusUnauthorized)
			return
		}
		tenantsig.SignRequest(r, headerKey, tenant, "check", time.Now())
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return pool, front.URL
}

// runLoad sets up two tenants and drives load for a short while, returning
// the ledger.
func runLoad(t *testing.T, url string) []byte {
	t.Helper()
	var ledger bytes.Buffer
	cfg := load.Config{
		BaseURL:     url,
		Targets:     []load.Target{{Tenant: "acme", APIKey: "key-acme"}, {Tenant: "globex", APIKey: "key-globex"}},
		Concurrency: 4,
		Duration:    2 * time.Second,
		Mix:         load.Mix{PlaceOrder: 0.6, Read: 0.1, FulfilCancel: 0.3},
		Ledger:      &ledger,
		Seed:        7,
	}
	ctx := context.Background()
	cat, err := load.Setup(ctx, cfg, load.SetupOptions{Products: 4, Locations: 2, Stock: 40})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	sum, err := load.Run(ctx, cfg, cat, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.Failures != 0 || sum.AckedByOp["place_order"] == 0 || sum.AckedByOp["fulfil"] == 0 || sum.AckedByOp["cancel"] == 0 || sum.Refused == 0 {
		t.Fatalf("load did not exercise the service cleanly: %+v", sum.Stats)
	}
	return ledger.Bytes()
}

// ackedOrder returns an order of tenant whose placement and, if op is not
// empty, op the ledger acknowledges.
func ackedOrder(t *testing.T, ledger []byte, tenant string, op load.Op) int64 {
	t.Helper()
	placed := map[int64]bool{}
	var found int64
	_ = load.ReadLedger(bytes.NewReader(ledger), func(r load.Record) error {
		if r.Tenant != tenant || r.Outcome != load.OutcomeAck || found != 0 {
			return nil
		}
		switch {
		case r.Op == load.OpPlaceOrder && op == "":
			found = r.OrderID
		case r.Op == load.OpPlaceOrder:
			placed[r.OrderID] = true
		case r.Op == op && placed[r.OrderID]:
			found = r.OrderID
		}
		return nil
	})
	if found == 0 {
		t.Fatalf("no acknowledged %q order of %s in the ledger", op, tenant)
	}
	return found
}

func checkWith(t *testing.T, ledger []byte, db check.Querier) *check.Report {
	t.Helper()
	rep, err := check.Check(context.Background(), bytes.NewReader(ledger), func(_ context.Context, tenant string) (check.Querier, error) {
		if tenant != "acme" && tenant != "globex" {
			return nil, fmt.Errorf("unknown tenant %s", tenant)
		}
		return db, nil
	}, check.Options{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep
}

func hasViolation(rep *check.Report, kind, table, key string) bool {
	for _, v := range rep.Violations {
		if v.Kind == kind && v.Tenant == "acme" && v.Table == table && v.Key == key {
			return true
		}
	}
	return false
}

func TestCheck_LoadAgainstRealOMS(t *testing.T) {
	pool, url := startOMS(t)
	ledger := runLoad(t, url)
	ctx := context.Background()

	rep := checkWith(t, ledger, pool)
	if !rep.OK || len(rep.Violations) != 0 {
		t.Fatalf("clean run has violations: %v", rep.Violations)
	}
	if rep.Tenants != 2 || rep.Orders == 0 || rep.OrdersInDB < rep.Orders || rep.Positions != 2*4*2 || rep.Fulfils == 0 || rep.Cancels == 0 {
		t.Fatalf("report counts %+v", rep)
	}

	t.Logf("clean run: %d tenants, %d acked orders (%d in db), %d fulfils, %d cancels, %d refusals, %d positions", rep.Tenants, rep.Orders, rep.OrdersInDB, rep.Fulfils, rep.Cancels, rep.Refusals, rep.Positions)

	// Each tampering runs in a transaction that is rolled back, so every
	// case starts from the clean database.
	reserved := ackedOrder(t, ledger, "acme", "")
	fulfilled := ackedOrder(t, ledger, "acme", load.OpFulfil)
	orderKey := func(id int64) string { return fmt.Sprintf("order_id=%d", id) }
	tests := []struct {
		name   string
		tamper func(tx pgx.Tx) (table, key string, kind string)
	}{
		{"deleted order", func(tx pgx.Tx) (string, string, string) {
			mustExec(t, tx, `DELETE FROM fulfilments WHERE tenant_id = 'acme' AND order_id = $1`, reserved)
			mustExec(t, tx, `DELETE FROM order_lines WHERE tenant_id = 'acme' AND order_id = $1`, reserved)
			mustExec(t, tx, `DELETE FROM orders WHERE tenant_id = 'acme' AND id = $1`, reserved)
			return "orders", orderKey(reserved), check.KindMissingOrder
		}},
		{"duplicated line", func(tx pgx.Tx) (string, string, string) {
			mustExec(t, tx, `INSERT INTO order_lines (tenant_id, order_id, line_no, product_id, quantity)
SELECT tenant_id, order_id, line_no + 100, product_id, quantity FROM order_lines
WHERE tenant_id = 'acme' AND order_id = $1 AND line_no = 1`, reserved)
			return "order_lines", orderKey(reserved), check.KindOrderLines
		}},
		{"changed on_hand", func(tx pgx.Tx) (string, string, string) {
			var p, l int64
			if err := tx.QueryRow(context.Background(), `UPDATE inventory SET on_hand = on_hand + 1
WHERE tenant_id = 'acme' AND (product_id, location_id) = (SELECT product_id, location_id FROM inventory WHERE tenant_id = 'acme' ORDER BY 1, 2 LIMIT 1)
RETURNING product_id, location_id`).Scan(&p, &l); err != nil {
				t.Fatalf("tamper: %v", err)
			}
			return "inventory", fmt.Sprintf("product_id=%d location_id=%d", p, l), check.KindConservation
		}},
		{"fulfilled order cancelled", func(tx pgx.Tx) (string, string, string) {
			mustExec(t, tx, `DELETE FROM fulfilments WHERE tenant_id = 'acme' AND order_id = $1`, fulfilled)
			mustExec(t, tx, `UPDATE orders SET status = 'cancelled' WHERE tenant_id = 'acme' AND id = $1`, fulfilled)
			return "orders", orderKey(fulfilled), check.KindStatus
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			table, key, kind := tc.tamper(tx)
			rep := checkWith(t, ledger, tx)
			if rep.OK || !hasViolation(rep, kind, table, key) {
				t.Fatalf("want %s violation on %s %s of acme, got %v", kind, table, key, rep.Violations)
			}
		})
	}

	// Check reads the tenant tables from the catalog (tenanttable): a table
	// that breaks the tenant data rules is reported, not skipped.
	t.Run("table breaking the tenant data rules", func(t *testing.T) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		mustExec(t, tx, `CREATE TABLE stray (tenant_id text NOT NULL, id bigint PRIMARY KEY)`)
		_, err = check.Check(ctx, bytes.NewReader(ledger), func(context.Context, string) (check.Querier, error) { return tx, nil }, check.Options{})
		if !errors.Is(err, tenanttable.ErrRules) || !strings.Contains(err.Error(), "stray") {
			t.Fatalf("Check with a stray table = %v, want ErrRules naming it", err)
		}
	})

	t.Run("order acknowledged for two keys", func(t *testing.T) {
		forged := fmt.Sprintf(`{"op":"place_order","outcome":"ack","tenant":"acme","key":"forged","order_id":%d,"at":"2025-01-01T00:00:00Z"}`+"\n", reserved)
		rep := checkWith(t, append(append([]byte(nil), ledger...), forged...), pool)
		if rep.OK || !hasViolation(rep, check.KindLedger, "ledger", orderKey(reserved)) {
			t.Fatalf("want a ledger violation for order %d, got %v", reserved, rep.Violations)
		}
	})
}

func mustExec(t *testing.T, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}
