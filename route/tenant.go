package route

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tenantry/registry"
)

// tenantState is one tenant's placement as this router applies it, its gate
// and its current pool. Every field is guarded by mu; the lock is per tenant
// and held only for counter updates, so tenants never wait on each other.
type tenantState struct {
	id string

	mu      sync.Mutex
	applied bool // a snapshot entry has been applied
	gone    bool // the tenant left the registry
	epoch   int64
	state   registry.State
	ep      registry.Endpoint
	epErr   error
	// gate is non-nil while paused, or not yet applied, and closed when
	// the epoch moves on (or the first snapshot entry is applied).
	gate chan struct{}
	// pool serves ep; nil until the first transaction needs it.
	pool *tenantPool
	// inflight counts admitted read-write transactions; current those
	// admitted under epoch. inflight-current is what an ack of epoch waits
	// for: read-only transactions are not waited for (see Router.ReadTx).
	inflight, current int
	ackWanted         int64
	lastUsed          time.Time

	txOK, txErr, txPaused, txFenced, txNotFound prometheus.Counter
}

func (r *Router) newTenantState(id string) *tenantState {
	tx := r.m.transactions
	return &tenantState{
		id: id,
		// Until a snapshot entry is applied the state is neither active nor
		// paused: a transaction that finds it so (another goroutine stored
		// it and is about to apply the snapshot) waits at this gate, which
		// the apply opens. (With no gate it waited out the whole buffer
		// window on a nil channel, then failed as paused.)
		gate:       make(chan struct{}),
		lastUsed:   r.cfg.Now(),
		txOK:       tx.WithLabelValues(id, resultOK),
		txErr:      tx.WithLabelValues(id, resultError),
		txPaused:   tx.WithLabelValues(id, resultPaused),
		txFenced:   tx.WithLabelValues(id, resultFenced),
		txNotFound: tx.WithLabelValues(id, resultNotFound),
	}
}

// Transaction results (label values of transactions_total).
const (
	resultOK       = "ok"
	resultError    = "error"
	resultPaused   = "paused"
	resultFenced   = "fenced"
	resultNotFound = "not_found"
	resultStopped  = "stopped"
)

func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, ErrTenantPaused):
		return resultPaused
	case errors.Is(err, ErrTenantFenced):
		return resultFenced
	case errors.Is(err, ErrTenantNotFound):
		return resultNotFound
	case errors.Is(err, ErrRouterStopped):
		return resultStopped
	}
	return resultError
}

func (st *tenantState) count(err error) {
	if err == nil {
		st.txOK.Inc()
		return
	}
	switch resultOf(err) {
	case resultPaused:
		st.txPaused.Inc()
	case resultFenced:
		st.txFenced.Inc()
	case resultNotFound:
		st.txNotFound.Inc()
	default:
		st.txErr.Inc()
	}
}

// apply moves the state to tenant entry t of snap (nil: the tenant is gone).
// It returns the epoch to acknowledge now (0: none yet) and a pool to close.
// Stale entries are ignored. The caller holds st.mu.
func (st *tenantState) apply(snap *registry.Snapshot, t *registry.Tenant) (ack int64, toClose *tenantPool) {
	if t == nil {
		if !st.gone {
			st.gone = true
			st.openGate()
			toClose = st.retirePool()
		}
		return 0, toClose
	}
	if st.applied && t.Epoch < st.epoch {
		return 0, nil
	}
	// The endpoint is re-resolved even at the same epoch: a failover
	// repoints an alias's cluster without touching tenants' epochs.
	ep, epErr := snap.AliasEndpoint(t.Alias)
	// A pause that ends where it began is a flip that was rolled back: the
	// fence may have terminated the pool's sessions, so start a new pool
	// rather than hand out dead connections.
	resumedInPlace := st.applied && st.state == registry.StatePaused && t.State != registry.StatePaused && t.Epoch > st.epoch
	// A pool is retired as its tenant is paused: whatever ends the pause
	// needs another (a flip or a switchover: the new endpoint's; a
	// rollback: a new one, as above), and its idle sessions close now,
	// while the routers drain, rather than be ended by the fence inside the
	// pause. In-flight transactions keep it until they end.
	pausing := t.State == registry.StatePaused && (!st.applied || t.Epoch > st.epoch)
	if ep != st.ep || !st.applied || resumedInPlace || pausing {
		toClose = st.retirePool()
		st.ep = ep
	}
	st.epErr = epErr
	if st.applied && t.Epoch == st.epoch && !st.gone {
		return 0, toClose
	}
	st.applied, st.gone = true, false
	st.epoch, st.state = t.Epoch, t.State
	st.current = 0
	st.openGate()
	if t.State == registry.StatePaused {
		st.gate = make(chan struct{})
	}
	if st.inflight == 0 {
		st.ackWanted = 0
		return t.Epoch, toClose
	}
	st.ackWanted = t.Epoch
	return 0, toClose
}

func (st *tenantState) openGate() {
	if st.gate != nil {
		close(st.gate)
		st.gate = nil
	}
}

// retirePool detaches the current pool; it returns it when it can be closed
// now, else the last transaction on it closes it. The caller holds st.mu.
func (st *tenantState) retirePool() *tenantPool {
	p := st.pool
	if p == nil {
		return nil
	}
	st.pool = nil
	p.retired = true
	if p.refs == 0 {
		return p
	}
	return nil
}

// detachPool is retirePool for Stop and Reap.
func (st *tenantState) detachPool() *tenantPool {
	p := st.pool
	st.pool = nil
	if p != nil {
		p.retired = true
	}
	return p
}

// admit waits at the tenant's gate until it may run a transaction (one that
// writes, or not) and returns the pool to run it on and the epoch it was
// admitted under.
func (r *Router) admit(ctx context.Context, st *tenantState, writes bool) (*tenantPool, int64, error) {
	var (
		timer *time.Timer
		start time.Time
	)
	for {
		if r.stopped.Load() {
			return nil, 0, &TenantError{Tenant: st.id, Err: ErrRouterStopped}
		}
		st.mu.Lock()
		switch {
		case st.gone:
			st.mu.Unlock()
			return nil, 0, &TenantError{Tenant: st.id, Err: ErrTenantNotFound}
		case st.state == registry.StateActive:
			if st.epErr != nil {
				err := st.epErr
				st.mu.Unlock()
				return nil, 0, fmt.Errorf("tenant %s: resolve placement: %w", st.id, err)
			}
			p := st.pool
			if p == nil {
				var err error
				if p, err = r.newPool(st.id, st.ep); err != nil {
					st.mu.Unlock()
					return nil, 0, err
				}
				st.pool = p
			}
			p.refs++
			if writes {
				st.inflight++
				st.current++
			}
			gen := st.epoch
			st.mu.Unlock()
			if timer != nil {
				timer.Stop()
				r.m.bufferWait.Observe(time.Since(start).Seconds())
			}
			return p, gen, nil
		case st.state == registry.StateFenced:
			st.mu.Unlock()
			return nil, 0, &TenantError{Tenant: st.id, Err: ErrTenantFenced}
		}
		// Paused: wait at the gate.
		gate, epoch := st.gate, st.epoch
		st.mu.Unlock()
		if timer == nil {
			start = time.Now()
			timer = time.NewTimer(r.cfg.BufferWindow)
		}
		if err := r.wait(ctx, st, gate, timer, epoch); err != nil {
			timer.Stop()
			r.m.bufferWait.Observe(time.Since(start).Seconds())
			return nil, 0, err
		}
	}
}

// wait blocks on a paused tenant's gate; nil means the gate opened.
func (r *Router) wait(ctx context.Context, st *tenantState, gate chan struct{}, timer *time.Timer, epoch int64) error {
	if n := r.buffered.Add(1); n > int64(r.cfg.MaxBuffered) {
		r.buffered.Add(-1)
		return &TenantError{Tenant: st.id, Err: ErrTenantPaused, Cause: fmt.Errorf("buffer full (%d transactions waiting)", n-1)}
	}
	defer r.buffered.Add(-1)
	select {
	case <-gate:
		return nil
	case <-timer.C:
		return &TenantError{Tenant: st.id, Err: ErrTenantPaused,
			Cause: fmt.Errorf("still paused at epoch %d after buffer window %s", epoch, r.cfg.BufferWindow)}
	case <-ctx.Done():
		return &TenantError{Tenant: st.id, Err: ErrTenantPaused, Cause: ctx.Err()}
	case <-r.done:
		return &TenantError{Tenant: st.id, Err: ErrRouterStopped}
	}
}

// release ends a transaction (one that writes, or not) admitted under
// epoch gen on p. It reports whether the tenant's epoch has moved on since.
func (r *Router) release(st *tenantState, p *tenantPool, gen int64, writes bool) (moved bool) {
	now := r.cfg.Now()
	st.mu.Lock()
	p.refs--
	closeIt := p.retired && p.refs == 0
	moved = gen != st.epoch
	if writes {
		st.inflight--
		if !moved {
			st.current--
		}
	}
	var ack int64
	if st.ackWanted != 0 && st.inflight == st.current {
		ack, st.ackWanted = st.ackWanted, 0
	}
	st.lastUsed = now
	st.mu.Unlock()
	p.lastUsed.Store(now.UnixNano())
	if p.cluster.waiting.Load() > 0 {
		p.cluster.signalIdle()
	}
	if closeIt {
		r.closePoolLater(p)
	}
	if ack != 0 {
		r.acks.push(st.id, ack)
	}
	return moved
}
