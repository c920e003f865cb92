// Package provision manages the per-tenant database roles and the row-level
// security that confine them, in the databases behind aliases. Tenant
// creation and moves use it: SetupDatabase prepares a database (group role,
// grants, RLS policies on every table with a tenant_id column),
// EnsureTenantRole creates a tenant's login role t_<tenant>, and Fence /
// Unfence turn that role's logins off and on — the fence a move relies on.
//
// Roles are cluster-wide in PostgreSQL: fencing a tenant on a cluster fences
// it in every database of that cluster. No password is stored anywhere: the
// router derives each tenant's password from the platform secret (Password).
// Callers connect as a superuser (the owner of the tables).
package provision

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/keys"
	"tenantry/registry"
	"tenantry/tenanttable"
)

// GroupRole is the NOLOGIN role every tenant role is a member of; table
// privileges are granted to it.
const GroupRole = "tenantry_tenants"

// PolicyName is the row-level security policy SetupDatabase creates.
const PolicyName = "tenant_isolation"

// ErrNoRole means the tenant has no role on the cluster.
var ErrNoRole = errors.New("tenant role does not exist")

// DB is what provisioning runs on: a *pgx.Conn, *pgxpool.Pool or pgx.Tx
// connected as a superuser to the database to provision. Fence and Unfence
// act on the whole cluster.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// RoleName is the database role of a tenant: "t_" + tenant. The policy
// strips the prefix from current_user to find the tenant.
func RoleName(tenant string) string { return "t_" + tenant }

// TenantKey is the key tenant role passwords are derived with: the
// platform secret's key for purpose keys.TenantPasswords. Application
// instances of shared stacks hold it, never the platform secret; instances of
// a dedicated stack hold only their tenants' passwords.
func TenantKey(secret []byte) []byte { return keys.Derive(secret, keys.TenantPasswords) }

// Password is the password of tenant's role: KeyedPassword of the
// platform secret's TenantKey.
func Password(secret []byte, tenant string) string { return KeyedPassword(TenantKey(secret), tenant) }

// KeyedPassword derives a tenant role's password from the tenant key: the
// hex HMAC-SHA256 of the tenant id.
func KeyedPassword(key []byte, tenant string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tenant))
	return hex.EncodeToString(m.Sum(nil))
}

// roleIdent validates tenant and returns its quoted role name.
func roleIdent(tenant string) (string, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return "", err
	}
	return pgx.Identifier{RoleName(tenant)}.Sanitize(), nil
}

// setupLockKey serialises SetupDatabase runs on one database.
const setupLockKey int64 = 0x74656e5f70726f76 // "ten_prov"

// SetupDatabase prepares the connected database for tenant roles, and is
// idempotent: call it again after migrations add tables. It revokes
// CONNECT and TEMPORARY on the database and CREATE on schema public from
// PUBLIC; creates
// GroupRole if missing; grants it USAGE on schema public, SELECT, INSERT,
// UPDATE, DELETE on every tenant table (tenanttable.List: the tables of
// public with a tenant_id column; a database that breaks the tenant data
// rules is refused with tenanttable.ErrRules) and SELECT on the others, and
// USAGE, SELECT on all sequences; and enables row level security with
// policy tenant_isolation on every tenant table. The owner (the superuser)
// bypasses RLS; every other role sees only rows whose tenant_id matches its
// role name.
func SetupDatabase(ctx context.Context, db DB) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", setupLockKey); err != nil {
			return fmt.Errorf("setup database: lock: %w", err)
		}
		if err := ensureGroup(ctx, tx); err != nil {
			return err
		}
		group := pgx.Identifier{GroupRole}.Sanitize()
		// Only roles granted CONNECT (each tenant's, EnsureTenantRole) reach
		// the database, and none may make temporary objects or tables in
		// public.
		var dbName string
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
			return fmt.Errorf("setup database: %w", err)
		}
		if _, err := tx.Exec(ctx, "REVOKE CONNECT, TEMPORARY ON DATABASE "+pgx.Identifier{dbName}.Sanitize()+" FROM PUBLIC"); err != nil {
			return fmt.Errorf("setup database: revoke from public: %w", err)
		}
		if _, err := tx.Exec(ctx, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"); err != nil {
			return fmt.Errorf("setup database: revoke from public: %w", err)
		}
		if _, err := tx.Exec(ctx, "GRANT USAGE ON SCHEMA public TO "+group); err != nil {
			return fmt.Errorf("setup database: grant schema: %w", err)
		}
		if _, err := tx.Exec(ctx, "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "+group); err != nil {
			return fmt.Errorf("setup database: grant sequences: %w", err)
		}
		tenantTables, err := tenanttable.List(ctx, tx)
		if err != nil {
			return fmt.Errorf("setup database: %w", err)
		}
		isTenant := make(map[string]bool, len(tenantTables))
		for _, t := range tenantTables {
			isTenant[t.Name] = true
		}
		rows, err := tx.Query(ctx, `SELECT c.relname,
				EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $1)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
			ORDER BY c.relname`, PolicyName)
		if err != nil {
			return fmt.Errorf("setup database: list tables: %w", err)
		}
		type table struct {
			name              string
			tenant, hasPolicy bool
		}
		tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
			var t table
			err := r.Scan(&t.name, &t.hasPolicy)
			t.tenant = isTenant[t.name]
			return t, err
		})
		if err != nil {
			return fmt.Errorf("setup database: list tables: %w", err)
		}
		for _, t := range tables {
			if err := setupTable(ctx, tx, t.name, t.tenant, t.hasPolicy); err != nil {
				return fmt.Errorf("setup database: table %s: %w", t.name, err)
			}
		}
		return nil
	})
}

func setupTable(ctx context.Context, tx pgx.Tx, name string, tenant, hasPolicy bool) error {
	ident := pgx.Identifier{"public", name}.Sanitize()
	group := pgx.Identifier{GroupRole}.Sanitize()
	if !tenant {
		_, err := tx.Exec(ctx, "GRANT SELECT ON "+ident+" TO "+group)
		return err
	}
	stmts := []string{
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + ident + " TO " + group,
		"ALTER TABLE " + ident + " ENABLE ROW LEVEL SECURITY",
	}
	if !hasPolicy {
		const own = "(tenant_id = substr(current_user::text, 3))"
		stmts = append(stmts, "CREATE POLICY "+pgx.Identifier{PolicyName}.Sanitize()+" ON "+ident+
			" USING "+own+" WITH CHECK "+own)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// ensureGroup creates GroupRole if it does not exist. Roles are
// cluster-wide, so another database's setup may race: a savepoint absorbs
// the loser's duplicate error.
func ensureGroup(ctx context.Context, tx pgx.Tx) error {
	return createRoleIfMissing(ctx, tx, GroupRole, "CREATE ROLE "+pgx.Identifier{GroupRole}.Sanitize()+" NOLOGIN")
}

// createRoleIfMissing runs create unless role exists, tolerating a
// concurrent creation. It reports nothing about which happened.
func createRoleIfMissing(ctx context.Context, tx pgx.Tx, role, create string) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %s: %w", role, err)
	}
	if exists {
		return nil
	}
	err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		_, err := sp.Exec(ctx, create)
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42710" || pe.Code == "23505") { // duplicate_object, unique_violation
		return nil
	}
	if err != nil {
		return fmt.Errorf("create role %s: %w", role, err)
	}
	return nil
}

// EnsureTenantRole creates the tenant's role (LOGIN, the given password,
// member of GroupRole) or, if it exists, resets it to exactly that (LOGIN,
// NOSUPERUSER, NOCREATEDB, NOCREATEROLE, NOREPLICATION, NOBYPASSRLS, the
// password) and makes sure of the membership; then grants it CONNECT on the
// connected database. Note that setting LOGIN lifts a fence on the whole
// cluster.
func EnsureTenantRole(ctx context.Context, db DB, tenant, password string) error {
	role, err := roleIdent(tenant)
	if err != nil {
		return err
	}
	if password == "" {
		return fmt.Errorf("%w: empty password for tenant %s", registry.ErrInvalid, tenant)
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := ensureGroup(ctx, tx); err != nil {
			return err
		}
		// The password is a literal inside DDL, which takes no parameters:
		// the server's own format(%L) quotes it.
		var setPassword string
		if err := tx.QueryRow(ctx, "SELECT format('PASSWORD %L', $1::text)", password).Scan(&setPassword); err != nil {
			return fmt.Errorf("ensure role of tenant %s: %w", tenant, err)
		}
		group := pgx.Identifier{GroupRole}.Sanitize()
		if err := createRoleIfMissing(ctx, tx, RoleName(tenant),
			"CREATE ROLE "+role+" LOGIN "+setPassword+" IN ROLE "+group); err != nil {
			return err
		}
		var dbName string
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
			return fmt.Errorf("ensure role of tenant %s: %w", tenant, err)
		}
		for _, s := range []string{
			// A role of that name made by anyone else is reset to a plain
			// tenant role: no attribute lets it past row-level security or
			// beyond its own rows.
			"ALTER ROLE " + role + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT -1 " + setPassword,
			"GRANT " + group + " TO " + role,
			"GRANT CONNECT ON DATABASE " + pgx.Identifier{dbName}.Sanitize() + " TO " + role,
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("ensure role of tenant %s: %w", tenant, err)
			}
		}
		return nil
	})
}

// FenceTimeout bounds how long Fence waits for the tenant's sessions to end
// when ctx has no earlier deadline.
const FenceTimeout = 10 * time.Second

// fencePoll is how often Fence re-checks pg_stat_activity.
const fencePoll = 2 * time.Millisecond

// Fence stops the tenant's access to the whole cluster: ALTER ROLE NOLOGIN
// (new logins fail with SQLSTATE 28000), then terminates every session of
// the role and waits until none remain. It returns how many sessions it
// terminated. ErrNoRole if the role does not exist.
func Fence(ctx context.Context, db DB, tenant string) (int, error) {
	if err := DenyLogin(ctx, db, tenant); err != nil {
		return 0, err
	}
	return EndSessions(ctx, db, tenant)
}

// DenyLogin is the first half of Fence: ALTER ROLE NOLOGIN. Sessions open
// already go on. ErrNoRole if the role does not exist.
func DenyLogin(ctx context.Context, db DB, tenant string) error {
	role, err := roleIdent(tenant)
	if err != nil {
		return err
	}
	if err := alterRole(ctx, db, tenant, "ALTER ROLE "+role+" NOLOGIN"); err != nil {
		return fmt.Errorf("fence tenant %s: %w", tenant, err)
	}
	return nil
}

// EndSessions is the second half of Fence: it terminates every session of
// the tenant's role and waits until none remain (up to FenceTimeout), and
// returns how many it terminated. Only after DenyLogin does no new one
// appear.
func EndSessions(ctx context.Context, db DB, tenant string) (int, error) {
	if _, err := roleIdent(tenant); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, FenceTimeout)
	defer cancel()
	// By pid: a terminated backend stays in pg_stat_activity until it has
	// exited, and the next pass signals it again.
	terminated := map[int32]bool{}
	for {
		// A session that authenticated just before NOLOGIN committed may
		// show up after a pass: every pass terminates what it finds.
		var (
			found  int
			killed []int32
		)
		err := db.QueryRow(ctx, `SELECT count(*), coalesce(array_agg(pid) FILTER (WHERE pg_terminate_backend(pid)), '{}')
			FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, RoleName(tenant)).Scan(&found, &killed)
		if err != nil {
			return len(terminated), fmt.Errorf("fence tenant %s: terminate sessions: %w", tenant, err)
		}
		for _, pid := range killed {
			terminated[pid] = true
		}
		if found == 0 {
			return len(terminated), nil
		}
		select {
		case <-ctx.Done():
			return len(terminated), fmt.Errorf("fence tenant %s: %d sessions still open: %w", tenant, found, ctx.Err())
		case <-time.After(fencePoll):
		}
	}
}

// Unfence allows the tenant's role to log in again. ErrNoRole if it does not
// exist.
func Unfence(ctx context.Context, db DB, tenant string) error {
	role, err := roleIdent(tenant)
	if err != nil {
		return err
	}
	if err := alterRole(ctx, db, tenant, "ALTER ROLE "+role+" LOGIN"); err != nil {
		return fmt.Errorf("unfence tenant %s: %w", tenant, err)
	}
	return nil
}

func alterRole(ctx context.Context, db DB, tenant, stmt string) error {
	_, err := db.Exec(ctx, stmt)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42704" { // undefined_object
		return fmt.Errorf("%w: %s", ErrNoRole, RoleName(tenant))
	}
	return err
}

// IsFenced reports whether the tenant's role cannot log in. ErrNoRole if it
// does not exist.
func IsFenced(ctx context.Context, db DB, tenant string) (bool, error) {
	if _, err := roleIdent(tenant); err != nil {
		return false, err
	}
	var canLogin bool
	err := db.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", RoleName(tenant)).Scan(&canLogin)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("%w: %s", ErrNoRole, RoleName(tenant))
	}
	if err != nil {
		return false, fmt.Errorf("look up role of tenant %s: %w", tenant, err)
	}
	return !canLogin, nil
}

// DropTenantRole fences the tenant (ending its sessions), revokes its
// CONNECT privilege on every database of the cluster and drops the role.
// A missing role is not an error.
func DropTenantRole(ctx context.Context, db DB, tenant string) error {
	role, err := roleIdent(tenant)
	if err != nil {
		return err
	}
	if _, err := Fence(ctx, db, tenant); errors.Is(err, ErrNoRole) {
		return nil
	} else if err != nil {
		return fmt.Errorf("drop role of tenant %s: %w", tenant, err)
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT datname FROM pg_database WHERE NOT datistemplate")
		if err != nil {
			return fmt.Errorf("drop role of tenant %s: %w", tenant, err)
		}
		dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("drop role of tenant %s: %w", tenant, err)
		}
		for _, d := range dbs {
			if _, err := tx.Exec(ctx, "REVOKE CONNECT ON DATABASE "+pgx.Identifier{d}.Sanitize()+" FROM "+role); err != nil {
				return fmt.Errorf("drop role of tenant %s: revoke connect on %s: %w", tenant, d, err)
			}
		}
		if _, err := tx.Exec(ctx, "DROP ROLE IF EXISTS "+role); err != nil {
			return fmt.Errorf("drop role of tenant %s: %w", tenant, err)
		}
		return nil
	})
}
