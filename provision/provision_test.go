package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/pgtest"
	"tenantry/provision"
	"tenantry/registry"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var secret = []byte("test platform secret")

// Roles are cluster-wide and the cluster is shared: every test uses its own
// tenant ids.
var seq atomic.Int64

func tenantID(base string) string {
	return fmt.Sprintf("%s-%d-%d", base, time.Now().UnixNano()%1e6, seq.Add(1))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fixture is a database with two tenant tables, a plain table, SetupDatabase
// applied and two tenant roles with a row each.
type fixture struct {
	db     string
	super  *pgx.Conn
	a, b   string
	connDB func(t *testing.T, tenant string) (*pgx.Conn, error)
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	db := pgtest.MustDB(t)
	super, err := c.Connect(ctx, db)
	must(t, err)
	t.Cleanup(func() { super.Close(ctx) })
	_, err = super.Exec(ctx, `
		CREATE TABLE products (tenant_id text NOT NULL, id bigserial, name text NOT NULL, PRIMARY KEY (tenant_id, id));
		CREATE TABLE orders (tenant_id text NOT NULL, id bigserial, product_id bigint NOT NULL, PRIMARY KEY (tenant_id, id),
			FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id));
		CREATE TABLE schema_version (version int NOT NULL);
		INSERT INTO schema_version VALUES (1);`)
	must(t, err)
	must(t, provision.SetupDatabase(ctx, super))
	must(t, provision.SetupDatabase(ctx, super)) // idempotent
	f := &fixture{db: db, super: super, a: tenantID("acme-co"), b: tenantID("beta")}
	for _, tn := range []string{f.a, f.b} {
		must(t, provision.EnsureTenantRole(ctx, super, tn, provision.Password(secret, tn)))
		t.Cleanup(func() { _ = provision.DropTenantRole(context.Background(), super, tn) })
		_, err := super.Exec(ctx, "INSERT INTO products (tenant_id, name) VALUES ($1, 'widget')", tn)
		must(t, err)
	}
	f.connDB = func(t *testing.T, tenant string) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=%s sslmode=disable", c.Host, c.Port, db))
		must(t, err)
		cfg.User = provision.RoleName(tenant)
		cfg.Password = provision.Password(secret, tenant)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
		}
		return conn, err
	}
	return f
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestSetupDatabase_RowLevelSecurity(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	conn, err := f.connDB(t, f.a)
	must(t, err)

	var n int
	var owner string
	must(t, conn.QueryRow(ctx, "SELECT count(*), min(tenant_id) FROM products").Scan(&n, &owner))
	if n != 1 || owner != f.a {
		t.Fatalf("tenant %s sees %d products (owner %s), want only its own", f.a, n, owner)
	}
	// Own inserts work, sequences included.
	var pid int64
	must(t, conn.QueryRow(ctx, "INSERT INTO products (tenant_id, name) VALUES ($1, 'gadget') RETURNING id", f.a).Scan(&pid))
	_, err = conn.Exec(ctx, "INSERT INTO orders (tenant_id, product_id) VALUES ($1, $2)", f.a, pid)
	must(t, err)
	// Another tenant's rows: inserts violate the policy, updates and deletes match nothing.
	_, err = conn.Exec(ctx, "INSERT INTO products (tenant_id, name) VALUES ($1, 'forged')", f.b)
	if sqlState(err) != "42501" {
		t.Fatalf("insert for another tenant: err = %v, want RLS violation 42501", err)
	}
	tag, err := conn.Exec(ctx, "UPDATE products SET name = 'pwned' WHERE tenant_id = $1", f.b)
	must(t, err)
	if tag.RowsAffected() != 0 {
		t.Fatalf("updated %d rows of another tenant", tag.RowsAffected())
	}
	tag, err = conn.Exec(ctx, "UPDATE products SET tenant_id = $1 WHERE tenant_id = $2", f.b, f.a)
	if sqlState(err) != "42501" {
		t.Fatalf("moving own rows to another tenant: err = %v (%d rows), want 42501", err, tag.RowsAffected())
	}
	tag, err = conn.Exec(ctx, "DELETE FROM products WHERE tenant_id = $1", f.b)
	must(t, err)
	if tag.RowsAffected() != 0 {
		t.Fatalf("deleted %d rows of another tenant", tag.RowsAffected())
	}
	// Plain tables are read-only.
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM schema_version").Scan(&n))
	if _, err := conn.Exec(ctx, "UPDATE schema_version SET version = 2"); sqlState(err) != "42501" {
		t.Fatalf("write to schema_version: err = %v, want permission denied", err)
	}
	// The superuser still sees all.
	must(t, f.super.QueryRow(ctx, "SELECT count(*) FROM products WHERE name = 'widget'").Scan(&n))
	if n != 2 {
		t.Fatalf("superuser sees %d widgets, want 2", n)
	}
	// A table added later is covered by calling SetupDatabase again.
	_, err = f.super.Exec(ctx, "CREATE TABLE notes (tenant_id text NOT NULL, body text, PRIMARY KEY (tenant_id, body))")
	must(t, err)
	_, err = f.super.Exec(ctx, "INSERT INTO notes VALUES ($1, 'x')", f.b)
	must(t, err)
	must(t, provision.SetupDatabase(ctx, f.super))
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n))
	if n != 0 {
		t.Fatalf("tenant %s sees %d notes of another tenant", f.a, n)
	}
}

func TestFence(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	open, err := f.connDB(t, f.a)
	must(t, err)
	other, err := f.connDB(t, f.b)
	must(t, err)

	killed, err := provision.Fence(ctx, f.super, f.a)
	must(t, err)
	if killed != 1 {
		t.Fatalf("fence terminated %d sessions, want 1", killed)
	}
	if fenced, err := provision.IsFenced(ctx, f.super, f.a); err != nil || !fenced {
		t.Fatalf("IsFenced = %v, %v", fenced, err)
	}
	if _, err := open.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("fenced session still works")
	}
	_, err = f.connDB(t, f.a)
	if sqlState(err) != "28000" {
		t.Fatalf("login while fenced: err = %v, want SQLSTATE 28000", err)
	}
	if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("other tenant's session hit by the fence: %v", err)
	}

	must(t, provision.Unfence(ctx, f.super, f.a))
	if fenced, err := provision.IsFenced(ctx, f.super, f.a); err != nil || fenced {
		t.Fatalf("IsFenced after unfence = %v, %v", fenced, err)
	}
	conn, err := f.connDB(t, f.a)
	must(t, err)
	_, err = conn.Exec(ctx, "SELECT 1")
	must(t, err)

	_, err = provision.Fence(ctx, f.super, "nobody-here")
	if !errors.Is(err, provision.ErrNoRole) {
		t.Fatalf("fence of a missing role: err = %v, want ErrNoRole", err)
	}
}

// The fence in two halves, as a flip runs it: DenyLogin refuses new
// sessions and leaves open ones alone (the routers' in-flight transactions
// finish), EndSessions then ends those.
func TestFence_Halves(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	open, err := f.connDB(t, f.a)
	must(t, err)

	must(t, provision.DenyLogin(ctx, f.super, f.a))
	if _, err := f.connDB(t, f.a); sqlState(err) != "28000" {
		t.Fatalf("login after DenyLogin: err = %v, want SQLSTATE 28000", err)
	}
	if _, err := open.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("open session after DenyLogin: %v", err)
	}
	killed, err := provision.EndSessions(ctx, f.super, f.a)
	must(t, err)
	if killed != 1 {
		t.Fatalf("EndSessions terminated %d sessions, want 1", killed)
	}
	if _, err := open.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("session still works after EndSessions")
	}
	if fenced, err := provision.IsFenced(ctx, f.super, f.a); err != nil || !fenced {
		t.Fatalf("IsFenced = %v, %v", fenced, err)
	}
	if err := provision.DenyLogin(ctx, f.super, "nobody-here"); !errors.Is(err, provision.ErrNoRole) {
		t.Fatalf("DenyLogin of a missing role: err = %v, want ErrNoRole", err)
	}
}

func TestInvalidTenant(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	bad := `x"; DROP ROLE postgres; --`
	var before int
	must(t, f.super.QueryRow(ctx, "SELECT count(*) FROM pg_roles").Scan(&before))
	checks := map[string]error{
		"ensure":  provision.EnsureTenantRole(ctx, f.super, bad, "pw"),
		"unfence": provision.Unfence(ctx, f.super, bad),
		"drop":    provision.DropTenantRole(ctx, f.super, bad),
	}
	_, checks["fence"] = provision.Fence(ctx, f.super, bad)
	_, checks["isfenced"] = provision.IsFenced(ctx, f.super, "A")
	for name, err := range checks {
		if !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	var after int
	must(t, f.super.QueryRow(ctx, "SELECT count(*) FROM pg_roles").Scan(&after))
	if after != before {
		t.Fatalf("roles %d -> %d after invalid input", before, after)
	}
}

func TestDropTenantRole(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	_, err := f.connDB(t, f.b)
	must(t, err)
	must(t, provision.DropTenantRole(ctx, f.super, f.b))
	must(t, provision.DropTenantRole(ctx, f.super, f.b)) // missing is fine
	if _, err := provision.IsFenced(ctx, f.super, f.b); !errors.Is(err, provision.ErrNoRole) {
		t.Fatalf("IsFenced after drop: err = %v, want ErrNoRole", err)
	}
	// Re-creating restores access (idempotent provisioning after a drop).
	must(t, provision.EnsureTenantRole(ctx, f.super, f.b, provision.Password(secret, f.b)))
	_, err = f.connDB(t, f.b)
	must(t, err)
}

func TestPassword(t *testing.T) {
	a, b := provision.Password(secret, "acme"), provision.Password(secret, "beta")
	if len(a) != 64 || a == b || a != provision.Password(secret, "acme") || a == provision.Password([]byte("other"), "acme") {
		t.Fatalf("passwords not a keyed, deterministic hex digest: %s %s", a, b)
	}
}

// TestEnsureTenantRole_ResetsRole: a t_<tenant> role that exists with
// powers (made by hand, or by an attacker with CREATEROLE) is reset to a
// plain tenant role, confined by row-level security.
func TestEnsureTenantRole_ResetsRole(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	tn := tenantID("reset")
	role := pgx.Identifier{provision.RoleName(tn)}.Sanitize()
	_, err := f.super.Exec(ctx, "CREATE ROLE "+role+" LOGIN SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS CONNECTION LIMIT 3")
	must(t, err)
	t.Cleanup(func() { _ = provision.DropTenantRole(context.Background(), f.super, tn) })
	must(t, provision.EnsureTenantRole(ctx, f.super, tn, provision.Password(secret, tn)))
	var super, createDB, createRole, repl, bypass bool
	var limit int
	must(t, f.super.QueryRow(ctx, `SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit
		FROM pg_roles WHERE rolname = $1`, provision.RoleName(tn)).Scan(&super, &createDB, &createRole, &repl, &bypass, &limit))
	if super || createDB || createRole || repl || bypass || limit != -1 {
		t.Fatalf("role kept powers: super %v createdb %v createrole %v replication %v bypassrls %v limit %d",
			super, createDB, createRole, repl, bypass, limit)
	}
	conn, err := f.connDB(t, tn)
	must(t, err)
	var n int
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n))
	if n != 0 {
		t.Fatalf("the reset role sees %d rows of other tenants", n)
	}
}

// TestSetupDatabase_NoPublicAccess: a role that was granted nothing cannot
// connect to a tenant database, and a tenant role can make no temporary
// tables or tables in public.
func TestSetupDatabase_NoPublicAccess(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	c := pgtest.MustCluster(t)
	stranger := fmt.Sprintf("stranger_%d", seq.Add(1))
	_, err := f.super.Exec(ctx, "CREATE ROLE "+stranger+" LOGIN PASSWORD 'pw'")
	must(t, err)
	t.Cleanup(func() { _, _ = f.super.Exec(context.Background(), "DROP ROLE IF EXISTS "+stranger) })
	cfg := c.Config(f.db)
	cfg.User, cfg.Password = stranger, "pw"
	if conn, err := cfg.Connect(ctx); err == nil {
		conn.Close(ctx)
		t.Fatal("a role without CONNECT reached the tenant database")
	} else if sqlState(err) != "42501" {
		t.Fatalf("stranger: %v, want permission denied (42501)", err)
	}
	conn, err := f.connDB(t, f.a)
	must(t, err)
	for _, stmt := range []string{"CREATE TEMP TABLE scratch (x int)", "CREATE TABLE public.mine (x int)"} {
		if _, err := conn.Exec(ctx, stmt); sqlState(err) != "42501" {
			t.Errorf("%s as a tenant: %v, want permission denied", stmt, err)
		}
	}
}
