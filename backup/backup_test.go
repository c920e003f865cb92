package backup_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

var testKey = backup.Key([]byte("backup test secret"))

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
	m, err := backup.Create(ctx, src, "acme", dir, testKey, func(table string, rows int64) { progressed[table] = rows })
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
	if _, err := backup.Verify(dir, testKey); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Create(ctx, src, "acme", dir, testKey, nil); !errors.Is(err, backup.ErrExists) {
		t.Fatalf("create over an existing backup: %v", err)
	}
	if _, err := backup.Create(ctx, src, "Acme'; --", filepath.Join(t.TempDir(), "x"), testKey, nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad tenant id: %v", err)
	}

	dst := mustTenantDB(t, c, schema, `INSERT INTO customers (tenant_id, name) VALUES ('other', 'x')`)
	if _, err := backup.Restore(ctx, dst, dir, "acme", testKey, nil); err != nil {
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
		_, err := backup.Restore(ctx, dst, dir, "acme", testKey, nil)
		if !errors.Is(err, backup.ErrNotEmpty) {
			t.Fatalf("restore again = %v, want ErrNotEmpty", err)
		}
		if rowsOf(t, dst, "orders", "acme") != before {
			t.Fatal("refused restore changed rows")
		}
	})
	t.Run("other tenant refused", func(t *testing.T) {
		if _, err := backup.Restore(ctx, dst, dir, "other", testKey, nil); !errors.Is(err, backup.ErrMismatch) {
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
		_, err := backup.Verify(dir, testKey)
		var ce *backup.CorruptError
		if !errors.Is(err, backup.ErrCorrupt) || !errors.As(err, &ce) || ce.File != "orders.copy" || !strings.Contains(err.Error(), "orders.copy") {
			t.Fatalf("verify tampered = %v", err)
		}
		fresh := mustTenantDB(t, c, schema)
		if _, err := backup.Restore(ctx, fresh, dir, "acme", testKey, nil); !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("restore tampered = %v", err)
		}
		if rowsOf(t, fresh, "customers", "acme") != "" {
			t.Fatal("restore of a corrupt backup wrote rows")
		}
	})
}

// resign rewrites dir's manifest after edit and signs it with key, as
// someone holding the key (or a bug in a backup writer) could.
func resign(t *testing.T, dir string, key []byte, edit func(m *backup.Manifest)) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, backup.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m backup.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	if b, err = json.Marshal(&m); err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	if err := os.WriteFile(filepath.Join(dir, backup.ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, backup.MACFile), []byte(hex.EncodeToString(mac.Sum(nil))), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerify_manifestMAC(t *testing.T) {
	ctx := context.Background()
	src := mustTenantDB(t, pgtest.MustCluster(t), schema, seed)
	dir := filepath.Join(t.TempDir(), "acme")
	if _, err := backup.Create(ctx, src, "acme", dir, testKey, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("private modes", func(t *testing.T) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("backup directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
		}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v (%v), want 0600", e.Name(), fi.Mode().Perm(), err)
			}
		}
		if len(entries) != 4 { // two tables, the manifest and its MAC
			t.Errorf("backup holds %d files, want 4", len(entries))
		}
	})
	t.Run("another secret", func(t *testing.T) {
		if _, err := backup.Verify(dir, backup.Key([]byte("another secret"))); !errors.Is(err, backup.ErrMAC) {
			t.Fatalf("verify with another key = %v, want ErrMAC", err)
		}
	})
	t.Run("manifest edited without the key", func(t *testing.T) {
		edited := filepath.Join(t.TempDir(), "edited")
		copyDir(t, dir, edited)
		p := filepath.Join(edited, backup.ManifestFile)
		b, _ := os.ReadFile(p)
		b = []byte(strings.Replace(string(b), `"rows": 300`, `"rows": 301`, 1))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Verify(edited, testKey); !errors.Is(err, backup.ErrMAC) {
			t.Fatalf("verify of an edited manifest = %v, want ErrMAC", err)
		}
		fresh := mustTenantDB(t, pgtest.MustCluster(t), schema)
		if _, err := backup.Restore(ctx, fresh, edited, "acme", testKey, nil); !errors.Is(err, backup.ErrMAC) {
			t.Fatalf("restore of an edited manifest = %v, want ErrMAC", err)
		}
	})
	t.Run("MAC missing", func(t *testing.T) {
		bare := filepath.Join(t.TempDir(), "bare")
		copyDir(t, dir, bare)
		if err := os.Remove(filepath.Join(bare, backup.MACFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Verify(bare, testKey); !errors.Is(err, backup.ErrMAC) {
			t.Fatalf("verify without a MAC = %v, want ErrMAC", err)
		}
	})
}

// A backup file edited to plant a row of another tenant, with the manifest's
// checksums and MAC made to match, is refused by verify and restore, and the
// restore writes nothing.
func TestRestore_foreignRow(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	src := mustTenantDB(t, c, schema, seed)
	dir := filepath.Join(t.TempDir(), "acme")
	if _, err := backup.Create(ctx, src, "acme", dir, testKey, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "orders.copy")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// The last row of the file, its tenant_id changed to the victim's.
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	planted := "other" + strings.TrimPrefix(lines[len(lines)-1], "acme")
	planted = strings.Replace(planted, "\t", "\t9", 1) // a fresh id: 9<id>
	b = append(b, planted+"\n"...)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	resign(t, dir, testKey, func(m *backup.Manifest) {
		for i := range m.Tables {
			if m.Tables[i].Table == "orders" {
				m.Tables[i].Rows++
				m.Tables[i].SHA256 = hex.EncodeToString(sum[:])
			}
		}
	})

	if _, err := backup.Verify(dir, testKey); !errors.Is(err, backup.ErrForeignRow) || !strings.Contains(err.Error(), "orders.copy row 901") {
		t.Fatalf("verify of a planted row = %v, want ErrForeignRow naming orders.copy row 901", err)
	}
	dst := mustTenantDB(t, c, schema, `INSERT INTO customers (tenant_id, name) VALUES ('other', 'victim')`)
	before := rowsOf(t, dst, "customers", "other")
	if _, err := backup.Restore(ctx, dst, dir, "acme", testKey, nil); !errors.Is(err, backup.ErrForeignRow) {
		t.Fatalf("restore of a planted row = %v, want ErrForeignRow", err)
	}
	for _, table := range []string{"customers", "orders"} {
		if got := rowsOf(t, dst, table, "acme"); got != "" {
			t.Errorf("refused restore wrote acme rows into %s", table)
		}
	}
	if rowsOf(t, dst, "customers", "other") != before || rowsOf(t, dst, "orders", "other") != "" {
		t.Error("refused restore changed the other tenant's rows")
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}
