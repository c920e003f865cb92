package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// PutStack creates or replaces a stack.
func (s *Store) PutStack(ctx context.Context, st Stack) error {
	if err := st.Validate(); err != nil {
		return err
	}
	if st.Instances == nil {
		st.Instances = []Instance{}
	}
	inst, err := json.Marshal(st.Instances)
	if err != nil {
		return fmt.Errorf("encode instances of stack %s: %w", st.Name, err)
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		_, err := tx.Exec(ctx, `INSERT INTO stacks (name, version, status, instances) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version, status = excluded.status, instances = excluded.instances`,
			st.Name, st.Version, st.Status, inst)
		return dbErr("put stack "+st.Name, err)
	})
}

// SetStackStatus sets a stack's status.
func (s *Store) SetStackStatus(ctx context.Context, name, status string) error {
	if err := ValidateName("stack", name); err != nil {
		return err
	}
	if err := ValidateStackStatus(status); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "UPDATE stacks SET status = $2 WHERE name = $1", name, status)
		return mustAffect(tag, err, "set status of stack "+name)
	})
}

// DeleteStack deletes a stack. ErrConflict if a route sends traffic to it.
func (s *Store) DeleteStack(ctx context.Context, name string) error {
	if err := ValidateName("stack", name); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		rows, err := tx.Query(ctx, `SELECT tenant FROM routes
			WHERE backends @> jsonb_build_array(jsonb_build_object('stack', $1::text)) ORDER BY tenant`, name)
		if err != nil {
			return dbErr("delete stack "+name, err)
		}
		users, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return dbErr("delete stack "+name, err)
		}
		if len(users) > 0 {
			for i, u := range users {
				if u == DefaultRoute {
					users[i] = "(default)"
				}
			}
			return fmt.Errorf("delete stack %s: %w: routes of %s use it", name, ErrConflict, strings.Join(users, ", "))
		}
		tag, err := tx.Exec(ctx, "DELETE FROM stacks WHERE name = $1", name)
		return mustAffect(tag, err, "delete stack "+name)
	})
}

// SetRoute creates or replaces a route. Its tenant (unless DefaultRoute) and
// every backend stack must exist (ErrNotFound). When ifVersion != 0 the
// write happens only if the registry version still equals ifVersion, else
// ErrConflict.
func (s *Store) SetRoute(ctx context.Context, r Route, ifVersion int64) error {
	if err := r.Validate(); err != nil {
		return err
	}
	backends, err := json.Marshal(r.Backends)
	if err != nil {
		return fmt.Errorf("encode route %q: %w", r.Tenant, err)
	}
	return s.write(ctx, func(tx pgx.Tx, version int64) error {
		what := fmt.Sprintf("set route %q", r.Tenant)
		if ifVersion != 0 && version != ifVersion {
			return fmt.Errorf("%s: %w: registry version is %d, expected %d", what, ErrConflict, version, ifVersion)
		}
		if r.Tenant != DefaultRoute {
			var ok bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", r.Tenant).Scan(&ok); err != nil {
				return dbErr(what, err)
			}
			if !ok {
				return fmt.Errorf("%s: tenant: %w", what, ErrNotFound)
			}
		}
		names := make([]string, len(r.Backends))
		for i, b := range r.Backends {
			names[i] = b.Stack
		}
		rows, err := tx.Query(ctx, "SELECT n FROM unnest($1::text[]) AS n WHERE n NOT IN (SELECT name FROM stacks)", names)
		if err != nil {
			return dbErr(what, err)
		}
		missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return dbErr(what, err)
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: stacks %s: %w", what, strings.Join(missing, ", "), ErrNotFound)
		}
		_, err = tx.Exec(ctx, `INSERT INTO routes (tenant, backends) VALUES ($1, $2)
			ON CONFLICT (tenant) DO UPDATE SET backends = excluded.backends`, r.Tenant, backends)
		return dbErr(what, err)
	})
}

// DeleteRoute deletes a tenant's route (or the default route).
func (s *Store) DeleteRoute(ctx context.Context, tenant string) error {
	if tenant != DefaultRoute {
		if err := ValidateTenantID(tenant); err != nil {
			return err
		}
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "DELETE FROM routes WHERE tenant = $1", tenant)
		return mustAffect(tag, err, fmt.Sprintf("delete route %q", tenant))
	})
}
