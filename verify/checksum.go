package verify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
	"tenantry/tenanttable"
)

// TableSum is the count and hash of one table's rows of a tenant.
type TableSum struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	Hash  int64  `json:"hash"`
}

// Checksum runs the statement Compare runs per range over each tenant
// table's whole tenant instead, table after table on one connection to db,
// with the same session settings: the bare scan an operator would run by
// hand on either copy and compare. `tenantry bench move` measures Compare
// against it.
func Checksum(ctx context.Context, db *pgxpool.Pool, tenant string) ([]TableSum, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	conn, err := session(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := tenanttable.List(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := make([]TableSum, 0, len(tables))
	for _, t := range tables {
		ts, err := prepareSQL(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		s := TableSum{Table: t.Name}
		if err := conn.QueryRow(ctx, ts.whole, tenant).Scan(&s.Rows, &s.Hash); err != nil {
			return nil, fmt.Errorf("checksum %s: %w", t.Name, err)
		}
		out = append(out, s)
	}
	return out, nil
}
