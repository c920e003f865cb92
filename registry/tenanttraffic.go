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

// TenantStack names one tenant's traffic on one stack.
type TenantStack struct {
	Tenant, Stack string
}

// AddTenantTraffic adds counts (tenant -> requests, on no stack named) to
// the hour holding at; AddTenantStats with requests only.
func (s *Store) AddTenantTraffic(ctx context.Context, at time.Time, counts map[string]int64) error {
	stats := make(map[TenantStack]StackStats, len(counts))
	for tenant, n := range counts {
		stats[TenantStack{Tenant: tenant}] = StackStats{Requests: n}
	}
	return s.AddTenantStats(ctx, at, stats)
}

// AddTenantStats adds each tenant's outcomes on each stack (requests, 5xx,
// latency histogram) to the hour holding at, and prunes hours older than
// TenantTrafficRetention. Gateways call it with what they served since
// their last call; several gateways add up.
func (s *Store) AddTenantStats(ctx context.Context, at time.Time, stats map[TenantStack]StackStats) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for k, st := range stats {
			if err := ValidateTenantID(k.Tenant); err != nil {
				return err
			}
			// Histograms add bucket by bucket; an empty one adds nothing.
			if _, err := tx.Exec(ctx, `INSERT INTO tenant_traffic (tenant, hour, stack, requests, errors, buckets)
				VALUES ($1, date_trunc('hour', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', $3, $4, $5, COALESCE($6::bigint[], '{}'))
				ON CONFLICT (tenant, hour, stack) DO UPDATE SET requests = tenant_traffic.requests + excluded.requests,
					errors = tenant_traffic.errors + excluded.errors,
					buckets = ARRAY(SELECT COALESCE(a, 0) + COALESCE(b, 0)
						FROM unnest(tenant_traffic.buckets, excluded.buckets) WITH ORDINALITY AS u(a, b, i) ORDER BY i)`,
				k.Tenant, at, k.Stack, st.Requests, st.Errors, st.Buckets); err != nil {
				return dbErr("record tenant traffic", err)
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM tenant_traffic WHERE hour < now() - $1::interval", TenantTrafficRetention)
		return dbErr("prune tenant traffic", err)
	})
}

// TenantStats sums tenant's outcomes on stack over the hours that start at
// or after since (the hour in progress included): the tenant's own figures
// on that stack, whatever other tenants it serves.
func (s *Store) TenantStats(ctx context.Context, tenant, stack string, since time.Time) (StackStats, error) {
	rows, _ := s.pool.Query(ctx, `SELECT requests, errors, buckets FROM tenant_traffic
		WHERE tenant = $1 AND stack = $2 AND hour >= date_trunc('hour', $3::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'`,
		tenant, stack, since)
	var out, st StackStats
	_, err := pgx.ForEachRow(rows, []any{&st.Requests, &st.Errors, &st.Buckets}, func() error {
		if len(st.Buckets) == 0 {
			st.Buckets = nil
		}
		out = out.Add(st)
		return nil
	})
	if err != nil {
		return StackStats{}, fmt.Errorf("read tenant stats: %w", err)
	}
	return out, nil
}

// TenantTraffic returns the tenant's hourly request counts since since,
// oldest first (hours without requests have no row).
func (s *Store) TenantTraffic(ctx context.Context, tenant string, since time.Time) ([]HourTraffic, error) {
	rows, _ := s.pool.Query(ctx, `SELECT hour, sum(requests)::bigint FROM tenant_traffic WHERE tenant = $1 AND hour >= $2
		GROUP BY hour ORDER BY hour`, tenant, since)
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
