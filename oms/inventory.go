package oms

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// MaxStock bounds on_hand set by PUT and one receipt's quantity.
const MaxStock = 1_000_000_000

// Position is the stock of one product at one location. on_hand is free to
// reserve; reserved is held by orders in status reserved; shipped left with
// fulfilled orders. Their sum equals the sum of the position's adjustments.
type Position struct {
	ProductID  int64 `json:"product_id"`
	LocationID int64 `json:"location_id"`
	OnHand     int64 `json:"on_hand"`
	Reserved   int64 `json:"reserved"`
	Shipped    int64 `json:"shipped"`
}

type setInventoryIn struct {
	OnHand *int64 `json:"on_hand"`
}

type receiptIn struct {
	Quantity *int64 `json:"quantity"`
}

func positionPath(r *request) (product, location int64, err error) {
	if product, err = pathID(r, "product_id"); err != nil {
		return 0, 0, err
	}
	location, err = pathID(r, "location_id")
	return product, location, err
}

// setInventory sets on_hand, creating the position if needed, and records
// the difference in the ledger.
func (s *Server) setInventory(w http.ResponseWriter, r *request) error {
	product, location, err := positionPath(r)
	if err != nil {
		return err
	}
	var in setInventoryIn
	body, err := readBody(w, r, &in)
	if err != nil {
		return err
	}
	if in.OnHand == nil || *in.OnHand < 0 || *in.OnHand > MaxStock {
		return invalid("on_hand is required, between 0 and %d", MaxStock)
	}
	return s.write(w, r, body, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		old, err := lockPosition(ctx, tx, r.tenant, product, location)
		if err != nil {
			return 0, nil, err
		}
		return adjust(ctx, tx, r.tenant, product, location, *in.OnHand-old, "set")
	})
}

// receiveInventory adds a received quantity to on_hand.
func (s *Server) receiveInventory(w http.ResponseWriter, r *request) error {
	product, location, err := positionPath(r)
	if err != nil {
		return err
	}
	var in receiptIn
	body, err := readBody(w, r, &in)
	if err != nil {
		return err
	}
	if in.Quantity == nil || *in.Quantity <= 0 || *in.Quantity > MaxStock {
		return invalid("quantity is required, between 1 and %d", MaxStock)
	}
	return s.write(w, r, body, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		if _, err := lockPosition(ctx, tx, r.tenant, product, location); err != nil {
			return 0, nil, err
		}
		return adjust(ctx, tx, r.tenant, product, location, *in.Quantity, "receipt")
	})
}

// lockPosition makes sure the position exists (404 when the tenant has no
// such product or location), locks it and returns its on_hand.
func lockPosition(ctx context.Context, tx pgx.Tx, tenant string, product, location int64) (int64, error) {
	var productExists, locationExists bool
	err := tx.QueryRow(ctx, `SELECT
	EXISTS (SELECT 1 FROM products WHERE tenant_id = $1 AND id = $2),
	EXISTS (SELECT 1 FROM locations WHERE tenant_id = $1 AND id = $3)`, tenant, product, location).Scan(&productExists, &locationExists)
	if err != nil {
		return 0, err
	}
	switch {
	case !productExists:
		return 0, notFound("product", product)
	case !locationExists:
		return 0, notFound("location", location)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO inventory (tenant_id, product_id, location_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING`, tenant, product, location); err != nil {
		return 0, err
	}
	var onHand int64
	err = tx.QueryRow(ctx, `SELECT on_hand FROM inventory
WHERE tenant_id = $1 AND product_id = $2 AND location_id = $3 FOR UPDATE`, tenant, product, location).Scan(&onHand)
	return onHand, err
}

// adjust adds delta to the locked position's on_hand and records it in the
// ledger (a zero delta records nothing).
func adjust(ctx context.Context, tx pgx.Tx, tenant string, product, location, delta int64, reason string) (int, any, error) {
	if delta != 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO inventory_adjustments (tenant_id, product_id, location_id, delta, reason)
VALUES ($1, $2, $3, $4, $5)`, tenant, product, location, delta, reason); err != nil {
			return 0, nil, err
		}
	}
	p := Position{ProductID: product, LocationID: location}
	err := tx.QueryRow(ctx, `UPDATE inventory SET on_hand = on_hand + $4, updated_at = now()
WHERE tenant_id = $1 AND product_id = $2 AND location_id = $3
RETURNING on_hand, reserved, shipped`, tenant, product, location, delta).Scan(&p.OnHand, &p.Reserved, &p.Shipped)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, p, nil
}

// listInventory lists the tenant's positions, optionally filtered by product
// and location, ordered by product then location.
// listInventory lists the tenant's positions in (product, location) order,
// a page at a time: limit (default DefaultPageSize, at most MaxPageSize)
// positions after the cursor "after" ("PRODUCT.LOCATION", the next_after of
// the previous page); next_after is null on the last page.
func (s *Server) listInventory(w http.ResponseWriter, r *request) error {
	var product, location int64
	var err error
	q := r.URL.Query()
	if v := q.Get("product_id"); v != "" {
		if product, err = parseID("product_id", v); err != nil {
			return err
		}
	}
	if v := q.Get("location_id"); v != "" {
		if location, err = parseID("location_id", v); err != nil {
			return err
		}
	}
	limit, err := queryInt(q.Get("limit"), "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return err
	}
	var afterP, afterL int64
	if v := q.Get("after"); v != "" {
		p, l, ok := strings.Cut(v, ".")
		if afterP, err = parseID("after", p); err == nil && ok {
			afterL, err = parseID("after", l)
		}
		if err != nil || !ok {
			return invalid("after must be the next_after of a previous page (PRODUCT.LOCATION), not %q", v)
		}
	}
	return s.read(w, r, func(ctx context.Context, tx pgx.Tx) (any, error) {
		rows, err := tx.Query(ctx, `SELECT product_id, location_id, on_hand, reserved, shipped FROM inventory
WHERE tenant_id = $1 AND ($2 = 0 OR product_id = $2) AND ($3 = 0 OR location_id = $3)
  AND (product_id, location_id) > ($4, $5)
ORDER BY product_id, location_id LIMIT $6`, r.tenant, product, location, afterP, afterL, limit+1)
		if err != nil {
			return nil, err
		}
		positions, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Position])
		if err != nil {
			return nil, err
		}
		if positions == nil {
			positions = []Position{}
		}
		var next *string
		if len(positions) > int(limit) {
			positions = positions[:limit]
			last := positions[limit-1]
			c := strconv.FormatInt(last.ProductID, 10) + "." + strconv.FormatInt(last.LocationID, 10)
			next = &c
		}
		return map[string]any{"positions": positions, "next_after": next}, nil
	})
}
