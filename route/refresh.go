package route

import (
	"context"
	"sync"
	"time"

	"tenantry/registry"
)

// Refresher is implemented by snapshot sources that can be asked to bring
// their snapshot up to date now; *registry.Watcher is one (its Refresh is
// one poll step). Refresh returns once Current holds the registry's latest
// version, or an error. It must be safe for concurrent use.
//
// A router whose snapshot lacks a tenant asks its source to refresh once
// before it answers ErrTenantNotFound: a tenant created a moment ago is
// known to the gateway (which routed the request) before every router has
// seen the change, and must not be answered "not found".
type Refresher interface {
	Refresh(ctx context.Context) error
}

// DefaultRefreshTimeout is Config.RefreshTimeout's default.
const DefaultRefreshTimeout = 2 * time.Second

// refresher coalesces the refreshes a router asks its source for. At most
// one runs at a time, and every caller is answered by a refresh that started
// after it asked — a refresh already under way may have read the registry
// before the tenant was created — so any number of callers at once cost at
// most two refreshes.
type refresher struct {
	src     Refresher
	timeout time.Duration

	mu   sync.Mutex
	cur  *refreshCall // the refresh under way, if any
	next *refreshCall // starts when cur ends; new callers join it
}

type refreshCall struct {
	done    chan struct{}
	err     error
	waiters int // callers that joined; under refresher.mu
}

// refresh waits for a refresh that starts after the call, or for ctx.
func (f *refresher) refresh(ctx context.Context) error {
	f.mu.Lock()
	if f.next == nil {
		f.next = &refreshCall{done: make(chan struct{})}
	}
	call := f.next
	call.waiters++
	if f.cur == nil {
		f.cur, f.next = call, nil
		go f.run(call)
	}
	f.mu.Unlock()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run carries out call, then the calls that queued meanwhile, one at a time.
// Each is bounded by the refresh timeout, not by a caller's context: callers
// that give up do not cancel it for the others.
func (f *refresher) run(call *refreshCall) {
	for call != nil {
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		call.err = f.src.Refresh(ctx)
		cancel()
		close(call.done)
		f.mu.Lock()
		call, f.next = f.next, nil
		f.cur = call
		f.mu.Unlock()
	}
}

// waiting returns the number of callers waiting for a refresh.
func (f *refresher) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range []*refreshCall{f.cur, f.next} {
		if c != nil {
			n += c.waiters
		}
	}
	return n
}

var _ Refresher = (*registry.Watcher)(nil)
