package move

import (
	"context"
	"time"

	"tenantry/workflow"
)

// ready waits for the operator's promote (or promotes at once with --auto).
func (m *Mover) ready(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		d.Phase = PhaseReady
		for _, s := range r.Signals {
			r.Consume(s)
			switch s.Name {
			case SignalPromote:
				return "promote", nil
			case SignalCancel:
				return "cancel", nil
			}
		}
		if d.Auto && d.FailedFlips < 3 {
			return "promote", nil
		}
		// Woken now and then to check the link (failover.go).
		return "", workflow.Wait(time.Now().Add(m.cfg.LinkCheckInterval))
	})
}
