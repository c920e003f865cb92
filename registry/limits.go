package registry

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MaxLimit bounds each field of Limits.
const MaxLimit = 1_000_000

// Limits are a tenant's request limits at the gateway. A zero field means
// the gateway's default for it.
type Limits struct {
	// Rate is the sustained requests per second (bursts of up to one
	// second's worth).
	Rate int `json:"rate"`
	// Concurrency is how many of the tenant's requests may be in flight at
	// once.
	Concurrency int `json:"concurrency"`
}

// Validate checks that each field is between 0 and MaxLimit.
func (l Limits) Validate() error {
	if l.Rate < 0 || l.Rate > MaxLimit || l.Concurrency < 0 || l.Concurrency > MaxLimit {
		return fmt.Errorf("%w: limits must be between 0 (the default) and %d, not rate %d, concurrency %d",
			ErrInvalid, MaxLimit, l.Rate, l.Concurrency)
	}
	return nil
}

// SetTenantLimits sets a tenant's request limits (all zero: back to the
// defaults) and records EventTenantLimits. ErrInvalid for a malformed id or
// limits out of range, ErrNotFound if the tenant does not exist.
func (s *Store) SetTenantLimits(ctx context.Context, tenant string, l Limits) error {
	if err := ValidateTenantID(tenant); err != nil {
		return err
	}
	if err := l.Validate(); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant).Scan(&exists); err != nil {
			return dbErr("find tenant "+tenant, err)
		}
		if !exists {
			return fmt.Errorf("tenant %s: %w", tenant, ErrNotFound)
		}
		var err error
		if l == (Limits{}) {
			_, err = tx.Exec(ctx, "DELETE FROM tenant_limits WHERE tenant = $1", tenant)
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO tenant_limits (tenant, rate, concurrency) VALUES ($1, $2, $3)
ON CONFLICT (tenant) DO UPDATE SET rate = EXCLUDED.rate, concurrency = EXCLUDED.concurrency`, tenant, l.Rate, l.Concurrency)
		}
		if err != nil {
			return dbErr("set limits of tenant "+tenant, err)
		}
		return addEvent(ctx, tx, EventTenantLimits, tenant,
			fmt.Sprintf("limits set: rate %d/s, concurrency %d (0: default)", l.Rate, l.Concurrency), l)
	})
}
