package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// TenantTrafficRetention is how long a tenant's hourly request counts are
// kept: enough days for a quietest hour to mean something.
const TenantTrafficRetention = 14 * 24 * time.Hour

// HourTraffic is a tenant's requests in the hour starting at Hour (UTC).
type HourTraffic struct {
	Hour     time.Time `json:"hour"`
	Requests int64     `json:"requests"`
}

// AddTenantTraffic adds counts (tenant -> requests) to the hour holding
// at, and prunes hours older than TenantTrafficRetention. Gateways call it
// with what they served since their last call; several gateways add up.
func (s *Store) AddTenantTraffic(ctx context.Context, at time.Time, counts map[string]int64) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for tenant, n := range counts {
			if err := ValidateTenantID(tenant); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tenant_traffic (tenant, hour, requests)
				VALUES ($1, date_trunc('hour', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', $3)
				ON CONFLICT (tenant, hour) DO UPDATE SET requests = tenant_traffic.requests + excluded.requests`,
				tenant, at, n); err != nil {
				return dbErr("record tenant traffic", err)
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM tenant_traffic WHERE hour < now() - $1::interval", TenantTrafficRetention)
		return dbErr("prune tenant traffic", err)
	})
}

// TenantTraffic returns the tenant's hourly request counts since since,
// oldest first (hours without requests have no row).
func (s *Store) TenantTraffic(ctx context.Context, tenant string, since time.Time) ([]HourTraffic, error) {
	rows, _ := s.pool.Query(ctx, `SELECT hour, requests FROM tenant_traffic WHERE tenant = $1 AND hour >= $2 ORDER BY hour`, tenant, since)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HourTraffic, error) {
		var h HourTraffic
		err := r.Scan(&h.Hour, &h.Requests)
		h.Hour = h.Hour.UTC()
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tenant traffic: %w", err)
	}
	return out, nil
}

// TenantsTraffic returns the requests of each of tenants since since,
// summed over the hours that start at or after it (a tenant without
// requests is not in the map). Views that list a page of tenants call it
// once for the page.
func (s *Store) TenantsTraffic(ctx context.Context, tenants []string, since time.Time) (map[string]int64, error) {
	rows, _ := s.pool.Query(ctx, `SELECT tenant, sum(requests)::bigint FROM tenant_traffic
		WHERE tenant = ANY($1) AND hour >= $2 GROUP BY tenant`, tenants, since)
	out := map[string]int64{}
	var (
		tenant string
		n      int64
	)
	_, err := pgx.ForEachRow(rows, []any{&tenant, &n}, func() error {
		out[tenant] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read tenants' traffic: %w", err)
	}
	return out, nil
}
