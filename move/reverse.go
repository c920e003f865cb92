package move

import (
	"context"
	"fmt"
)

// PrepareReverse makes, on the target and before the promotion pause, what
// cutback will replicate from: the reverse publication of the tenant's
// tables (row filter on the tenant) and the reverse logical slot. The
// publication comes first: pgoutput looks publications up as of each
// decoded change, so a slot older than its publication fails on the changes
// in between. Returns the slot's starting point. Idempotent.
func PrepareReverse(ctx context.Context, dst Querier, n Names, tenant string, tables []string) (LSN, error) {
	if err := CreatePublication(ctx, dst, n.RevPublication, tenant, tables); err != nil {
		return 0, fmt.Errorf("prepare reverse link: %w", err)
	}
	lsn, err := CreateSlot(ctx, dst, n.RevSlot)
	if err != nil {
		return 0, fmt.Errorf("prepare reverse link: %w", err)
	}
	return lsn, nil
}

// StartReverse starts the reverse link on the source after the flip:
// the reverse subscription to target's reverse publication through the slot
// PrepareReverse made (copy_data false, no new slot), its replication origin
// advanced to startLSN before it is enabled. startLSN is the target's
// pg_current_wal_lsn() read at the flip, after the forward subscription had
// applied everything and before the tenant wrote on the target: PostgreSQL
// 15 cannot filter changes by origin, so without the advance the reverse
// link would replay the forward copy's changes back onto the source.
// Idempotent: an enabled reverse subscription is left alone, and the origin
// is only ever moved forward.
func StartReverse(ctx context.Context, src Querier, n Names, target Endpoint, startLSN LSN) error {
	if startLSN == 0 {
		return fmt.Errorf("start reverse link: flip lsn is required")
	}
	err := CreateSubscription(ctx, src, n.RevSubscription, target, n.RevPublication,
		SubOpts{SlotName: n.RevSlot, CopyData: false, CreateSlot: false, Enabled: false})
	if err != nil {
		return fmt.Errorf("start reverse link: %w", err)
	}
	st, err := Status(ctx, src, n.RevSubscription)
	if err != nil || st.Enabled {
		return wrapErr("start reverse link", err)
	}
	if st.OriginLSN < startLSN {
		_, err := src.Exec(ctx, `
			SELECT pg_replication_origin_advance('pg_' || oid, $1::text::pg_lsn) FROM pg_subscription
			WHERE subname = $2 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
			startLSN.String(), n.RevSubscription)
		if err != nil {
			return fmt.Errorf("start reverse link: advance origin to %s: %w", startLSN, err)
		}
	}
	if err := SetSubscriptionEnabled(ctx, src, n.RevSubscription, true); err != nil {
		return fmt.Errorf("start reverse link: %w", err)
	}
	return nil
}
