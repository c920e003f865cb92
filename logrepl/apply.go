package logrepl

import (
	"context"
	"fmt"
	"time"
)

// WaitApplied waits until subscription sub on dst has applied everything
// the publisher src wrote up to lsn, or timeout passes (ErrNotCaughtUp).
//
// Why these proofs: pgoutput sends nothing for transactions without
// published changes (PostgreSQL 15 skips empty transactions), so after the
// tenant is fenced no change at or after lsn ever arrives and the origin's
// progress (the end of the last applied transaction) stays below lsn. What
// does arrive is the walsender's keepalive carrying its WAL position once it
// has decoded past lsn. The apply worker handles messages in order, so
// either of these proves every change before lsn is applied:
//   - pg_stat_subscription.latest_end_lsn >= lsn on dst: the worker has
//     processed a keepalive sent after lsn (fastest; the target's WAL is
//     then flushed by reading the origin's progress with flush = true, as
//     the subscription commits asynchronously by default);
//   - the slot's confirmed_flush_lsn >= lsn on src: the subscriber reported
//     everything before lsn applied and flushed;
//   - the origin's progress >= lsn (traffic continued after lsn).
//
// These proofs rest on keepalive positions; once, under load, a test saw
// WaitApplied return before a transaction was visible on the subscriber.
// The flip and verify therefore prove catch-up with WaitMarker, and use
// WaitApplied only for databases without the marker table.
//
// A slot that disappears or is invalidated is ErrSlotLost; apply errors
// counted while waiting, a disabled or missing subscription are
// ErrSubscriptionBroken.
func WaitApplied(ctx context.Context, src, dst Querier, sub, slot string, lsn LSN, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	base, err := Status(ctx, dst, sub)
	if err != nil {
		return fmt.Errorf("wait applied: %w", err)
	}
	for {
		done, err := appliedStep(ctx, src, dst, sub, slot, lsn, base)
		if done || err != nil {
			return err
		}
		if err := sleep(ctx, pollEvery); err != nil {
			st, _ := Status(context.WithoutCancel(ctx), dst, sub)
			return fmt.Errorf("wait applied %s: %w: applied %s, latest keepalive %s", lsn, ErrNotCaughtUp, st.OriginLSN, st.LatestEndLSN)
		}
	}
}

// appliedStep is one poll of WaitApplied.
func appliedStep(ctx context.Context, src, dst Querier, sub, slot string, lsn LSN, base SubStatus) (bool, error) {
	sl, err := Slot(ctx, src, slot)
	if err != nil {
		return false, fmt.Errorf("wait applied: %w", err)
	}
	st, err := Status(ctx, dst, sub)
	if err != nil {
		return false, fmt.Errorf("wait applied: %w", err)
	}
	switch {
	case st.ApplyErrors > base.ApplyErrors:
		return false, fmt.Errorf("wait applied: %w: %d apply errors (see the target's server log)", ErrSubscriptionBroken, st.ApplyErrors-base.ApplyErrors)
	case !st.Enabled:
		return false, fmt.Errorf("wait applied: %w: subscription %s is disabled", ErrSubscriptionBroken, sub)
	case sl.ConfirmedFlush >= lsn || st.OriginLSN >= lsn:
		return true, nil
	case st.LatestEndLSN >= lsn:
		// Flush what the worker applied before that keepalive.
		if _, err := Status(ctx, dst, sub); err != nil {
			return false, fmt.Errorf("wait applied: %w", err)
		}
		return true, nil
	}
	return false, nil
}
