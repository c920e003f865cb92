package registry

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// AcksChannel is the LISTEN/NOTIFY channel on which router acknowledgements
// are announced (payload "<tenant>:<epoch>"), so that WaitAcks wakes at once.
const AcksChannel = "tenantry_acks"

// ackPoll bounds how long WaitAcks sleeps between checks when no
// notification arrives (a router may also die, which sends no NOTIFY).
const ackPoll = 250 * time.Millisecond

// AckTimeoutError is returned by WaitAcks when its context ends before every
// live router acknowledged the epoch. It unwraps to the context's error.
type AckTimeoutError struct {
	Tenant  string
	Epoch   int64
	Missing []string // live routers that had not acknowledged
	Err     error
}

func (e *AckTimeoutError) Error() string {
	return fmt.Sprintf("wait for acks of tenant %s epoch %d: routers %s have not acknowledged: %v",
		e.Tenant, e.Epoch, strings.Join(e.Missing, ", "), e.Err)
}

func (e *AckTimeoutError) Unwrap() error { return e.Err }

// RegisterRouter records a router instance (or refreshes its heartbeat).
// Router rows are not routing configuration: no version bump.
func (s *Store) RegisterRouter(ctx context.Context, id string) error {
	if err := ValidateName("router", id); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO routers (id, heartbeat) VALUES ($1, now())
		ON CONFLICT (id) DO UPDATE SET heartbeat = now()`, id)
	return dbErr("register router "+id, err)
}

// Heartbeat stamps a registered router as alive, routing by the registry
// version it names (which only grows). ErrNotFound if it was deregistered.
func (s *Store) Heartbeat(ctx context.Context, id string, version int64) error {
	if err := ValidateName("router", id); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, "UPDATE routers SET heartbeat = now(), version = greatest(version, $2) WHERE id = $1", id, version)
	return mustAffect(tag, err, "heartbeat router "+id)
}

// routersPoll is how often WaitRouters re-reads the routers' versions.
const routersPoll = 20 * time.Millisecond

// WaitRouters waits until every router with a heartbeat within the window
// reports routing by registry version (or later). When ctx ends first it
// returns the routers still behind with ctx's error.
func (s *Store) WaitRouters(ctx context.Context, version int64, within time.Duration) ([]string, error) {
	if within <= 0 {
		return nil, fmt.Errorf("%w: live window %v", ErrInvalid, within)
	}
	var behind []string
	for {
		rows, err := s.pool.Query(ctx, `SELECT id FROM routers
			WHERE heartbeat > now() - $2::bigint * interval '1 microsecond' AND version < $1 ORDER BY id`,
			version, within.Microseconds())
		var now []string
		if err == nil {
			now, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err == nil {
			behind = now
		}
		if ctx.Err() != nil {
			// behind is the last complete answer: a read cut short by ctx
			// says nothing.
			return behind, fmt.Errorf("wait for routers at registry version %d: %w", version, ctx.Err())
		}
		if err != nil {
			return nil, fmt.Errorf("wait for routers at registry version %d: %w", version, err)
		}
		if len(behind) == 0 {
			return nil, nil
		}
		select {
		case <-time.After(routersPoll):
		case <-ctx.Done():
		}
	}
}

// DeregisterRouter removes a router and its acknowledgements.
func (s *Store) DeregisterRouter(ctx context.Context, id string) error {
	if err := ValidateName("router", id); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM routers WHERE id = $1", id)
	return mustAffect(tag, err, "deregister router "+id)
}

// AckEpoch records that router id has applied tenant's placement epoch (and
// that no read-write transaction of an older epoch runs there any more: see
// route.Registry); the stored value only grows. It notifies AcksChannel.
//
// It is one statement (one round trip, its own transaction) that commits
// without waiting for the WAL flush: an ack is on a pause's critical path,
// and on a busy disk the flush is most of its cost. An ack lost to a crash
// of the control database costs nothing: the mover waiting for it fails
// with its connection and rolls the flip back.
func (s *Store) AckEpoch(ctx context.Context, id, tenant string, epoch int64) error {
	if err := ValidateName("router", id); err != nil {
		return err
	}
	if err := ValidateTenantID(tenant); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `WITH ack AS (
			INSERT INTO router_acks (router, tenant, epoch) VALUES ($1, $2, $3)
			ON CONFLICT (router, tenant) DO UPDATE SET epoch = greatest(router_acks.epoch, excluded.epoch)
			RETURNING 1)
		SELECT set_config('synchronous_commit', 'off', true), pg_notify($4, $5) FROM ack`,
		id, tenant, epoch, AcksChannel, tenant+":"+strconv.FormatInt(epoch, 10))
	return dbErr(fmt.Sprintf("ack epoch %d of tenant %s by router %s", epoch, tenant, id), err)
}

// Routers lists every registered router with its acknowledgements.
func (s *Store) Routers(ctx context.Context) ([]RouterInstance, error) {
	return s.routers(ctx, 0)
}

// LiveRouters lists routers whose heartbeat is within the given duration of
// the control database's clock.
func (s *Store) LiveRouters(ctx context.Context, within time.Duration) ([]RouterInstance, error) {
	if within <= 0 {
		return nil, fmt.Errorf("%w: live window %v", ErrInvalid, within)
	}
	return s.routers(ctx, within)
}

// ExpireRouters removes the routers not heard from within after — processes
// that died without deregistering — with their acknowledgements, and
// returns their ids. Ages are by the control database's clock.
func (s *Store) ExpireRouters(ctx context.Context, after time.Duration) ([]string, error) {
	if after <= 0 {
		return nil, fmt.Errorf("%w: router expiry %v", ErrInvalid, after)
	}
	rows, err := s.pool.Query(ctx, `DELETE FROM routers
		WHERE heartbeat <= now() - $1::bigint * interval '1 microsecond' RETURNING id`, after.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("expire routers: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("expire routers: %w", err)
	}
	return ids, nil
}

// routers lists routers, only those heard from within the window if > 0.
func (s *Store) routers(ctx context.Context, within time.Duration) ([]RouterInstance, error) {
	rows, err := s.pool.Query(ctx, `SELECT r.id, r.heartbeat, extract(epoch FROM now() - r.heartbeat)::float8, r.version,
			coalesce(jsonb_object_agg(a.tenant, a.epoch) FILTER (WHERE a.tenant IS NOT NULL), '{}')
		FROM routers r LEFT JOIN router_acks a ON a.router = r.id
		WHERE $1::bigint = 0 OR r.heartbeat > now() - $1::bigint * interval '1 microsecond'
		GROUP BY r.id, r.heartbeat, r.version ORDER BY r.id`, within.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("list routers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RouterInstance, error) {
		var ri RouterInstance
		err := r.Scan(&ri.ID, &ri.Heartbeat, &ri.LastSeenSeconds, &ri.Version, &ri.Acks)
		return ri, err
	})
	if err != nil {
		return nil, fmt.Errorf("list routers: %w", err)
	}
	return out, nil
}

// WaitAcks waits until every router with a heartbeat within the window has
// acknowledged epoch (or later) for tenant. It wakes on AcksChannel
// notifications and re-checks at least every 250 ms. When ctx ends first it
// returns an *AckTimeoutError naming the routers that had not acknowledged.
func (s *Store) WaitAcks(ctx context.Context, tenant string, epoch int64, within time.Duration) error {
	if err := ValidateTenantID(tenant); err != nil {
		return err
	}
	if within <= 0 {
		return fmt.Errorf("%w: live window %v", ErrInvalid, within)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("wait for acks: %w", err)
	}
	// The connection LISTENs; it must not go back to the pool doing so.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{AcksChannel}.Sanitize()); err != nil {
		return fmt.Errorf("wait for acks: listen: %w", err)
	}
	var missing []string
	for {
		m, err := missingAcks(ctx, pc, tenant, epoch, within)
		if err != nil {
			if ctx.Err() != nil {
				return &AckTimeoutError{Tenant: tenant, Epoch: epoch, Missing: missing, Err: ctx.Err()}
			}
			return fmt.Errorf("wait for acks: %w", err)
		}
		missing = m
		if len(missing) == 0 {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, ackPoll)
		_, err = pc.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return &AckTimeoutError{Tenant: tenant, Epoch: epoch, Missing: missing, Err: ctx.Err()}
		}
		if err != nil && wctx.Err() == nil {
			return fmt.Errorf("wait for acks: %w", err)
		}
	}
}

// missingAcks lists live routers that have not acknowledged epoch for tenant.
func missingAcks(ctx context.Context, conn *pgx.Conn, tenant string, epoch int64, within time.Duration) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT r.id FROM routers r
		LEFT JOIN router_acks a ON a.router = r.id AND a.tenant = $1
		WHERE r.heartbeat > now() - $3::bigint * interval '1 microsecond' AND coalesce(a.epoch, 0) < $2
		ORDER BY r.id`, tenant, epoch, within.Microseconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
