package move

import (
	"context"
	"fmt"
	"time"

	"tenantry/logrepl"
	"tenantry/workflow"
)

// replicate starts the forward link and waits for the initial copy, then for
// the lag to drop.
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
		start := time.Now()
		if err := logrepl.CreatePublication(ctx, src.pool, l.Publication, d.Tenant, d.Tables); err != nil {
			return "", err
		}
		if _, err := logrepl.CreateSlot(ctx, src.pool, l.Slot); err != nil {
			return "", err
		}
		if err := logrepl.CreateSubscription(ctx, dst.pool, l.Subscription, src.ep, l.Publication,
			logrepl.SubOpts{CopyData: true, SlotName: l.Slot, Enabled: true}); err != nil {
			return "", err
		}
		if err := save(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.cfg.hook(ctx, "replicating"); err != nil {
			return "", err
		}
		err = logrepl.WaitSynced(ctx, dst.pool, l.Subscription, d.Tenant, func(ts []logrepl.TableSync) {
			d.Copy = ts
			_ = r.Progress(ctx, map[string]any{"copy": ts})
		})
		if err != nil {
			return "", err
		}
		if d.CopySeconds == 0 {
			d.CopySeconds = time.Since(start).Seconds()
		}
		if d.Copy, err = logrepl.CopyProgress(ctx, dst.pool, l.Subscription, d.Tenant); err != nil {
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
