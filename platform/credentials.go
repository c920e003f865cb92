package platform

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
)

// AdminPool opens a small pool to ep's database as its cluster's admin
// credential (seeding, benchmarks, the demo's checks).
func (r *Running) AdminPool(ctx context.Context, ep registry.Endpoint) (*pgxpool.Pool, error) {
	cred, err := r.Vault.ClusterCredential(ctx, ep.Cluster)
	if err != nil {
		return nil, err
	}
	return ep.Config(cred).Pool(ctx, 8)
}
