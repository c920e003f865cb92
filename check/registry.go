package check

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
)

// RegistryDatabases resolves tenants to the databases a registry snapshot
// places them on, connecting as user (a superuser: the checker reads every
// tenant's rows) with password (empty for trust). Close releases the pools.
type RegistryDatabases struct {
	Snapshot       *registry.Snapshot
	User, Password string

	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

// Get is a Databases function.
func (d *RegistryDatabases) Get(ctx context.Context, tenant string) (Querier, error) {
	_, ep, err := d.Snapshot.Resolve(tenant)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s:%d/%s", ep.Host, ep.Port, ep.Database)
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.pools[key]; ok {
		return p, nil
	}
	cfg, err := pgxpool.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cc := cfg.ConnConfig
	cc.Host, cc.Port, cc.Database, cc.User, cc.Password = ep.Host, uint16(ep.Port), ep.Database, d.User, d.Password
	cfg.MaxConns = 4
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", key, err)
	}
	if d.pools == nil {
		d.pools = map[string]*pgxpool.Pool{}
	}
	d.pools[key] = p
	return p, nil
}

// Close closes the pools opened by Get.
func (d *RegistryDatabases) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.pools {
		p.Close()
	}
	d.pools = nil
}
