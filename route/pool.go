package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/dbconn"
	"tenantry/registry"
)

// tenantPool is one tenant's pool to one endpoint. refs and retired are
// guarded by the owning tenantState's mu.
type tenantPool struct {
	tenant  string
	ep      registry.Endpoint
	pool    *pgxpool.Pool
	cluster *clusterConns
	refs    int
	retired bool
	// lastUsed is when a transaction last ended on the pool (unix ns).
	lastUsed atomic.Int64
}

// newPool creates the tenant's pool to ep. No connection is opened yet.
func (r *Router) newPool(tenant string, ep registry.Endpoint) (*tenantPool, error) {
	user, password := r.cfg.Credentials(tenant)
	dc := ep.Config(dbconn.Credential{User: user, Password: password})
	dc.ConnectTimeout = 30 * time.Second
	cfg, err := dc.PoolConfig()
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	cl := r.cluster(ep)
	p := &tenantPool{tenant: tenant, ep: ep, cluster: cl}
	cfg.MaxConns = int32(r.cfg.TenantMaxConns)
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = r.cfg.IdleTimeout
	cfg.HealthCheckPeriod = min(max(r.cfg.IdleTimeout/2, 100*time.Millisecond), time.Minute)
	cfg.ConnConfig.RuntimeParams["application_name"] = r.cfg.ID
	// A tenant's statement or forgotten transaction must not hold a shared
	// server's connections and locks for ever.
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(r.cfg.StatementTimeout.Milliseconds(), 10)
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(r.cfg.IdleInTransactionTimeout.Milliseconds(), 10)
	cfg.ConnConfig.DialFunc = cl.dialFunc(r, p)
	cfg.AfterConnect = checkPrimary
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: open pool: %w", tenant, err)
	}
	p.pool = pool
	return p, nil
}

// checkPrimary refuses connections to a server in recovery: the registry may
// still name a demoted or standby member primary.
func checkPrimary(ctx context.Context, c *pgx.Conn) error {
	var inRecovery bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("check primary: %w", err)
	}
	if inRecovery {
		cc := c.Config()
		return fmt.Errorf("%s:%d: %w", cc.Host, cc.Port, ErrNotPrimary)
	}
	return nil
}

// closePool closes p after its acquired connections are released. nil is a no-op.
func (r *Router) closePool(p *tenantPool) {
	if p == nil {
		return
	}
	p.pool.Close()
}

// closePoolLater is closePool in the background: closing a connection waits
// for the server to end its session (see slotConn), which a snapshot swap
// must not wait for.
func (r *Router) closePoolLater(p *tenantPool) {
	if p != nil {
		go r.closePool(p)
	}
}

// classify turns errors that mean "the control plane fenced this tenant on
// the database" or "the server is not a primary" into retryable errors:
// login refused (28000), sessions terminated (57P01, 57P02, 57P03), and
// failures pgconn knows happened before anything was sent.
func (r *Router) classify(tenant string, err error) error {
	if r.stopped.Load() {
		return &TenantError{Tenant: tenant, Err: ErrRouterStopped, Cause: err}
	}
	if retryable(err) {
		return &TenantError{Tenant: tenant, Err: ErrTenantPaused, Cause: err}
	}
	return err
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28000", "57P01", "57P02", "57P03":
			return true
		}
		return false
	}
	if errors.Is(err, ErrNotPrimary) {
		return true
	}
	// A server that cannot be reached (a primary killed, until the control
	// plane fails it over) was sent nothing: retryable, so clients retry
	// across a failover. Refusals by the server (a bad password) carry a
	// PgError and were answered above.
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	// A bare loss of the connection is not classified: during COMMIT its
	// outcome is unknown. Terminated sessions carry 57P01 above.
	return pgconn.SafeToRetry(err)
}

func endpointKey(ep registry.Endpoint) string {
	return net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
}
