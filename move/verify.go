package move

import (
	"context"
	"errors"
	"time"

	"tenantry/workflow"
)

// verify checks parity of the tenant's rows on both sides, re-checking
// differing chunks after the link catches up with the source.
func (m *Mover) verify(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseVerifying
		_, sides, err := m.open(ctx, d.Source, d.Target)
		if err != nil {
			return "", err
		}
		defer closeSides(sides)
		src, dst := sides[0], sides[1]
		l := d.Link
		if l == nil {
			return "", workflow.Fail(errors.New("verify: no replication link"))
		}
		catchUp := func(ctx context.Context) error {
			return m.catchUp(ctx, d, src, dst, *l, time.Minute)
		}
		first := true
		res, err := m.cfg.Parity(ctx, src.pool, dst.pool, d.Tenant, d.Tables, catchUp, func(rows int64, chunks int) {
			_ = r.Progress(ctx, map[string]any{"verify_rows": rows, "verify_chunks": chunks})
			if first {
				first = false
				_ = m.cfg.hook(ctx, "verifying") // crash tests stop here, mid-verify
			}
		})
		if errors.Is(err, ErrParity) {
			// A persistent difference: the move fails with the rows named.
			d.LastError = err.Error()
			return "", workflow.Fail(err)
		}
		if err != nil {
			return "", err
		}
		d.Verify = &res
		if err := m.cfg.hook(ctx, "verified"); err != nil {
			return "", err
		}
		return "ready", nil
	})
}

// verifyAfterFlip checks parity between the side now serving the tenant
// and the other side, kept in sync by the link back, for a flip whose
// pause did not include row counts. A difference is recorded and reported
// (cut back to the side that was verified before the flip); it does not
// end the move.
func (m *Mover) verifyAfterFlip(ctx context.Context, r *workflow.Run, d *Data) error {
	l := d.Link
	if l == nil || len(d.Flips) == 0 {
		d.VerifyPending = false
		return nil
	}
	_, sides, err := m.open(ctx, l.From, l.To)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	from, to := sides[0], sides[1]
	catchUp := func(ctx context.Context) error {
		return m.catchUp(ctx, d, from, to, *l, time.Minute)
	}
	if err := catchUp(ctx); err != nil {
		return err
	}
	res, err := m.cfg.Parity(ctx, from.pool, to.pool, d.Tenant, d.Tables, catchUp, func(int64, int) {})
	last := &d.Flips[len(d.Flips)-1]
	if errors.Is(err, ErrParity) {
		res.OK = false
		d.LastError = "parity after the flip failed (cut back to " + l.To + "): " + err.Error()
		_ = r.Info(ctx, d.LastError, nil)
	} else if err != nil {
		return err
	}
	last.AfterFlip = &res
	d.VerifyPending = false
	return save(ctx, r, d)
}
