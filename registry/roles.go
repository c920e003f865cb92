package registry

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// readerTables are what routing needs of the registry: the snapshot's
// tables. Not cluster_credentials, events, or any workflow table. A table
// added to the snapshot must be added here (TestStore_GrantReader reads a
// snapshot as the reader).
var readerTables = []string{"registry_version", "clusters", "members", "aliases", "tenants", "stacks", "routes",
	"api_keys", "tenant_limits"}

// writerTables are the rows routing processes write of their own: routers'
// registration, heartbeats and epoch acknowledgements, gateways' per-stack
// request outcomes and per-tenant hourly request counts.
var writerTables = []string{"routers", "router_acks", "stack_stats", "tenant_traffic"}

// grantLockKey serialises GrantReader runs ("ten_read").
const grantLockKey int64 = 0x74656e5f72656164

// GrantReader gives role exactly what the processes that route (gateways,
// application instances) need of the registry: CONNECT on the control
// database, SELECT on the snapshot's tables, and SELECT, INSERT, UPDATE,
// DELETE on the routers' and the gateways' stats tables; LISTEN needs no
// grant. It revokes
// everything else the role could have on the registry's and the workflow's
// tables, and CONNECT and TEMPORARY from PUBLIC. The store must connect as
// the registry's owner (the control plane's role); idempotent, run after
// every migration (Plane does).
//
// All routers and gateways share the role: the database cannot tell one
// router's rows from another's, so a holder of the reader credential can
// rewrite any router's heartbeat or acknowledgements and any gateway's stats
// — but no placement, route, key, limit, stack, cluster or credential.
func (s *Store) GrantReader(ctx context.Context, role string) error {
	if err := ValidateName("role", role); err != nil {
		return err
	}
	r := pgx.Identifier{role}.Sanitize()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Replicas starting at once would otherwise race on the same
		// catalog rows ("tuple concurrently updated").
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", grantLockKey); err != nil {
			return fmt.Errorf("grant registry reader %s: lock: %w", role, err)
		}
		var db string
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			return err
		}
		d := pgx.Identifier{db}.Sanitize()
		stmts := []string{
			"REVOKE CONNECT, TEMPORARY ON DATABASE " + d + " FROM PUBLIC",
			"GRANT CONNECT ON DATABASE " + d + " TO " + r,
			"REVOKE TEMPORARY ON DATABASE " + d + " FROM " + r,
			"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM " + r,
			"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM " + r,
			"GRANT USAGE ON SCHEMA public TO " + r,
		}
		for _, t := range readerTables {
			stmts = append(stmts, "GRANT SELECT ON "+pgx.Identifier{t}.Sanitize()+" TO "+r)
		}
		for _, t := range writerTables {
			stmts = append(stmts, "GRANT SELECT, INSERT, UPDATE, DELETE ON "+pgx.Identifier{t}.Sanitize()+" TO "+r)
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("grant registry reader %s: %s: %w", role, q, err)
			}
		}
		return nil
	})
}
