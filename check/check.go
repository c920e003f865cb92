// Package check is the strict consistency checker of tenantry's load runs:
// it reads the ledger written by package load and the tenants' current
// databases, and reports every way the data disagrees with what clients were
// told (an acknowledged order missing, lines lost or duplicated, a status
// that contradicts acknowledged fulfils and cancels) or with itself (stock
// not conserved, reserved and shipped quantities that differ from the orders,
// duplicate primary keys). The tenantry check command and the end-to-end
// tests of moves and failovers run it after load.
package check

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"github.com/jackc/pgx/v5"
)

// Querier reads a tenant's database; *pgxpool.Pool, *pgx.Conn and pgx.Tx
// are Queriers.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Databases returns the current database of a tenant (the one its
// placement names now). Check calls it once per tenant of the ledger and
// does not close what it returns.
type Databases func(ctx context.Context, tenant string) (Querier, error)

// Options tune Check. Zero values mean the documented defaults.
type Options struct {
	// MaxViolations bounds the violations listed in the report (default
	// 1000); the rest are only counted in Report.Omitted.
	MaxViolations int
	// Logger: nil discards.
	Logger *slog.Logger
}

// Kinds of violation.
const (
	// KindLedger: the ledger contradicts itself (one order id acknowledged
	// for two idempotency keys, one key acknowledged with two order ids,
	// an order acknowledged both fulfilled and cancelled).
	KindLedger = "ledger"
	// KindMissingOrder: an acknowledged order is not in the database.
	KindMissingOrder = "missing_order"
	// KindOrder: an acknowledged order's location differs, or an order has
	// no lines.
	KindOrder = "order"
	// KindOrderLines: an acknowledged order's lines differ from those
	// acknowledged (lost, changed or duplicated lines).
	KindOrderLines = "order_lines"
	// KindStatus: an order's status contradicts the acknowledged history.
	KindStatus = "status"
	// KindFulfilment: a fulfilled order without exactly one fulfilment, or
	// a fulfilment of an order that is not fulfilled.
	KindFulfilment = "fulfilment"
	// KindDuplicateKey: two rows share a primary key.
	KindDuplicateKey = "duplicate_key"
	// KindConservation: on_hand + reserved + shipped differs from the sum
	// of the position's inventory adjustments.
	KindConservation = "conservation"
	// KindReserved, KindShipped: a position's reserved (shipped) quantity
	// differs from the lines of its reserved (fulfilled) orders.
	KindReserved = "reserved"
	KindShipped  = "shipped"
	// KindNegative: a stock quantity below zero.
	KindNegative = "negative"
	// KindMissingPosition: a position the ledger stocked, or one that has
	// adjustments or order lines, has no inventory row.
	KindMissingPosition = "missing_position"
)

// Violation is one inconsistency, naming where it is.
type Violation struct {
	Kind   string `json:"kind"`
	Tenant string `json:"tenant"`
	Table  string `json:"table"`
	// Key names the row(s): "order_id=12", "product_id=3 location_id=1".
	Key    string `json:"key"`
	Detail string `json:"detail"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: tenant %s, %s %s: %s", v.Kind, v.Tenant, v.Table, v.Key, v.Detail)
}

// Report is the outcome of Check.
type Report struct {
	OK      bool `json:"ok"`
	Tenants int  `json:"tenants"`
	// Orders is the number of acknowledged orders checked; Fulfils and
	// Cancels the acknowledged state changes; Unresolved the writes that
	// were attempted but never acknowledged or refused.
	Orders     int `json:"orders"`
	Fulfils    int `json:"fulfils"`
	Cancels    int `json:"cancels"`
	Refusals   int `json:"refusals"`
	Unresolved int `json:"unresolved"`
	// OrdersInDB and Positions count what the databases hold for the
	// ledger's tenants.
	OrdersInDB int         `json:"orders_in_db"`
	Positions  int         `json:"positions"`
	Violations []Violation `json:"violations"`
	// Omitted counts violations beyond Options.MaxViolations.
	Omitted int `json:"omitted,omitempty"`
}

func (r *Report) add(max int, v Violation) {
	r.OK = false
	if len(r.Violations) >= max {
		r.Omitted++
		return
	}
	r.Violations = append(r.Violations, v)
}

// Check reads the whole ledger, then checks every tenant in it against the
// database dbs returns for it. Violations go into the report; an error is
// returned only when the check could not be made (unreadable ledger,
// unreachable database, failed query).
func Check(ctx context.Context, ledger io.Reader, dbs Databases, opts Options) (*Report, error) {
	if opts.MaxViolations <= 0 {
		opts.MaxViolations = 1000
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hist, err := readHistory(ledger)
	if err != nil {
		return nil, err
	}
	rep := &Report{OK: true, Tenants: len(hist), Violations: []Violation{}}
	tenants := make([]string, 0, len(hist))
	for t := range hist {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	for _, tenant := range tenants {
		th := hist[tenant]
		th.count(rep)
		for _, v := range th.ledgerViolations {
			rep.add(opts.MaxViolations, v)
		}
		db, err := dbs(ctx, tenant)
		if err != nil {
			return nil, fmt.Errorf("database of tenant %s: %w", tenant, err)
		}
		tc := &tenantCheck{tenant: tenant, db: db, hist: th, rep: rep, max: opts.MaxViolations}
		if err := tc.run(ctx); err != nil {
			return nil, fmt.Errorf("check tenant %s: %w", tenant, err)
		}
		log.Debug("tenant checked", "tenant", tenant, "orders", len(th.orders), "violations", len(rep.Violations)+rep.Omitted)
	}
	return rep, nil
}
