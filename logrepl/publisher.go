package logrepl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SubscriptionPublisher returns the address ("host:port") subscription sub
// on dst connects to: the publisher's address when the subscription was
// made (its CONNECTION, pg_subscription.subconninfo, readable by superusers
// only). A subscription follows no failover by itself: after one, this is
// the old primary's address. ErrSubscriptionBroken when sub does not exist.
func SubscriptionPublisher(ctx context.Context, dst Querier, sub string) (string, error) {
	if err := validIdent("subscription", sub); err != nil {
		return "", err
	}
	var conninfo string
	err := dst.QueryRow(ctx, `SELECT subconninfo FROM pg_subscription WHERE subname = $1
		AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, sub).Scan(&conninfo)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: subscription %s does not exist", ErrSubscriptionBroken, sub)
	}
	if err != nil {
		return "", fmt.Errorf("read connection of subscription %s: %w", sub, err)
	}
	cc, err := pgconn.ParseConfig(conninfo)
	if err != nil {
		return "", fmt.Errorf("parse connection of subscription %s: %w", sub, err)
	}
	return net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), nil
}

// RepointSubscription points subscription sub on dst at publisher (ALTER
// SUBSCRIPTION ... CONNECTION; the apply worker restarts and reconnects).
// Only for a publisher that holds the subscription's slot at its new
// address: a promoted standby has no logical slot in PostgreSQL 15, so a
// link whose publisher failed over must be rebuilt instead.
func RepointSubscription(ctx context.Context, dst Querier, sub string, publisher Endpoint) error {
	if err := validIdent("subscription", sub); err != nil {
		return err
	}
	conn, err := quoteLiteral(publisher.String())
	if err != nil {
		return err
	}
	if _, err := dst.Exec(ctx, "ALTER SUBSCRIPTION "+pgx.Identifier{sub}.Sanitize()+" CONNECTION "+conn); err != nil {
		return fmt.Errorf("repoint subscription %s: %w", sub, err)
	}
	return nil
}
