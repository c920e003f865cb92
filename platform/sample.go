package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"tenantry/check"
	"tenantry/load"
	"tenantry/oms"
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
	if err := r.WaitGateway(ctx); err != nil {
		return "", "", err
	}
	cfg := load.Config{BaseURL: r.GatewayURL, Targets: []load.Target{{Tenant: SampleTenant, APIKey: nt.APIKey}}}
	if _, err := load.Setup(ctx, cfg, load.SetupOptions{Products: 3, Locations: 1, Stock: 1000}); err != nil {
		return "", "", fmt.Errorf("stock the sample tenant: %w", err)
	}
	st.SampleAPIKey = nt.APIKey
	return SampleTenant, nt.APIKey, r.Local.Save()
}

// WaitGateway waits until the gateway serves the registry's current version
// (its /healthz reports the version of its snapshot).
func (r *Running) WaitGateway(ctx context.Context) error {
	v, err := r.Store.Version(ctx)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if GatewayVersion(ctx, client, r.GatewayURL) >= v {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the gateway to see registry version %d: %w", v, ctx.Err())
		case <-tick.C:
		}
	}
}

// GatewayVersion is the registry version the gateway at url serves (its
// /healthz), or -1.
func GatewayVersion(ctx context.Context, c *http.Client, url string) int64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
	if err != nil {
		return -1
	}
	resp, err := c.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var h struct {
		Version int64 `json:"registry_version"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil {
		return -1
	}
	return h.Version
}

// SeedHistory gives tenant a fulfilled order history of n orders at the
// first product and location of cat, straight into its database (for the
// demo and the benchmarks: a large tenant without hours of requests).
func (r *Running) SeedHistory(ctx context.Context, tenant string, n int, cat load.TenantCatalog) error {
	snap, err := r.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	_, ep, err := snap.Resolve(tenant)
	if err != nil {
		return err
	}
	pool, err := r.AdminPool(ctx, ep)
	if err != nil {
		return err
	}
	defer pool.Close()
	return oms.SeedHistory(ctx, pool, tenant, n, cat.Products[0], cat.Locations[0], nil)
}

// CheckLedger runs the checker on a ledger against the databases the
// registry places each tenant on now.
func (r *Running) CheckLedger(ctx context.Context, path string) (*check.Report, error) {
	snap, err := r.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dbs := &check.RegistryDatabases{Snapshot: snap, Credentials: r.Vault}
	defer dbs.Close()
	return check.Check(ctx, f, dbs.Get, check.Options{})
}
