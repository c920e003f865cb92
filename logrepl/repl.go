package logrepl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/registry"
)

// pollEvery is how often the wait functions re-read the catalogs.
const pollEvery = 10 * time.Millisecond

// checkEligible verifies that t can be published with a row filter on
// tenant_id: the column exists and is part of the replica identity.
// PostgreSQL only checks this when an UPDATE or DELETE runs on the source,
// and then rejects it for every tenant; so we refuse up front.
func checkEligible(ctx context.Context, q Querier, t table) error {
	var hasCol, inIdentity bool
	var ident string
	err := q.QueryRow(ctx, `
		SELECT c.relreplident::text,
			EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
				AND a.attname = 'tenant_id' AND NOT a.attisdropped),
			EXISTS (SELECT 1 FROM pg_index i
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
				WHERE i.indrelid = c.oid AND a.attname = 'tenant_id'
				AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
		t.schema, t.name).Scan(&ident, &hasCol, &inIdentity)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: table %s does not exist", ErrTableNotEligible, t)
	case err != nil:
		return fmt.Errorf("check table %s: %w", t, err)
	case !hasCol:
		return fmt.Errorf("%w: table %s has no tenant_id column", ErrTableNotEligible, t)
	case ident != "f" && !inIdentity:
		return fmt.Errorf("%w: tenant_id is not in the replica identity of %s (primary key must start with tenant_id)", ErrTableNotEligible, t)
	}
	return nil
}

// exists runs a catalog query that selects one row when the object exists.
func exists(ctx context.Context, q Querier, sql string, args ...any) (bool, error) {
	var one int
	err := q.QueryRow(ctx, sql, args...).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func publicationExists(ctx context.Context, q Querier, name string) (bool, error) {
	return exists(ctx, q, "SELECT 1 FROM pg_publication WHERE pubname = $1", name)
}

func subscriptionExists(ctx context.Context, q Querier, name string) (bool, error) {
	return exists(ctx, q, `SELECT 1 FROM pg_subscription WHERE subname = $1
		AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, name)
}

// isDuplicate reports a "create" that lost a race with another creator.
func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42710" // duplicate_object
}

// CreatePublication creates publication name on the source, publishing
// inserts, updates and deletes (not truncates) of tables, each filtered to
// the tenant's rows: FOR TABLE t1 WHERE (tenant_id = 'acme'), .... Tables
// are "name" (schema public) or "schema.name" and must be eligible
// (ErrTableNotEligible). An existing publication of that name is taken as
// made by an earlier run of the same step and left alone.
func CreatePublication(ctx context.Context, src Querier, name, tenant string, tables []string) error {
	if err := validIdent("publication", name); err != nil {
		return err
	}
	if err := registry.ValidateTenantID(tenant); err != nil {
		return err
	}
	ts, err := parseTables(tables)
	if err != nil {
		return err
	}
	if ok, err := publicationExists(ctx, src, name); err != nil || ok {
		return wrapErr("create publication", err)
	}
	lit, err := quoteLiteral(tenant)
	if err != nil {
		return err
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		if err := checkEligible(ctx, src, t); err != nil {
			return err
		}
		parts[i] = t.ident() + " WHERE (tenant_id = " + lit + ")"
	}
	sql := "CREATE PUBLICATION " + pgx.Identifier{name}.Sanitize() + " FOR TABLE " +
		strings.Join(parts, ", ") + " WITH (publish = 'insert, update, delete')"
	if _, err := src.Exec(ctx, sql); err != nil && !isDuplicate(err) {
		return fmt.Errorf("create publication %s: %w", name, err)
	}
	return nil
}

// DropPublication drops publication name if it exists.
func DropPublication(ctx context.Context, q Querier, name string) error {
	if err := validIdent("publication", name); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("drop publication %s: %w", name, err)
	}
	return nil
}

// CreateSlot creates logical replication slot name (plugin pgoutput) on q's
// server unless it exists, and returns its confirmed_flush_lsn: the point
// from which a subscription using it receives changes. Creating a slot waits
// for transactions running at that moment to finish.
func CreateSlot(ctx context.Context, q Querier, name string) (LSN, error) {
	if err := validIdent("slot", name); err != nil {
		return 0, err
	}
	var lsn *string
	err := q.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		var s string
		err = q.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", name).Scan(&s)
		lsn = &s
	}
	if err != nil {
		return 0, fmt.Errorf("create slot %s: %w", name, err)
	}
	return scanLSN(lsn)
}

// DropSlot drops replication slot name if it exists. A walsender still
// streaming from it is terminated first (its subscriber should be disabled
// or dropped already), and the drop is retried until ctx ends.
func DropSlot(ctx context.Context, q Querier, name string) error {
	if err := validIdent("slot", name); err != nil {
		return err
	}
	for {
		var pid *int32
		err := q.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err == nil && pid != nil {
			_, err = q.Exec(ctx, "SELECT pg_terminate_backend($1)", *pid)
		} else if err == nil {
			_, err = q.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NULL", name)
		}
		var pe *pgconn.PgError
		if err != nil && !(errors.As(err, &pe) && pe.Code == "55006") { // object_in_use: raced a restart
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
	}
}

// SubOpts are the options of CreateSubscription.
type SubOpts struct {
	// CopyData copies the published rows first (initial sync).
	CopyData bool
	// SlotName is the slot on the publisher; empty means the subscription's
	// name.
	SlotName string
	// CreateSlot has CREATE SUBSCRIPTION create the slot. A crash between
	// that and the local commit leaves the slot behind and the retry fails;
	// the idempotent path is CreateSlot on the publisher first and
	// CreateSlot false here.
	CreateSlot bool
	// Enabled starts the workers at once.
	Enabled bool
}

// CreateSubscription creates subscription name on the target, connected to
// src, subscribed to publication pub, unless it exists (then it is left as
// it is). The connection string, password included, is stored in the
// target's catalog (pg_subscription, readable by superusers only).
func CreateSubscription(ctx context.Context, dst Querier, name string, src Endpoint, pub string, opts SubOpts) error {
	if opts.SlotName == "" {
		opts.SlotName = name
	}
	for _, v := range [][2]string{{"subscription", name}, {"publication", pub}, {"slot", opts.SlotName}} {
		if err := validIdent(v[0], v[1]); err != nil {
			return err
		}
	}
	if ok, err := subscriptionExists(ctx, dst, name); err != nil || ok {
		return wrapErr("create subscription", err)
	}
	conn, err := quoteLiteral(src.String())
	if err != nil {
		return err
	}
	slot, _ := quoteLiteral(opts.SlotName) // validated: no NUL
	sql := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (copy_data = %t, create_slot = %t, slot_name = %s, enabled = %t)",
		pgx.Identifier{name}.Sanitize(), conn, pgx.Identifier{pub}.Sanitize(), opts.CopyData, opts.CreateSlot, slot, opts.Enabled)
	if _, err := dst.Exec(ctx, sql); err != nil && !isDuplicate(err) {
		return fmt.Errorf("create subscription %s: %w", name, err)
	}
	return nil
}

// SetSubscriptionEnabled enables or disables subscription name (ALTER
// SUBSCRIPTION ... ENABLE/DISABLE); both are no-ops when already so.
// Disabling returns before the apply worker has exited.
func SetSubscriptionEnabled(ctx context.Context, dst Querier, name string, enabled bool) error {
	if err := validIdent("subscription", name); err != nil {
		return err
	}
	verb := "DISABLE"
	if enabled {
		verb = "ENABLE"
	}
	if _, err := dst.Exec(ctx, "ALTER SUBSCRIPTION "+pgx.Identifier{name}.Sanitize()+" "+verb); err != nil {
		return fmt.Errorf("%s subscription %s: %w", strings.ToLower(verb), name, err)
	}
	return nil
}

// DropSubscription drops subscription name if it exists, with its slot on
// the publisher when the publisher is reachable (a slot already gone there
// is fine). When the publisher cannot be reached the subscription is
// detached from its slot (slot_name = NONE) and dropped anyway: the caller
// must then drop the slot on the publisher with DropSlot, which is a no-op
// when the slot is gone, so workflows should always call it afterwards.
func DropSubscription(ctx context.Context, dst Querier, name string) error {
	if err := validIdent("subscription", name); err != nil {
		return err
	}
	ok, err := subscriptionExists(ctx, dst, name)
	if err != nil || !ok {
		return wrapErr("drop subscription", err)
	}
	id := pgx.Identifier{name}.Sanitize()
	if err := SetSubscriptionEnabled(ctx, dst, name, false); err != nil {
		return err
	}
	if _, err := dst.Exec(ctx, "DROP SUBSCRIPTION IF EXISTS "+id); err == nil {
		return nil
	}
	if _, err := dst.Exec(ctx, "ALTER SUBSCRIPTION "+id+" SET (slot_name = NONE)"); err != nil {
		return fmt.Errorf("detach subscription %s from its slot: %w", name, err)
	}
	if _, err := dst.Exec(ctx, "DROP SUBSCRIPTION IF EXISTS "+id); err != nil {
		return fmt.Errorf("drop subscription %s: %w", name, err)
	}
	return nil
}

// DropLink removes link l: its subscription on sub first (so nothing more
// is applied there; PostgreSQL 15 would publish what it applies again), then
// its slot and its publication on pub. Every part that is already gone is
// skipped, so it is idempotent and also clears a link half made or half
// dropped.
func DropLink(ctx context.Context, pub, sub Querier, l Link) error {
	if err := DropSubscription(ctx, sub, l.Subscription); err != nil {
		return err
	}
	if err := DropSlot(ctx, pub, l.Slot); err != nil {
		return err
	}
	return DropPublication(ctx, pub, l.Publication)
}

func wrapErr(verb string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", verb, err)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
