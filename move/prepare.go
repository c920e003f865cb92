package move

import (
	"context"
	"fmt"
	"path/filepath"

	"tenantry/logrepl"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/tenanttable"
	"tenantry/workflow"
)

// prepare validates the move again (the world may have changed since it was
// requested), provisions the tenant on the target and takes the backup.
func (m *Mover) prepare(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhasePreparing
		snap, sides, err := m.open(ctx, d.Source, d.Target)
		if err != nil {
			return "", err
		}
		defer closeSides(sides)
		src, dst := sides[0], sides[1]
		if err := m.checkMove(ctx, snap, d.Tenant, d.Source, d.Target, src, dst); err != nil {
			return "", workflow.Fail(err)
		}
		if len(d.Tables) == 0 {
			if d.Tables, err = tenanttable.Names(ctx, src.pool); err != nil {
				return "", err
			}
		}
		if d.SourceRows, err = logrepl.CountRows(ctx, src.pool, d.Tenant, d.Tables); err != nil {
			return "", err
		}
		n, err := logrepl.CountRows(ctx, dst.pool, d.Tenant, d.Tables)
		if err != nil {
			return "", err
		}
		for t, c := range n {
			if c > 0 {
				return "", workflow.Fail(fmt.Errorf("%w: target %s already holds %d rows of tenant %s in %s",
					registry.ErrConflict, d.Target, c, d.Tenant, t))
			}
		}
		if err := provision.EnsureTenantRole(ctx, dst.pool, d.Tenant, provision.Password(m.cfg.Secret, d.Tenant)); err != nil {
			return "", fmt.Errorf("tenant role on target: %w", err)
		}
		d.BackupDir = filepath.Join(m.cfg.BackupDir, d.Tenant+"-"+r.ID)
		if err := m.cfg.VerifyBackup(d.BackupDir); err != nil {
			if err := m.cfg.Backup(ctx, src.pool, d.Tenant, d.BackupDir); err != nil {
				return "", fmt.Errorf("backup: %w", err)
			}
		}
		d.On = d.Source
		if err := m.cfg.hook(ctx, "prepared"); err != nil {
			return "", err
		}
		return "replicate", nil
	})
}

// checkMove refuses a move that cannot work: unknown tenant or alias, the
// tenant not on the source, same alias or same cluster (a role fence is
// cluster-wide), different schema versions.
func (m *Mover) checkMove(ctx context.Context, snap *registry.Snapshot, tenant, from, to string, src, dst *side) error {
	t, ok := snap.Tenants[tenant]
	if !ok {
		return fmt.Errorf("tenant %q: %w", tenant, registry.ErrNotFound)
	}
	if t.Alias != from {
		return fmt.Errorf("%w: tenant %s is on alias %s, not %s", registry.ErrConflict, tenant, t.Alias, from)
	}
	// Only a tenant delete fences a placement; prepare checks again with a
	// fresh snapshot, so a move created while a delete runs stops there.
	if t.State == registry.StateFenced {
		return fmt.Errorf("%w: tenant %s is fenced (being deleted)", registry.ErrConflict, tenant)
	}
	if from == to {
		return fmt.Errorf("%w: tenant %s is already on alias %s", registry.ErrInvalid, tenant, to)
	}
	if src.cluster == dst.cluster {
		return fmt.Errorf("%w: aliases %s and %s are on the same cluster %s; a move needs another cluster (the tenant's role, its fence, is cluster-wide)",
			registry.ErrInvalid, from, to, src.cluster)
	}
	sv, err := m.cfg.SchemaVersion(ctx, src.pool)
	if err != nil {
		return fmt.Errorf("source schema version: %w", err)
	}
	tv, err := m.cfg.SchemaVersion(ctx, dst.pool)
	if err != nil {
		return fmt.Errorf("target schema version: %w", err)
	}
	if sv != tv {
		return fmt.Errorf("%w: schema version differs: source %s is at %d, target %s at %d; migrate both first",
			registry.ErrConflict, from, sv, to, tv)
	}
	return nil
}
