package move

import (
	"context"
	"fmt"

	"tenantry/logrepl"
	"tenantry/provision"
	"tenantry/workflow"
)

// complete ends the move on the side the tenant is on: the replication
// objects are dropped, the other side's copy of the tenant is purged (the
// source's only after its backup verifies), and the fence on it is lifted.
func (m *Mover) complete(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseCompleting
		other := d.Source
		if d.On == d.Source {
			other = d.Target
		}
		if other == d.Source {
			if err := m.cfg.VerifyBackup(d.BackupDir); err != nil {
				return "", workflow.Fail(fmt.Errorf("backup of %s does not verify; refusing to purge the source: %w", d.Tenant, err))
			}
		}
		if err := m.dropLinks(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.purge(ctx, r, d, other); err != nil {
			return "", err
		}
		if err := m.ensureStandbys(ctx, d.On); err != nil {
			return "", err
		}
		d.Phase = PhaseDone
		return "", nil
	})
}

// ensureStandbys gives the cluster of alias the standbys the alias wants,
// so that a tenant does not end its move on a single server. Idempotent:
// only missing standbys are added.
func (m *Mover) ensureStandbys(ctx context.Context, alias string) error {
	if m.cfg.EnsureStandbys == nil {
		return nil
	}
	snap, err := m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	a, ok := snap.Aliases[alias]
	if !ok || a.Standbys == 0 {
		return nil
	}
	if err := m.cfg.EnsureStandbys(ctx, a.Cluster, a.Standbys); err != nil {
		return fmt.Errorf("add the standbys alias %s wants to cluster %s: %w", alias, a.Cluster, err)
	}
	return nil
}

// dropLinks removes every replication object of the move on both sides.
// Idempotent.
func (m *Mover) dropLinks(ctx context.Context, r *workflow.Run, d *Data) error {
	_, sides, err := m.open(ctx, d.Source, d.Target)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	src, dst := sides[0], sides[1]
	fwd, err := linkFor(r.ID, d, d.Source, d.Target)
	if err != nil {
		return err
	}
	rev, err := linkFor(r.ID, d, d.Target, d.Source)
	if err != nil {
		return err
	}
	if err := logrepl.DropLink(ctx, src.pool, dst.pool, fwd.Link); err != nil {
		return err
	}
	if err := logrepl.DropLink(ctx, dst.pool, src.pool, rev.Link); err != nil {
		return err
	}
	d.Link = nil
	return nil
}

// purge deletes the tenant's rows from alias and drops its role there.
func (m *Mover) purge(ctx context.Context, r *workflow.Run, d *Data, alias string) error {
	_, sides, err := m.open(ctx, alias)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	tables := d.Tables
	if len(tables) == 0 {
		return nil
	}
	n, err := logrepl.PurgeTenant(ctx, sides[0].pool, d.Tenant, tables, m.cfg.PurgeBatch, func(table string, deleted int64) {
		_ = r.Progress(ctx, map[string]any{"purge": table, "deleted": deleted})
	})
	if err != nil {
		return err
	}
	for _, c := range n {
		d.Purged += c
	}
	// The fence is dropped with the role itself: the tenant has nothing left
	// on that cluster, and a router that never saw the flip still cannot
	// write there.
	return provision.DropTenantRole(ctx, sides[0].pool, d.Tenant)
}
