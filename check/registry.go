package check

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
)

// RegistryDatabases resolves tenants to their databases: a DSN given for
// the tenant in Fixed, else the database the registry snapshot places it on
// now, reached as its cluster's admin credential (the checker reads every
// tenant's rows) with the cluster's TLS settings. Get is a Databases
// function; Close releases the pools it opened, one per database.
type RegistryDatabases struct {
	Snapshot *registry.Snapshot // may be nil when every tenant is in Fixed
	Fixed    map[string]string
	// Credentials gives clusters' admin credentials; required unless every
	// tenant is in Fixed.
	Credentials registry.ClusterCredentials
	Logger      *slog.Logger

	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

// Get is a Databases function.
func (d *RegistryDatabases) Get(ctx context.Context, tenant string) (Querier, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg, key, err := d.poolConfig(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if p, ok := d.pools[key]; ok {
		return p, nil
	}
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the database of tenant %s (%s): %w", tenant, key, err)
	}
	if d.pools == nil {
		d.pools = map[string]*pgxpool.Pool{}
	}
	d.pools[key] = p
	return p, nil
}

// poolConfig returns the pool config of tenant's database and a key that
// names that database.
func (d *RegistryDatabases) poolConfig(ctx context.Context, tenant string) (*pgxpool.Config, string, error) {
	if dsn, ok := d.Fixed[tenant]; ok {
		cfg, err := pgxpool.ParseConfig(dsn)
		return cfg, "dsn " + dsn, err
	}
	if d.Snapshot == nil {
		return nil, "", fmt.Errorf("tenant %s: no DSN given and no registry to resolve it", tenant)
	}
	_, ep, err := d.Snapshot.Resolve(tenant)
	if err != nil {
		return nil, "", err
	}
	if d.Logger != nil {
		d.Logger.Debug("tenant resolved", "tenant", tenant, "alias", ep.Alias, "host", ep.Host, "port", ep.Port, "database", ep.Database)
	}
	if d.Credentials == nil {
		return nil, "", fmt.Errorf("tenant %s: no credentials for cluster %s", tenant, ep.Cluster)
	}
	cred, err := d.Credentials.ClusterCredential(ctx, ep.Cluster)
	if err != nil {
		return nil, "", err
	}
	cfg, err := ep.Config(cred).PoolConfig()
	if err != nil {
		return nil, "", err
	}
	cfg.MaxConns = 4
	return cfg, fmt.Sprintf("%s:%d/%s", ep.Host, ep.Port, ep.Database), nil
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
