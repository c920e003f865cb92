package route

import (
	"context"
	"sync"
	"time"
)

// acker queues epoch acknowledgements so that registry writes never run on
// a transaction's path. Only the newest epoch per tenant is kept.
type acker struct {
	mu      sync.Mutex
	pending map[string]int64
	wake    chan struct{} // cap 1
}

func (a *acker) push(tenant string, epoch int64) {
	a.mu.Lock()
	if epoch > a.pending[tenant] {
		a.pending[tenant] = epoch
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *acker) take() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return nil
	}
	p := a.pending
	a.pending = map[string]int64{}
	return p
}

// ackLoop sends acks as they are queued and retries failed ones every
// HeartbeatInterval.
func (r *Router) ackLoop(ctx context.Context) {
	defer r.loops.Done()
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.acks.wake:
		case <-t.C:
		}
		r.flushAcks(ctx)
	}
}

// flushAcks sends every queued ack; failed ones are queued again. It is the
// body of the ack loop.
func (r *Router) flushAcks(ctx context.Context) {
	pending := r.acks.take()
	if r.cfg.Registry == nil {
		return
	}
	for tenant, epoch := range pending {
		if err := r.cfg.Registry.AckEpoch(ctx, r.cfg.ID, tenant, epoch); err != nil {
			r.m.errors.WithLabelValues("ack").Inc()
			if ctx.Err() == nil && !r.ackFailing.Swap(true) {
				r.log.Warn("ack epoch failing; retrying", logTenant, tenant, logEpoch, epoch, logErr, err)
			}
			r.acks.mu.Lock()
			if epoch > r.acks.pending[tenant] {
				r.acks.pending[tenant] = epoch
			}
			r.acks.mu.Unlock()
			continue
		}
		if r.ackFailing.Swap(false) {
			r.log.Info("ack epoch recovered")
		}
		r.log.Debug("acked epoch", logTenant, tenant, logEpoch, epoch)
	}
}
