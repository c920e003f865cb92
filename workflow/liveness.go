package workflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Liveness: a runner that has started holds a session-level advisory lock
// on a connection of its own for as long as it lives. When its process dies
// (kill -9, a crash, a lost host), PostgreSQL ends that session and drops
// the lock at once, so other runners see the owner of a lease dead long
// before the lease expires and take its workflows over within one poll.
// This matters most for a move inside its promotion pause: the tenant stays
// paused until someone finishes or rolls back the flip, and the routers'
// buffer window (10 s) is as long as the default lease (issue 9, item 4).
//
// Leases stay the fence: every claim bumps the generation, so a runner that
// was wrongly taken for dead (its liveness session cut while it still
// runs) loses its next write. A runner that notices its liveness session
// is gone cancels its running steps as if their leases were lost.
//
// A lease owner with no row in workflow_runners (a runner stepped by hand
// with Tick, or one that could not reach the database when it started) is
// judged by its lease's expiry alone, as before.

// livenessClass is the first key of every runner's advisory lock (the
// second is workflow_runners.lock_key): "tent".
const livenessClass = 0x74656e74

// ownerDead is an SQL predicate, over the workflows row in scope, that holds
// when the lease's owner registered liveness and no longer holds its lock.
const ownerDead = `EXISTS (SELECT 1 FROM workflow_runners wr WHERE wr.owner = workflows.lease_owner
	AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
		AND l.classid = 1952804468::oid AND l.objid = wr.lock_key::oid AND l.objsubid = 2))`

// claimable is the SQL condition under which runner $2 may take the lease
// of the workflows row in scope.
const claimable = `(lease_owner IS NULL OR lease_expires < now() OR lease_owner = $2 OR ` + ownerDead + `)`

// liveness is a runner's liveness session.
type liveness struct {
	conn *pgx.Conn
	lost chan struct{} // closed when the session is found gone
}

// openLiveness registers this runner and takes its liveness lock on a new
// session. Rows of runners dead for a day are removed on the way.
func (rn *Runner) openLiveness(ctx context.Context) (*liveness, error) {
	cfg := rn.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "tenantry-runner " + rn.cfg.Owner
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open liveness session: %w", err)
	}
	var key int32
	err = conn.QueryRow(ctx, `INSERT INTO workflow_runners (owner) VALUES ($1)
		ON CONFLICT (owner) DO UPDATE SET started_at = now() RETURNING lock_key`, rn.cfg.Owner).Scan(&key)
	if err == nil {
		_, err = conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", int32(livenessClass), key)
	}
	if err == nil {
		_, err = conn.Exec(ctx, `DELETE FROM workflow_runners wr WHERE started_at < now() - interval '1 day'
			AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
				AND l.classid = $1::oid AND l.objid = wr.lock_key::oid AND l.objsubid = 2)`, int64(livenessClass))
	}
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("register runner liveness: %w", err)
	}
	return &liveness{conn: conn, lost: make(chan struct{})}, nil
}

// checkLiveness is one loop step of Start: it opens the liveness session
// when there is none and pings it otherwise; a session found gone is
// closed, its runs are cancelled (their leases may be taken over), and the
// next step opens a new one.
func (rn *Runner) checkLiveness(ctx context.Context) {
	rn.mu.Lock()
	lv := rn.live
	rn.mu.Unlock()
	if lv == nil {
		lv, err := rn.openLiveness(ctx)
		if err != nil {
			if ctx.Err() == nil {
				rn.log.Warn("runner liveness", "err", err)
			}
			return
		}
		rn.mu.Lock()
		rn.live = lv
		rn.mu.Unlock()
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := lv.conn.Ping(pctx)
	cancel()
	if err == nil || ctx.Err() != nil {
		return
	}
	rn.log.Warn("runner liveness session lost; cancelling running steps", "err", err)
	rn.mu.Lock()
	rn.live = nil
	rn.mu.Unlock()
	close(lv.lost)
	lv.conn.Close(context.Background())
}

// livenessLost returns a channel closed when the current liveness session
// is lost (nil, which never fires, when there is none).
func (rn *Runner) livenessLost() <-chan struct{} {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.live == nil {
		return nil
	}
	return rn.live.lost
}

// closeLiveness ends the liveness session (Stop, after leases are handed back).
func (rn *Runner) closeLiveness() {
	rn.mu.Lock()
	lv := rn.live
	rn.live = nil
	rn.mu.Unlock()
	if lv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = lv.conn.Exec(ctx, "DELETE FROM workflow_runners WHERE owner = $1", rn.cfg.Owner)
		if err := lv.conn.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
			rn.log.Debug("close liveness session", "err", err)
		}
	}
}
