package move

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/logrepl"
	"tenantry/registry"
)

// side is an open connection pool to one alias and how to reach it.
type side struct {
	alias   string
	cluster string
	ep      logrepl.Endpoint
	pool    *pgxpool.Pool
}

// endpoint is alias's primary database as its cluster's admin credential.
func (m *Mover) endpoint(ctx context.Context, snap *registry.Snapshot, alias string) (logrepl.Endpoint, string, error) {
	ep, err := snap.AliasEndpoint(alias)
	if err != nil {
		return logrepl.Endpoint{}, "", err
	}
	cred, err := m.cfg.Credentials.ClusterCredential(ctx, ep.Cluster)
	if err != nil {
		return logrepl.Endpoint{}, "", err
	}
	return ep.Config(cred), ep.Cluster, nil
}

// open connects to both aliases; close the returned sides with closeSides.
func (m *Mover) open(ctx context.Context, aliases ...string) (*registry.Snapshot, []*side, error) {
	snap, err := m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []*side
	for _, a := range aliases {
		ep, cluster, err := m.endpoint(ctx, snap, a)
		if err != nil {
			closeSides(out)
			return nil, nil, err
		}
		p, err := pool(ctx, ep)
		if err != nil {
			closeSides(out)
			return nil, nil, err
		}
		out = append(out, &side{alias: a, cluster: cluster, ep: ep, pool: p})
	}
	return snap, out, nil
}

func closeSides(ss []*side) {
	for _, s := range ss {
		s.pool.Close()
	}
}

// pool opens a small admin pool to e for one step of a move.
func pool(ctx context.Context, e logrepl.Endpoint) (*pgxpool.Pool, error) {
	pc, err := e.PoolConfig()
	if err != nil {
		return nil, err
	}
	pc.MaxConns = 8
	pc.ConnConfig.RuntimeParams["application_name"] = "tenantry-move"
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", e.Target(), err)
	}
	return p, nil
}

// warm opens, on each side, as many connections as the pause uses at once.
func warm(ctx context.Context, sides ...*side) error {
	const n = 5
	for _, s := range sides {
		conns := make([]interface{ Release() }, 0, n)
		var err error
		for range n {
			c, aerr := s.pool.Acquire(ctx)
			if aerr != nil {
				err = aerr
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Release()
		}
		if err != nil {
			return fmt.Errorf("connect to %s: %w", s.alias, err)
		}
	}
	return nil
}
