package move

import (
	"context"
	"fmt"
	"time"

	"tenantry/logrepl"
	"tenantry/workflow"
)

// hypercare keeps both sides in sync while the operator decides: cutback
// (or promote again after a cutback), complete, or cancel.
func (m *Mover) hypercare(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseHypercare
		if d.HypercareEnds.IsZero() {
			d.HypercareEnds = m.cfg.Now().Add(m.cfg.Hypercare)
		}
		for _, s := range r.Signals {
			r.Consume(s)
			switch {
			case s.Name == SignalCutback && d.On == d.Target:
				return "cutback", nil
			case s.Name == SignalPromote && d.On == d.Source:
				return "promote", nil
			case s.Name == SignalComplete:
				return "complete", nil
			case s.Name == SignalCancel && d.On == d.Source:
				return "cancel", nil
			default:
				_ = r.Info(ctx, fmt.Sprintf("signal %s ignored: tenant is on %s", s.Name, d.On), nil)
			}
		}
		if d.VerifyPending {
			if err := m.verifyAfterFlip(ctx, r, d); err != nil {
				return "", err
			}
		}
		if !m.cfg.Now().Before(d.HypercareEnds) {
			return "complete", nil
		}
		if err := m.checkLink(ctx, d); err != nil {
			d.LastError = err.Error()
			_ = r.Info(ctx, "replication link unhealthy", map[string]string{"error": err.Error()})
		}
		return "", workflow.Wait(minTime(d.HypercareEnds, m.cfg.Now().Add(m.cfg.LinkCheckInterval)))
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// checkLink reports a broken or lost link during hypercare.
func (m *Mover) checkLink(ctx context.Context, d *Data) error {
	if d.Link == nil {
		return nil
	}
	_, sides, err := m.open(ctx, d.Link.From, d.Link.To)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	if d.LagBytes, err = logrepl.Lag(ctx, sides[0].pool, d.Link.Slot); err != nil {
		return err
	}
	st, err := logrepl.Status(ctx, sides[1].pool, d.Link.Subscription)
	if err != nil {
		return err
	}
	if !st.Enabled {
		return fmt.Errorf("%w: subscription %s is disabled", logrepl.ErrSubscriptionBroken, d.Link.Subscription)
	}
	return nil
}
