package logrepl

import (
	"context"
	"fmt"
	"slices"
	"time"

	"tenantry/registry"
)

// MarkerTable is a tenant table that exists only to prove catch-up: a row
// written on the publisher for the tenant travels through the tenant's
// link like any other change, and the subscriber applies changes in commit
// order, so once the row is visible on the subscriber every change the
// publisher committed before it is applied there. It follows the tenant
// data rules (tenant_id first in the key), so it is published, copied,
// verified and purged with the tenant's other tables.
const MarkerTable = "tenantry_markers"

// EnsureMarkerTable creates MarkerTable in a tenant database if missing.
// Database preparation calls it before tenant roles' grants are set up.
func EnsureMarkerTable(ctx context.Context, q Querier) error {
	_, err := q.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.tenantry_markers (
		tenant_id text        NOT NULL,
		id        bigint      NOT NULL,
		at        timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (tenant_id, id))`)
	if err != nil {
		return fmt.Errorf("create %s: %w", MarkerTable, err)
	}
	return nil
}

// HasMarker reports whether tables (a move's tenant tables) include the
// marker table.
func HasMarker(tables []string) bool {
	return slices.Contains(tables, MarkerTable) || slices.Contains(tables, "public."+MarkerTable)
}

// WaitMarker proves that the subscriber dst has applied everything the
// publisher src committed for tenant before this call: it commits a marker
// row for the tenant on src and waits until the row is visible on dst, or
// timeout passes (ErrNotCaughtUp). Inside the promotion pause, with the
// tenant fenced on src, this is the proof that the target holds all of the
// tenant's writes. Unlike WaitApplied it does not depend on keepalive
// positions, and it is as fast as the link's latency for one small
// transaction.
func WaitMarker(ctx context.Context, src, dst Querier, tenant string, timeout time.Duration) error {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return err
	}
	id := time.Now().UnixNano()
	if _, err := src.Exec(ctx, `INSERT INTO public.tenantry_markers (tenant_id, id) VALUES ($1, $2)
		ON CONFLICT DO NOTHING`, tenant, id); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		var seen bool
		err := dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM public.tenantry_markers
			WHERE tenant_id = $1 AND id = $2)`, tenant, id).Scan(&seen)
		if err != nil {
			return fmt.Errorf("read marker: %w", err)
		}
		if seen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for marker %d of %s: %w after %v", id, tenant, ErrNotCaughtUp, timeout)
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return err
		}
	}
}
