package move

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"tenantry/logrepl"
	"tenantry/workflow"
)

// replicate makes the forward link with a binary copy of the tenant's rows
// from the snapshot of the link's slot (logrepl.CopyLink: idempotent, an
// interrupted copy is discarded and made again), then waits for the lag to
// drop. CopySeconds is the time to a copy and a subscription streaming from
// where it ends.
func (m *Mover) replicate(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseReplicating
		_, sides, err := m.open(ctx, d.Source, d.Target)
		if err != nil {
			return "", err
		}
		defer closeSides(sides)
		src, dst := sides[0], sides[1]
		l, err := linkFor(r.ID, d, d.Source, d.Target)
		if err != nil {
			return "", workflow.Fail(err)
		}
		d.Link = &l
		if err := save(ctx, r, d); err != nil {
			return "", err
		}
		start := time.Now()
		var hooked atomic.Bool
		var saved time.Time
		res, err := logrepl.CopyLink(ctx, src.pool, dst.pool, src.ep, l.Link, d.Tenant, d.Tables, logrepl.CopyOptions{
			Workers:         m.cfg.CopyWorkers,
			PurgeBatch:      m.cfg.PurgeBatch,
			DeferIndexPages: m.cfg.DeferIndexPages,
			// Called from one goroutine while this one waits in CopyLink;
			// the bars of move status read the saved Data.Copy.
			OnProgress: func(ts []logrepl.TableSync) {
				d.Copy = ts
				_ = r.Progress(ctx, map[string]any{"copy": ts})
				if time.Since(saved) >= time.Second {
					saved = time.Now()
					_ = save(ctx, r, d)
				}
			},
			// "replicating" is inside the copy: the first table is
			// committed on the target, the others may not be.
			AfterTable: func(ctx context.Context, _ string) error {
				if !hooked.CompareAndSwap(false, true) {
					return nil
				}
				return m.cfg.hook(ctx, "replicating")
			},
		})
		if err != nil {
			return "", err
		}
		if res.Copied {
			d.Copy, d.CopySeconds = res.Tables, time.Since(start).Seconds()
		}
		if err := save(ctx, r, d); err != nil {
			return "", err
		}
		if err := logrepl.Vacuum(ctx, dst.pool, d.Tables); err != nil {
			return "", err
		}
		if err := m.waitLag(ctx, r, d, src, l); err != nil {
			return "", err
		}
		if err := m.cfg.hook(ctx, "replicated"); err != nil {
			return "", err
		}
		return "verify", nil
	})
}

// waitLag waits until the link's lag is under the bound.
func (m *Mover) waitLag(ctx context.Context, r *workflow.Run, d *Data, src *side, l Link) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		lag, err := logrepl.Lag(ctx, src.pool, l.Slot)
		if err != nil {
			return err
		}
		d.LagBytes = lag
		_ = r.Progress(ctx, map[string]any{"lag_bytes": lag})
		if lag <= m.cfg.LagBound {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication lag %d bytes still above %d after 5 minutes", lag, m.cfg.LagBound)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// catchUp waits until the link from -> to has applied everything from has
// committed for the tenant: with a marker row where the tenant's tables
// have the marker table, else with WaitApplied's position proofs.
func (m *Mover) catchUp(ctx context.Context, d *Data, from, to *side, l Link, timeout time.Duration) error {
	if logrepl.HasMarker(d.Tables) {
		st, err := logrepl.Status(ctx, to.pool, l.Subscription)
		if err != nil {
			return err
		}
		if !st.Enabled {
			return fmt.Errorf("%w: subscription %s is disabled", logrepl.ErrSubscriptionBroken, l.Subscription)
		}
		return logrepl.WaitMarker(ctx, from.pool, to.pool, d.Tenant, timeout)
	}
	lsn, err := logrepl.CurrentLSN(ctx, from.pool)
	if err != nil {
		return err
	}
	return logrepl.WaitApplied(ctx, from.pool, to.pool, l.Subscription, l.Slot, lsn, timeout)
}
