package move

import (
	"context"
	"errors"

	"tenantry/workflow"
)

// cancel drops the replication objects and the target's copy; the tenant
// must be on the source.
func (m *Mover) cancel(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		if d.On == d.Target {
			return "hypercare", nil
		}
		d.Phase = PhaseCancelling
		if err := m.dropLinks(ctx, r, d); err != nil {
			return "", err
		}
		if err := m.purge(ctx, r, d, d.Target); err != nil {
			return "", err
		}
		d.Phase = PhaseDone
		return "", workflow.Cancel(errors.New("cancelled by operator"))
	})
}

// abort is the rollback of a failed move: when the tenant is (still) on the
// source, the replication objects and the target's copy are removed. When
// the tenant is on the target, nothing is removed: both copies stay for the
// operator.
func (m *Mover) abort(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		if d.Flip != nil {
			if err := m.resolveFlip(ctx, r, d); err != nil {
				return "", err
			}
		}
		if d.On != "" && d.On != d.Source {
			_ = r.Info(ctx, "move failed while the tenant is on the target: replication objects and both copies kept", nil)
			return "", nil
		}
		if err := m.dropLinks(ctx, r, d); err != nil {
			return "", err
		}
		if len(d.Tables) > 0 {
			if err := m.purge(ctx, r, d, d.Target); err != nil {
				return "", err
			}
		}
		return "", nil
	})
}
