package move

import "errors"

// Errors callers branch on. Bad requests wrap registry.ErrInvalid,
// ErrNotFound or ErrConflict; a move of the same tenant already running is
// a *workflow.ActiveError; the replication link's failures wrap logrepl's
// sentinels (logrepl.ErrSlotLost, logrepl.ErrSubscriptionBroken, logrepl.ErrNotCaughtUp).
var (
	// ErrPrecheck means a promotion or cutback was refused before any pause
	// was taken (lag too high, a router not heartbeating, outside the
	// maintenance window). Nothing changed.
	ErrPrecheck = errors.New("promotion pre-check failed")
	// ErrAborted means a flip failed inside the pause and was rolled back:
	// the tenant serves from where it was, unfenced.
	ErrAborted = errors.New("flip aborted and rolled back")
	// ErrWrongState means the signal does not apply to the move as it is now
	// (cutback before promotion, cancel after it).
	ErrWrongState = errors.New("move is not in a state that takes this command")
	// ErrParity marks a persistent difference between the two copies; Parity
	// implementations wrap their mismatch errors with it.
	ErrParity = errors.New("parity check failed")
	// ErrLinkLost means a failover or switchover of one of the move's
	// clusters (or a dropped slot) broke its replication link: the slot is
	// not on the cluster's primary any more, or the subscription points at
	// a former primary. The move rebuilds the link (failover.go).
	ErrLinkLost = errors.New("replication link lost")
	// ErrSlotInvalidated means the link's slot was invalidated (wal_status
	// 'lost': the WAL it needed was removed, max_slot_wal_keep_size): the
	// move fails with that reason.
	ErrSlotInvalidated = errors.New("replication slot invalidated")
	// ErrLinkNotInSync means a cutback (or a promotion) was refused because
	// the link it relies on is broken or being rebuilt; it is allowed again
	// once the link is in sync. Nothing changed.
	ErrLinkNotInSync = errors.New("replication link not in sync")
)
