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
)
