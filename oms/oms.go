// Package oms is the reference order-management service that runs on tenantry:
// products, locations, inventory with an exact stock ledger, customers,
// orders and fulfilments, served as a JSON HTTP API. It is the workload every
// tenantry claim is measured under: moves, cutovers, rollouts and failovers
// are judged while load generators drive this API.
//
// The package owns its schema (Migrate) and its HTTP API (NewServer); which
// of its tables are tenant tables is read from the catalog by tenanttable,
// like any other application's. It reaches databases only through the small DB interface, so
// that production wires it to the tenant router (per-tenant pools, pause
// gates, fencing) while tools and tests use PoolDB over one superuser pool.
//
// Every tenant table follows the tenant data rules of the design: a
// tenant_id column first in the primary key, foreign keys that include
// tenant_id, and ids from per-table sequences. Every query filters by
// tenant_id, so a superuser pool still never mixes tenants; in production the
// router's per-tenant role and row-level security enforce it a second time.
package oms

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB runs transactions on behalf of a tenant.
//
// Tx runs fn in a read-write transaction on the tenant's database and commits
// it when fn returns nil; ReadTx runs fn in a transaction that only reads.
// Either may return before calling fn (for example while the tenant is paused
// for a move); Config.Retryable and Config.NotFound tell the server which of
// those errors a client should retry and which mean the tenant is unknown.
// fn may be called more than once; it must not keep state across calls.
// Implementations must be safe for concurrent use.
type DB interface {
	Tx(ctx context.Context, tenant string, fn func(pgx.Tx) error) error
	ReadTx(ctx context.Context, tenant string, fn func(pgx.Tx) error) error
}

// PoolDB is a DB over one pool to one database, for tools, benchmarks and
// tests. It ignores the tenant when choosing a connection: the pool's role
// (typically the superuser) is used for every tenant, with no pause gate, no
// fence and no row-level security. Isolation between tenants then rests on
// the service's own tenant_id filters alone. Production uses the tenant
// router instead.
type PoolDB struct {
	Pool *pgxpool.Pool
}

var _ DB = PoolDB{}

// Tx runs fn in a read-write transaction.
func (d PoolDB) Tx(ctx context.Context, _ string, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, d.Pool, fn)
}

// ReadTx runs fn in a read-only transaction.
func (d PoolDB) ReadTx(ctx context.Context, _ string, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, d.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, fn)
}
