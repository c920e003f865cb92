package backup_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tenantry/backup"
	"tenantry/localpg"
	"tenantry/pgtest"
	"tenantry/registry"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const schema = `
CREATE TABLE customers (
  tenant_id text NOT NULL, id bigserial, name text NOT NULL, created timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id));
CREATE SEQUENCE order_ids;
CREATE TABLE orders (
  tenant_id text NOT NULL, id bigint NOT NULL DEFAULT nextval('order_ids'), customer bigint NOT NULL,
  amount numeric(12,2), note text, PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, customer) REFERENCES customers (tenant_id, id));
CREATE TABLE oms_schema_version (version int PRIMARY KEY);
INSERT INTO oms_schema_version VALUES (1), (7);`

const seed = `
INSERT INTO customers (tenant_id, name) SELECT t, t || ' customer ' || g FROM generate_series(1, 300) g, unnest(ARRAY['acme', 'other']) t;
INSERT INTO orders (tenant_id, customer, amount, note)
  SELECT c.tenant_id, c.id, g * 1.5, E'line\nwith \\ tab\t and ''quote''' FROM customers c, generate_series(1, 3) g;`

func mustTenantDB(t *testing.T, c *localpg.Cluster, sql ...string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := c.Connect(ctx, pgtest.MustDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

func rowsOf(t *testing.T, conn *pgx.Conn, table, tenant string) string {
	t.Helper()
	var s string
	err := conn.QueryRow(context.Background(), "SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY id), '') FROM "+
		pgx.Identifier{table}.Sanitize()+" x WHERE tenant_id = $1", tenant).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateVerifyRestore(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	src := mustTenantDB(t, c, schema, seed)
	dir := filepath.Join(t.TempDir(), "acme-backup")
	progressed := map[string]int64{}
	m, err := backup.Create(ctx, src, "acme", dir, func(table string, rows int64) { progressed[table] = rows })
	if err != nil {
		t.Fatal(err)
	}
	if m.SchemaVersion == nil || *m.SchemaVersion != 7 || m.Tenant != "acme" || len(m.Tables) != 2 ||
		m.Tables[0].Table != "customers" || m.Tables[1].Table != "orders" {
		t.Fatalf("manifest = %+v", m)
	}
	if m.Tables[0].Rows != 300 || m.Tables[1].Rows != 900 || progressed["orders"] != 900 {
		t.Fatalf("rows = %d, %d; progress %v", m.Tables[0].Rows, m.Tables[1].Rows, progressed)
	}
	b, err := os.ReadFile(filepath.Join(dir, "customers.copy"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "other") || !strings.Contains(string(b), "acme customer 1") {
		t.Fatal("backup holds rows of another tenant, or not the tenant's")
	}
	if _, err := backup.Verify(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Create(ctx, src, "acme", dir, nil); !errors.Is(err, backup.ErrExists) {
		t.Fatalf("create over an existing backup: %v", err)
	}
	if _, err := backup.Create(ctx, src, "Acme'; --", filepath.Join(t.TempDir(), "x"), nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad tenant id: %v", err)
	}

	dst := mustTenantDB(t, c, schema, `INSERT INTO customers (tenant_id, name) VALUES ('other', 'x')`)
	if _, err := backup.Restore(ctx, dst, dir, "acme", nil); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"customers", "orders"} {
		if got, want := rowsOf(t, dst, table, "acme"), rowsOf(t, src, table, "acme"); got != want || want == "" {
			t.Fatalf("%s differs after restore", table)
		}
	}
	for seq, table := range map[string]string{"order_ids": "orders", "customers_id_seq": "customers"} {
		var next, restoredMax int64
		if err := dst.QueryRow(ctx, "SELECT nextval($1), (SELECT max(id) FROM "+table+" WHERE tenant_id = 'acme')", seq).Scan(&next, &restoredMax); err != nil {
			t.Fatal(err)
		}
		if next <= restoredMax {
			t.Fatalf("%s next = %d, want above the restored max %d", seq, next, restoredMax)
		}
	}

	t.Run("refused onto a target with rows", func(t *testing.T) {
		before := rowsOf(t, dst, "orders", "acme")
		_, err := backup.Restore(ctx, dst, dir, "acme", nil)
		if !errors.Is(err, backup.ErrNotEmpty) {
			t.Fatalf("restore again = %v, want ErrNotEmpty", err)
		}
		if rowsOf(t, dst, "orders", "acme") != before {
			t.Fatal("refused restore changed rows")
		}
	})
	t.Run("other tenant refused", func(t *testing.T) {
		if _, err := backup.Restore(ctx, dst, dir, "other", nil); !errors.Is(err, backup.ErrMismatch) {
			t.Fatalf("restore as other tenant = %v, want ErrMismatch", err)
		}
	})
	t.Run("tampered file", func(t *testing.T) {
		p := filepath.Join(dir, "orders.copy")
		b, _ := os.ReadFile(p)
		b[10] ^= 1
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := backup.Verify(dir)
		var ce *backup.CorruptError
		if !errors.Is(err, backup.ErrCorrupt) || !errors.As(err, &ce) || ce.File != "orders.copy" || !strings.Contains(err.Error(), "orders.copy") {
			t.Fatalf("verify tampered = %v", err)
		}
		fresh := mustTenantDB(t, c, schema)
		if _, err := backup.Restore(ctx, fresh, dir, "acme", nil); !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("restore tampered = %v", err)
		}
		if rowsOf(t, fresh, "customers", "acme") != "" {
			t.Fatal("restore of a corrupt backup wrote rows")
		}
	})
}
