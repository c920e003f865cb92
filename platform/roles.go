package platform

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tenantry/dbconn"
	"tenantry/localpg"
)

// The registry's roles on the local control cluster. Neither is a
// superuser: the control plane owns the registry as RegistryOwner; the
// gateway and the stack instances read it as RegistryReader
// (registry.Store.GrantReader). The control cluster's superuser password is
// used only here, to make them.
const (
	RegistryOwner  = "tenantry_control"
	RegistryReader = "tenantry_reader"
)

// ensureRegistryRoles makes the registry's owner and reader roles (or
// resets them: no attribute beyond LOGIN, the password in platform.json),
// gives the control database and every table in it to the owner (a data
// directory from before the roles has them owned by the superuser), and
// records both roles' DSNs in the state.
func (l *Local) ensureRegistryRoles(ctx context.Context) error {
	st := l.State
	if st.RolePasswords == nil {
		st.RolePasswords = map[string]string{}
	}
	conn, err := l.Control.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, role := range []string{RegistryOwner, RegistryReader} {
		if st.RolePasswords[role] == "" {
			st.RolePasswords[role] = localpg.GeneratePassword()
		}
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
			return fmt.Errorf("registry role %s: %w", role, err)
		}
		var password string
		if err := conn.QueryRow(ctx, "SELECT format('PASSWORD %L', $1::text)", st.RolePasswords[role]).Scan(&password); err != nil {
			return err
		}
		verb := "ALTER"
		if !exists {
			verb = "CREATE"
		}
		if _, err := conn.Exec(ctx, verb+" ROLE "+pgx.Identifier{role}.Sanitize()+
			" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "+password); err != nil {
			return fmt.Errorf("registry role %s: %w", role, err)
		}
	}
	owner := pgx.Identifier{RegistryOwner}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{ControlDatabase}.Sanitize()+" OWNER TO "+owner); err != nil {
		return fmt.Errorf("give the control database to %s: %w", RegistryOwner, err)
	}
	db, err := l.Control.Connect(ctx, ControlDatabase)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	// Tables (with the sequences and indexes they own) and stand-alone
	// sequences made by anyone else.
	if _, err := db.Exec(ctx, `DO $$
DECLARE r record;
BEGIN
	FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relowner <> '`+RegistryOwner+`'::regrole
		AND (c.relkind IN ('r', 'p', 'v') OR (c.relkind = 'S' AND NOT EXISTS (
			SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'a')))
	LOOP
		EXECUTE format('ALTER %s %s OWNER TO `+RegistryOwner+`',
			CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, r.name);
	END LOOP;
END $$`); err != nil {
		return fmt.Errorf("give the registry's tables to %s: %w", RegistryOwner, err)
	}
	st.ControlDSN = l.roleConfig(RegistryOwner).String()
	st.ReaderDSN = l.roleConfig(RegistryReader).String()
	return nil
}

// roleConfig is the control database as one of the registry's roles.
func (l *Local) roleConfig(role string) dbconn.Config {
	cfg := l.Control.Config(ControlDatabase)
	cfg.Credential = dbconn.Credential{User: role, Password: l.State.RolePasswords[role]}
	return cfg
}
