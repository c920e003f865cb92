package registry

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationLockKey is the pg_advisory_xact_lock key that serialises schema
// migrations of the control database, so that two processes starting at once
// do not both apply the same migration.
const migrationLockKey int64 = 0x74656e616e747279 // "tenantry"

// migrations are the registry's schema, in order. Migration i (0-based) has
// version i+1. Never edit an applied migration; append a new one.
var migrations = []string{
	// 1: the registry.
	`
CREATE TABLE registry_version (
	id      boolean PRIMARY KEY DEFAULT true CHECK (id),
	version bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO registry_version (id, version) VALUES (true, 0);

CREATE TABLE clusters (
	name       text        PRIMARY KEY,
	local      boolean     NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE members (
	cluster  text NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
	name     text NOT NULL,
	host     text NOT NULL CHECK (host <> ''),
	port     int  NOT NULL CHECK (port BETWEEN 1 AND 65535),
	zone     text NOT NULL DEFAULT '',
	role     text NOT NULL CHECK (role IN ('primary', 'standby', 'fenced')),
	data_dir text NOT NULL DEFAULT '',
	PRIMARY KEY (cluster, name)
);
-- At most one primary per cluster.
CREATE UNIQUE INDEX members_one_primary ON members (cluster) WHERE role = 'primary';

CREATE TABLE aliases (
	name     text NOT NULL PRIMARY KEY,
	cluster  text NOT NULL REFERENCES clusters (name),
	database text NOT NULL CHECK (database <> '')
);

CREATE TABLE tenants (
	id         text        PRIMARY KEY,
	alias      text        NOT NULL REFERENCES aliases (name),
	state      text        NOT NULL CHECK (state IN ('active', 'paused', 'fenced')),
	epoch      bigint      NOT NULL CHECK (epoch >= 1),
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stacks (
	name      text  PRIMARY KEY,
	version   text  NOT NULL DEFAULT '',
	status    text  NOT NULL CHECK (status IN ('deploying', 'ready', 'stopped', 'failed')),
	instances jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(instances) = 'array')
);

-- tenant '' is the default route; other routes are deleted with their tenant.
CREATE TABLE routes (
	tenant   text  PRIMARY KEY,
	backends jsonb NOT NULL CHECK (jsonb_typeof(backends) = 'array')
);

CREATE TABLE api_keys (
	id         text        PRIMARY KEY,
	tenant     text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	hash       text        NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz
);

CREATE TABLE routers (
	id        text        PRIMARY KEY,
	heartbeat timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE router_acks (
	router text   NOT NULL REFERENCES routers (id) ON DELETE CASCADE,
	tenant text   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	epoch  bigint NOT NULL,
	PRIMARY KEY (router, tenant)
);
`,
}

// migrate applies every migration not yet recorded in registry_migrations,
// each in order, all in one transaction under an advisory lock.
func migrate(ctx context.Context, pool *pgxpool.Pool) (applied int, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS registry_migrations (
			version    int         PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create registry_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM registry_migrations").Scan(&current); err != nil {
			return fmt.Errorf("read migration version: %w", err)
		}
		if current > len(migrations) {
			return fmt.Errorf("control database schema version %d is newer than this binary's %d", current, len(migrations))
		}
		for i := current; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("apply migration %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO registry_migrations (version) VALUES ($1)", i+1); err != nil {
				return fmt.Errorf("record migration %d: %w", i+1, err)
			}
			applied++
		}
		return nil
	})
	return applied, err
}
