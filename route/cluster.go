package route

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/registry"
)

// clusterConns bounds the connections this router holds to one server
// (host:port) across all tenant pools. A slot is taken before dialing and
// given back when the connection's socket is closed and the server has hung
// up, so the server never sees more than cap sessions from this router.
type clusterConns struct {
	key string
	cap int
	sem chan struct{} // one token per open connection

	waiting atomic.Int32  // dialers waiting for a slot
	closing atomic.Int32  // reclaimed connections being closed
	idle    chan struct{} // a connection went idle somewhere (cap 1)

	mu        sync.Mutex
	connected map[*tenantPool]int // pools holding connections: how many
}

// cluster returns the connection budget of ep's server.
func (r *Router) cluster(ep registry.Endpoint) *clusterConns {
	key := endpointKey(ep)
	r.clMu.Lock()
	defer r.clMu.Unlock()
	c, ok := r.clusters[key]
	if !ok {
		c = &clusterConns{
			key:       key,
			cap:       r.cfg.ClusterConnCap,
			sem:       make(chan struct{}, r.cfg.ClusterConnCap),
			idle:      make(chan struct{}, 1),
			connected: map[*tenantPool]int{},
		}
		r.clusters[key] = c
	}
	return c
}

// open is the number of connections holding a slot.
func (c *clusterConns) open() int { return len(c.sem) }

func (c *clusterConns) signalIdle() {
	select {
	case c.idle <- struct{}{}:
	default:
	}
}

// idleRecheck bounds how long a waiting dialer trusts that no connection
// went idle without a signal (a release signals before pgxpool has put the
// connection back on its idle list).
const idleRecheck = 10 * time.Millisecond

// acquire takes a slot for a new connection of pool p, reclaiming idle
// connections of other tenants' pools while the cap is reached.
func (c *clusterConns) acquire(ctx context.Context, p *tenantPool) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	default:
	}
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	t := time.NewTimer(idleRecheck)
	defer t.Stop()
	for {
		c.reclaim(p)
		select {
		case c.sem <- struct{}{}:
			return nil
		case <-c.idle:
		case <-t.C:
			t.Reset(idleRecheck)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reclaim starts closing one idle connection of another tenant's pool, if
// any, to free its slot; the slot comes back once the server has ended the
// session, which can take a while on a busy server, so closes run in the
// background, at most one per waiting dialer. Victims are tried least recently used first, so hot
// tenants keep their connections.
func (c *clusterConns) reclaim(except *tenantPool) {
	if c.closing.Load() >= c.waiting.Load() {
		return
	}
	c.mu.Lock()
	victims := make([]*tenantPool, 0, len(c.connected))
	for p := range c.connected {
		if p != except {
			victims = append(victims, p)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(victims, func(a, b *tenantPool) int { return cmp.Compare(a.lastUsed.Load(), b.lastUsed.Load()) })
	for _, p := range victims {
		conns := p.pool.AcquireAllIdle(context.Background())
		if len(conns) == 0 {
			continue
		}
		victim := conns[0].Hijack()
		for _, other := range conns[1:] {
			other.Release()
		}
		c.closing.Add(1)
		go func() {
			defer c.closing.Add(-1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = victim.Close(ctx)
		}()
		return
	}
}

func (c *clusterConns) release() { <-c.sem }

// opened and closed track which pools hold connections, for reclaim.
func (c *clusterConns) opened(p *tenantPool) {
	c.mu.Lock()
	c.connected[p]++
	c.mu.Unlock()
}

func (c *clusterConns) closed(p *tenantPool) {
	c.mu.Lock()
	if c.connected[p]--; c.connected[p] <= 0 {
		delete(c.connected, p)
	}
	c.mu.Unlock()
	c.release()
}

// dialFunc dials for pool p within the cluster's budget.
func (c *clusterConns) dialFunc(r *Router, p *tenantPool) pgconn.DialFunc {
	d := &net.Dialer{KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := c.acquire(ctx, p); err != nil {
			r.m.errors.WithLabelValues("connection_slot").Inc()
			return nil, fmt.Errorf("wait for a connection slot to %s (cap %d): %w", c.key, c.cap, err)
		}
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			c.release()
			return nil, err
		}
		c.opened(p)
		return &slotConn{Conn: nc, release: func() { c.closed(p) }}, nil
	}
}

// slotConn gives its cluster slot back when closed, after the server has
// closed its end (its backend has exited), so pg_stat_activity never counts
// more sessions than the cap.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (s *slotConn) Close() error {
	var err error
	s.once.Do(func() {
		if tc, ok := s.Conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			_ = tc.SetReadDeadline(time.Now().Add(2 * time.Second))
			var buf [512]byte
			for {
				if _, rerr := tc.Read(buf[:]); rerr != nil {
					break
				}
			}
		}
		err = s.Conn.Close()
		s.release()
	})
	return err
}
