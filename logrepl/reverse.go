package logrepl

import (
	"context"
	"fmt"
)

// PrepareReverse makes, on the side a flip goes to and before its pause,
// what the link back will replicate from: back's publication of the
// tenant's tables (row filter on the tenant) and back's logical slot, both
// on pub (the future publisher). The publication comes first: pgoutput looks
// publications up as of each decoded change, so a slot older than its
// publication fails on the changes in between. Returns the slot's starting
// point. Idempotent.
func PrepareReverse(ctx context.Context, pub Querier, back Link, tenant string, tables []string) (LSN, error) {
	if err := CreatePublication(ctx, pub, back.Publication, tenant, tables); err != nil {
		return 0, fmt.Errorf("prepare reverse link: %w", err)
	}
	lsn, err := CreateSlot(ctx, pub, back.Slot)
	if err != nil {
		return 0, fmt.Errorf("prepare reverse link: %w", err)
	}
	return lsn, nil
}

// StartReverse starts the link back on sub (the side a flip came from)
// after the flip: back's subscription to back's publication on publisher,
// through the slot PrepareReverse made (copy_data false, no new slot), its
// replication origin advanced to startLSN before it is enabled. startLSN is
// the publisher's pg_current_wal_lsn() read at the flip, after the forward
// subscription had applied everything and before the tenant wrote there:
// PostgreSQL 15 cannot filter changes by origin, so without the advance the
// link back would replay the forward copy's changes onto sub. Idempotent:
// an enabled subscription is left alone, and the origin is only ever moved
// forward.
func StartReverse(ctx context.Context, sub Querier, back Link, publisher Endpoint, startLSN LSN) error {
	if startLSN == 0 {
		return fmt.Errorf("start reverse link: flip lsn is required")
	}
	err := CreateSubscription(ctx, sub, back.Subscription, publisher, back.Publication,
		SubOpts{SlotName: back.Slot, CopyData: false, CreateSlot: false, Enabled: false})
	if err != nil {
		return fmt.Errorf("start reverse link: %w", err)
	}
	st, err := Status(ctx, sub, back.Subscription)
	if err != nil || st.Enabled {
		return wrapErr("start reverse link", err)
	}
	if st.OriginLSN < startLSN {
		_, err := sub.Exec(ctx, `
			SELECT pg_replication_origin_advance('pg_' || oid, $1::text::pg_lsn) FROM pg_subscription
			WHERE subname = $2 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
			startLSN.String(), back.Subscription)
		if err != nil {
			return fmt.Errorf("start reverse link: advance origin to %s: %w", startLSN, err)
		}
	}
	if err := SetSubscriptionEnabled(ctx, sub, back.Subscription, true); err != nil {
		return fmt.Errorf("start reverse link: %w", err)
	}
	return nil
}
