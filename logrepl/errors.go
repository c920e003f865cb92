package logrepl

import "errors"

// Errors callers branch on. Bad input (names, tenant ids, LSNs, negative
// gaps or batches) wraps registry.ErrInvalid instead.
var (
	// ErrSlotLost means a replication slot a link depends on is gone or was
	// invalidated (wal_status 'lost'): the link cannot resume where it was and
	// must be rebuilt from a fresh copy.
	ErrSlotLost = errors.New("replication slot lost")
	// ErrSubscriptionBroken means a subscription's workers are failing (its
	// error counters grew while we waited) or it does not exist.
	ErrSubscriptionBroken = errors.New("subscription broken")
	// ErrTableNotEligible means a table cannot be published with a tenant
	// row filter: no tenant_id column, or tenant_id not in its replica
	// identity (PostgreSQL would then reject every UPDATE and DELETE on the
	// table, for all tenants).
	ErrTableNotEligible = errors.New("table not eligible for a tenant move")
	// ErrNotCaughtUp means WaitApplied's or WaitMarker's timeout passed
	// before the subscriber proved it had applied the publisher up to the
	// point asked for.
	ErrNotCaughtUp = errors.New("subscription not caught up")
)
