package gateway

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tenantry/registry"
	"tenantry/tenantsig"
)

// table is the routing view of one registry snapshot: parsed instance URLs
// per stack and cumulative weights per route. It is built once per snapshot
// and never mutated afterwards; the gateway swaps whole tables.
type table struct {
	snap   *registry.Snapshot
	stacks map[string]*pool
	routes map[string]*weighted // by tenant; registry.DefaultRoute is the default
	limits map[string]*limiter  // by tenant, for every tenant with an API key
}

// pool is the instances of one stack that the registry lists as healthy,
// with the signer of the stack's tenant headers.
type pool struct {
	stack  string
	signer *tenantsig.Signer // of tenantsig.StackKey
	ups    []*upstream
}

// weighted is a route with its cumulative weights; zero-weight backends and
// backends naming unknown stacks are left out.
type weighted struct {
	pools []*pool
	cum   []int // cum[i] = sum of weights of pools[0..i]
}

// upstream is one instance as the gateway sees it. The URL is parsed once per
// snapshot; the counters live in health, which is shared across snapshots so
// that a registry change does not forget what passive health has learned.
type upstream struct {
	url    *url.URL
	raw    string
	stack  string
	health *health
}

// health is the passive health of one instance: consecutive transport
// failures and the time until which it is out of rotation. All fields are
// atomics; the hot path takes no lock.
type health struct {
	inflight  atomic.Int64
	fails     atomic.Int32
	downUntil atomic.Int64 // unix nanoseconds; 0 when healthy
}

// healthKey identifies an instance across snapshots.
type healthKey struct{ stack, url string }

// healthSet keeps the health records of the instances of the current table.
type healthSet struct {
	mu sync.Mutex
	m  map[healthKey]*health
}

// buildTable builds the routing table of snap, reusing health records of
// instances that were already known. Instances whose URL does not parse are
// left out and reported through bad.
func buildTable(snap *registry.Snapshot, root []byte, hs *healthSet, bad func(stack, url string, err error)) *table {
	t := &table{snap: snap, stacks: map[string]*pool{}, routes: map[string]*weighted{}}
	if snap == nil {
		return t
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	seen := make(map[healthKey]*health, len(hs.m))
	for name, st := range snap.Stacks {
		if st.Status == registry.StackStopped || st.Status == registry.StackFailed {
			continue
		}
		p := &pool{stack: name, signer: tenantsig.NewSigner(tenantsig.StackKey(root, name), name)}
		for _, in := range st.Instances {
			if !in.Healthy {
				continue
			}
			u, err := parseInstanceURL(in.URL)
			if err != nil {
				bad(name, in.URL, err)
				continue
			}
			k := healthKey{name, in.URL}
			h := hs.m[k]
			if h == nil {
				h = &health{}
			}
			seen[k] = h
			p.ups = append(p.ups, &upstream{url: u, raw: in.URL, stack: name, health: h})
		}
		t.stacks[name] = p
	}
	hs.m = seen
	for tenant, r := range snap.Routes {
		w := &weighted{}
		total := 0
		for _, b := range r.Backends {
			p, ok := t.stacks[b.Stack]
			if !ok || b.Weight <= 0 {
				continue
			}
			total += b.Weight
			w.pools = append(w.pools, p)
			w.cum = append(w.cum, total)
		}
		t.routes[tenant] = w
	}
	return t
}

func parseInstanceURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errBadInstanceURL
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// route returns the tenant's route, or the default route, or nil.
func (t *table) route(tenant string) *weighted {
	if w, ok := t.routes[tenant]; ok {
		return w
	}
	return t.routes[registry.DefaultRoute]
}

// pick chooses a stack by weight (x in [0, total)) and an available instance
// of it. When the chosen stack has no available instance the other backends
// of the route are tried in order, so a dead canary degrades to the stable
// stack instead of failing requests.
func (w *weighted) pick(x int, now int64) (*pool, *upstream) {
	first := 0
	for first < len(w.cum)-1 && x >= w.cum[first] {
		first++
	}
	for i := range w.pools {
		p := w.pools[(first+i)%len(w.pools)]
		if u := p.pick(now, nil); u != nil {
			return p, u
		}
	}
	return nil, nil
}

func (w *weighted) total() int {
	if len(w.cum) == 0 {
		return 0
	}
	return w.cum[len(w.cum)-1]
}

// pick returns an available instance by power of two choices on in-flight
// counts, skipping except. Nil when no instance is available.
func (p *pool) pick(now int64, except *upstream) *upstream {
	n := len(p.ups)
	if n == 0 {
		return nil
	}
	i := int(rand.Uint64N(uint64(n)))
	a := p.firstAvailable(i, now, except)
	if a < 0 {
		return nil
	}
	b := p.firstAvailable(int(rand.Uint64N(uint64(n))), now, except)
	if b >= 0 && p.ups[b].health.inflight.Load() < p.ups[a].health.inflight.Load() {
		a = b
	}
	return p.ups[a]
}

// firstAvailable returns the index of the first available instance at or
// after start (wrapping), or -1.
func (p *pool) firstAvailable(start int, now int64, except *upstream) int {
	for k := range p.ups {
		j := (start + k) % len(p.ups)
		u := p.ups[j]
		if u != except && u.health.available(now) {
			return j
		}
	}
	return -1
}

func (h *health) available(now int64) bool {
	d := h.downUntil.Load()
	return d == 0 || d <= now
}

// failure records a transport failure and reports whether it took the
// instance out of rotation. After the cooldown the instance gets traffic
// again; one more failure (the count is still at the limit) takes it out
// again at once, one success puts it back for good.
func (h *health) failure(limit int32, now time.Time, cooldown time.Duration) (markedDown bool) {
	n := h.fails.Add(1)
	if n < limit {
		return false
	}
	prev := h.downUntil.Swap(now.Add(cooldown).UnixNano())
	return prev == 0 || prev <= now.UnixNano()
}

// success resets the failure count. The loads keep the common (healthy) case
// free of writes to shared cache lines.
func (h *health) success() {
	if h.fails.Load() != 0 {
		h.fails.Store(0)
	}
	if h.downUntil.Load() != 0 {
		h.downUntil.Store(0)
	}
}
