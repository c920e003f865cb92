package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"tenantry/registry"
)

// StatsSink receives the gateway's per-stack request outcomes, one period
// at a time; *registry.Store is one (the stack_stats table the rollout
// analysis reads). WriteStackStats must write only rows of the given
// gateway id; it is called from one goroutine at a time.
type StatsSink interface {
	WriteStackStats(ctx context.Context, gateway string, stats map[string]registry.StackStats) error
}

var _ StatsSink = (*registry.Store)(nil)

// TrafficSink is a StatsSink that also keeps each tenant's outcomes per
// stack and hour (*registry.Store: what `isolate --window auto` and an
// isolation's latency baseline read). A sink without it gets the per-stack
// figures only.
type TrafficSink interface {
	AddTenantStats(ctx context.Context, at time.Time, stats map[registry.TenantStack]registry.StackStats) error
}

var _ TrafficSink = (*registry.Store)(nil)

// stackCounters are the figures of one stack since the last publish. A
// publish that races a request may count it in the next period; nothing is
// lost or counted twice.
type stackCounters struct {
	requests atomic.Int64
	errors   atomic.Int64
	buckets  [registry.LatencyBuckets]atomic.Int64
}

func (c *stackCounters) observe(code int, d time.Duration) {
	c.requests.Add(1)
	if code >= 500 {
		c.errors.Add(1)
	}
	c.buckets[registry.LatencyBucket(d)].Add(1)
}

// drain returns the figures since the last drain; ok is false without
// requests.
func (c *stackCounters) drain() (st registry.StackStats, ok bool) {
	n := c.requests.Swap(0)
	if n == 0 {
		return st, false
	}
	st = registry.StackStats{Requests: n, Errors: c.errors.Swap(0), Buckets: make([]int64, registry.LatencyBuckets)}
	for i := range c.buckets {
		st.Buckets[i] = c.buckets[i].Swap(0)
	}
	return st, true
}

// statsSet holds the counters of every stack that served a request, and
// of every tenant on every stack.
type statsSet struct {
	m       sync.Map // stack name -> *stackCounters
	tenants sync.Map // registry.TenantStack -> *stackCounters
}

func counters(m *sync.Map, key any) *stackCounters {
	v, ok := m.Load(key)
	if !ok {
		v, _ = m.LoadOrStore(key, &stackCounters{})
	}
	return v.(*stackCounters)
}

func (s *statsSet) observe(stack, tenant string, code int, d time.Duration) {
	if tenant != "" {
		counters(&s.tenants, registry.TenantStack{Tenant: tenant, Stack: stack}).observe(code, d)
	}
	counters(&s.m, stack).observe(code, d)
}

// drainMap returns the figures of every counter of m with requests since
// the last drain, and starts a new period.
func drainMap[K comparable](m *sync.Map) map[K]registry.StackStats {
	out := map[K]registry.StackStats{}
	m.Range(func(k, v any) bool {
		if st, ok := v.(*stackCounters).drain(); ok {
			out[k.(K)] = st
		}
		return true
	})
	return out
}

// drain returns the per-stack figures since the last drain (stacks with
// requests only).
func (s *statsSet) drain() map[string]registry.StackStats { return drainMap[string](&s.m) }

// drainTenants returns each tenant's figures per stack since the last
// drain.
func (s *statsSet) drainTenants() map[registry.TenantStack]registry.StackStats {
	return drainMap[registry.TenantStack](&s.tenants)
}

// PublishStats writes the per-stack figures since the last publish to
// Config.Stats (nothing when no stack served a request); the loop Start
// runs calls it every Config.StatsInterval. A failed write loses that
// period's figures: the analysis then sees fewer requests, never wrong
// ones.
func (g *Gateway) PublishStats(ctx context.Context) error {
	if g.cfg.Stats == nil {
		return nil
	}
	stats := g.stats.drain()
	if len(stats) == 0 {
		return nil
	}
	if err := g.cfg.Stats.WriteStackStats(ctx, g.cfg.ID, stats); err != nil {
		return fmt.Errorf("publish stack stats: %w", err)
	}
	if ts, ok := g.cfg.Stats.(TrafficSink); ok {
		if err := ts.AddTenantStats(ctx, g.cfg.Now(), g.stats.drainTenants()); err != nil {
			return fmt.Errorf("publish tenant traffic: %w", err)
		}
	}
	return nil
}

func (g *Gateway) publishLoop(quit, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(g.cfg.StatsInterval)
	defer t.Stop()
	var failing bool
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*g.cfg.StatsInterval)
		err := g.PublishStats(ctx)
		cancel()
		// Logged once per outage, not every period.
		if err != nil && !failing {
			g.log.Warn("stack stats not published", logErr, err)
		}
		failing = err != nil
	}
}
