package gateway

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"tenantry/registry"
)

// Default per-tenant limits: generous, so that they stop a runaway client
// from exhausting a shared stack without touching normal traffic.
const (
	DefaultRate        = 10_000 // requests per second
	DefaultConcurrency = 1_000  // requests in flight
)

// limiter holds one tenant's request limits: a token bucket (Rate tokens a
// second, at most Rate in the bucket) and a cap on requests in flight. It
// lives across routing tables, like health: a snapshot changes its limits,
// not what it has counted.
type limiter struct {
	inflight atomic.Int64
	maxConc  atomic.Int64

	mu     sync.Mutex
	rate   float64 // tokens per second
	tokens float64
	last   time.Time
}

// limiterSet keeps the limiters of the tenants of the current table.
type limiterSet struct {
	mu sync.Mutex
	m  map[string]*limiter
}

// set updates the limits: a new tenant starts with a full bucket; a raised
// rate adds the difference to what the bucket holds, a lowered one caps it.
func (l *limiter) set(rate, concurrency int) {
	l.maxConc.Store(int64(concurrency))
	l.mu.Lock()
	defer l.mu.Unlock()
	r := float64(rate)
	if r > l.rate {
		l.tokens += r - l.rate
	}
	l.rate = r
	l.tokens = min(l.tokens, l.rate)
}

// limitError says why a request was refused and when to try again.
type limitError struct {
	code       string
	msg        string
	retryAfter time.Duration
}

// acquire admits one request at now, or says why not. An admitted request
// must call release when it ends.
func (l *limiter) acquire(now time.Time) *limitError {
	if n := l.inflight.Add(1); n > l.maxConc.Load() {
		l.inflight.Add(-1)
		return &limitError{code: "concurrency_limited", msg: "too many requests of this tenant in flight", retryAfter: time.Second}
	}
	l.mu.Lock()
	if !l.last.IsZero() {
		l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		l.mu.Unlock()
		return nil
	}
	wait := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
	l.mu.Unlock()
	l.inflight.Add(-1)
	return &limitError{code: "rate_limited", msg: "request rate of this tenant over its limit", retryAfter: wait}
}

func (l *limiter) release() { l.inflight.Add(-1) }

// retryAfterSeconds is the Retry-After value for d: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// build returns the limiters of every tenant with an API key in snap,
// reusing those already known and applying snap's limits (defaults where a
// field is zero).
func (ls *limiterSet) build(snap *registry.Snapshot, def registry.Limits) map[string]*limiter {
	out := map[string]*limiter{}
	if snap == nil {
		return out
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, k := range snap.KeysByHash {
		if out[k.Tenant] != nil {
			continue
		}
		l := ls.m[k.Tenant]
		if l == nil {
			l = &limiter{}
		}
		own := snap.Limits[k.Tenant]
		rate, conc := own.Rate, own.Concurrency
		if rate == 0 {
			rate = def.Rate
		}
		if conc == 0 {
			conc = def.Concurrency
		}
		l.set(rate, conc)
		out[k.Tenant] = l
	}
	ls.m = out
	return out
}
