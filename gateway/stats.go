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

// TrafficSink is a StatsSink that also keeps each tenant's requests per
// hour (*registry.Store: what `isolate --window auto` reads). A sink
// without it gets the per-stack figures only.
type TrafficSink interface {
	AddTenantTraffic(ctx context.Context, at time.Time, counts map[string]int64) error
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

// statsSet holds the counters of every stack that served a request, and
// each tenant's request count.
type statsSet struct {
	m       sync.Map // stack name -> *stackCounters
	tenants sync.Map // tenant id -> *atomic.Int64
}

func (s *statsSet) observe(stack, tenant string, code int, d time.Duration) {
	if tenant != "" {
		v, ok := s.tenants.Load(tenant)
		if !ok {
			v, _ = s.tenants.LoadOrStore(tenant, new(atomic.Int64))
		}
		v.(*atomic.Int64).Add(1)
	}
	v, ok := s.m.Load(stack)
	if !ok {
		v, _ = s.m.LoadOrStore(stack, &stackCounters{})
	}
	c := v.(*stackCounters)
	c.requests.Add(1)
	if code >= 500 {
		c.errors.Add(1)
	}
	c.buckets[registry.LatencyBucket(d)].Add(1)
}

// drain returns the figures since the last drain (stacks with requests
// only) and starts a new period.
func (s *statsSet) drain() map[string]registry.StackStats {
	out := map[string]registry.StackStats{}
	s.m.Range(func(k, v any) bool {
		c := v.(*stackCounters)
		n := c.requests.Swap(0)
		if n == 0 {
			return true
		}
		st := registry.StackStats{Requests: n, Errors: c.errors.Swap(0), Buckets: make([]int64, registry.LatencyBuckets)}
		for i := range c.buckets {
			st.Buckets[i] = c.buckets[i].Swap(0)
		}
		out[k.(string)] = st
		return true
	})
	return out
}

// drainTenants returns each tenant's requests since the last drain.
func (s *statsSet) drainTenants() map[string]int64 {
	out := map[string]int64{}
	s.tenants.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Swap(0); n > 0 {
			out[k.(string)] = n
		}
		return true
	})
	return out
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
		if err := ts.AddTenantTraffic(ctx, g.cfg.Now(), g.stats.drainTenants()); err != nil {
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
