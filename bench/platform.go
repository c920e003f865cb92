package bench

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"tenantry/load"
	"tenantry/platform"
)

// startPlatform runs a throwaway local platform with its applications for
// benchmark name: a temporary directory (reachable by the PostgreSQL user)
// holding the platform in dir/platform. stop closes the platform and removes
// the directory; on error nothing is left.
func startPlatform(ctx context.Context, name, binary string) (r *platform.Running, dir string, stop func(), err error) {
	dir, err = os.MkdirTemp("", "tenantry-bench-"+name+"-")
	if err != nil {
		return nil, "", nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, "", nil, err
	}
	r, err = platform.Run(ctx, platform.Options{Dir: filepath.Join(dir, "platform"), Binary: binary})
	if err != nil {
		return nil, "", nil, err
	}
	if err := r.StartApps(ctx, platform.AppOptions{}); err != nil {
		r.Close(context.Background())
		return nil, "", nil, err
	}
	return r, dir, func() { r.Close(context.Background()); os.RemoveAll(dir) }, nil
}

// stockedTenant creates tenant on alias, waits until the gateway serves it
// and stocks its catalog (5 products at 2 locations, a million units each);
// it returns the load configuration for the tenant at rate requests/s, its
// choices seeded by seed, and the catalog.
func stockedTenant(ctx context.Context, r *platform.Running, tenant, alias string, rate float64, seed int64) (load.Config, load.Catalog, error) {
	nt, err := r.Service.CreateTenant(ctx, tenant, alias)
	if err != nil {
		return load.Config{}, nil, err
	}
	if err := r.WaitGateway(ctx); err != nil {
		return load.Config{}, nil, err
	}
	lcfg := load.Config{BaseURL: r.GatewayURL, Targets: []load.Target{{Tenant: tenant, APIKey: nt.APIKey}},
		Rate: rate, Concurrency: 8, Seed: seed, Duration: time.Hour}
	cat, err := load.Setup(ctx, lcfg, load.SetupOptions{Products: 5, Locations: 2, Stock: 1_000_000})
	return lcfg, cat, err
}
