package platform

import (
	"context"
	"fmt"

	"tenantry/load"
)

// SampleTenant is the tenant `tenantry up` creates with stock, so that the
// printed curl example works at once.
const SampleTenant = "demo"

// EnsureSampleTenant creates the sample tenant on the pooled alias with a
// few products and stock (through the gateway, as a client would), once;
// its API key is kept in the state file of this local platform.
func (r *Running) EnsureSampleTenant(ctx context.Context) (tenant, apiKey string, err error) {
	st := r.Local.State
	if st.SampleAPIKey != "" {
		return SampleTenant, st.SampleAPIKey, nil
	}
	nt, err := r.Service.CreateTenant(ctx, SampleTenant, PooledAlias)
	if err != nil {
		return "", "", err
	}
	// The gateway authenticates from its snapshot: wait until it has the key.
	v, err := r.Store.Version(ctx)
	if err != nil {
		return "", "", err
	}
	if _, err := r.Watcher.WaitVersion(ctx, v); err != nil {
		return "", "", err
	}
	cfg := load.Config{BaseURL: r.GatewayURL, Targets: []load.Target{{Tenant: SampleTenant, APIKey: nt.APIKey}}}
	if _, err := load.Setup(ctx, cfg, load.SetupOptions{Products: 3, Locations: 1, Stock: 1000}); err != nil {
		return "", "", fmt.Errorf("stock the sample tenant: %w", err)
	}
	st.SampleAPIKey = nt.APIKey
	return SampleTenant, nt.APIKey, r.Local.Save()
}
