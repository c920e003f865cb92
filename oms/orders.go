package oms

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Order statuses. An order is created reserved; fulfil and cancel move it to
// a final status.
const (
	StatusReserved  = "reserved"
	StatusFulfilled = "fulfilled"
	StatusCancelled = "cancelled"
)

// Order limits.
const (
	MaxOrderLines   = 100
	MaxLineQuantity = 10_000
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Order is an order as the API shows it.
type Order struct {
	ID         int64     `json:"id"`
	Status     string    `json:"status"`
	LocationID int64     `json:"location_id"`
	CustomerID *int64    `json:"customer_id"`
	Lines      []Line    `json:"lines"`
	CreatedAt  time.Time `json:"created_at"`
}

// Line is one product and quantity of an order.
type Line struct {
	ProductID int64 `json:"product_id"`
	Quantity  int64 `json:"quantity"`
}

type orderIn struct {
	CustomerID *int64 `json:"customer_id"`
	LocationID int64  `json:"location_id"`
	Lines      []Line `json:"lines"`
}

// validate checks an order request. A product may appear on one line only:
// a request naming it twice is rejected rather than merged, so the stored
// lines are exactly the lines the client sent.
func (in *orderIn) validate() error {
	if in.LocationID <= 0 {
		return invalid("location_id is required and must be a positive integer")
	}
	if in.CustomerID != nil && *in.CustomerID <= 0 {
		return invalid("customer_id must be a positive integer")
	}
	if len(in.Lines) < 1 || len(in.Lines) > MaxOrderLines {
		return invalid("an order needs 1 to %d lines, not %d", MaxOrderLines, len(in.Lines))
	}
	seen := make(map[int64]bool, len(in.Lines))
	for i, l := range in.Lines {
		switch {
		case l.ProductID <= 0:
			return invalid("lines[%d].product_id must be a positive integer", i)
		case l.Quantity < 1 || l.Quantity > MaxLineQuantity:
			return invalid("lines[%d].quantity must be between 1 and %d", i, MaxLineQuantity)
		case seen[l.ProductID]:
			return invalid("lines[%d]: product %d appears on more than one line", i, l.ProductID)
		}
		seen[l.ProductID] = true
	}
	return nil
}

// createOrder reserves stock for every line at one location, atomically.
func (s *Server) createOrder(w http.ResponseWriter, r *request) error {
	var in orderIn
	body, err := readBody(w, r, &in)
	if err != nil {
		return err
	}
	if err := in.validate(); err != nil {
		return err
	}
	return s.write(w, r, body, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		o, err := placeOrder(ctx, tx, r.tenant, &in)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, o, nil
	})
}

func placeOrder(ctx context.Context, tx pgx.Tx, tenant string, in *orderIn) (*Order, error) {
	var locationOK, customerOK bool
	err := tx.QueryRow(ctx, `SELECT
	EXISTS (SELECT 1 FROM locations WHERE tenant_id = $1 AND id = $2),
	$3::bigint IS NULL OR EXISTS (SELECT 1 FROM customers WHERE tenant_id = $1 AND id = $3)`,
		tenant, in.LocationID, in.CustomerID).Scan(&locationOK, &customerOK)
	if err != nil {
		return nil, err
	}
	if !locationOK {
		return nil, notFound("location", in.LocationID)
	}
	if !customerOK {
		return nil, notFound("customer", *in.CustomerID)
	}
	products, quantities := lineArrays(in.Lines)
	onHand, err := lockPositions(ctx, tx, tenant, in.LocationID, products)
	if err != nil {
		return nil, err
	}
	if err := checkStock(ctx, tx, tenant, in.Lines, onHand); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE inventory i SET on_hand = i.on_hand - l.q, reserved = i.reserved + l.q, updated_at = now()
FROM unnest($3::bigint[], $4::bigint[]) AS l(p, q)
WHERE i.tenant_id = $1 AND i.location_id = $2 AND i.product_id = l.p`, tenant, in.LocationID, products, quantities); err != nil {
		return nil, err
	}
	o := &Order{Status: StatusReserved, LocationID: in.LocationID, CustomerID: in.CustomerID, Lines: in.Lines}
	if err := tx.QueryRow(ctx, `INSERT INTO orders (tenant_id, customer_id, location_id, status)
VALUES ($1, $2, $3, $4) RETURNING id, created_at`, tenant, in.CustomerID, in.LocationID, StatusReserved).Scan(&o.ID, &o.CreatedAt); err != nil {
		return nil, err
	}
	o.CreatedAt = o.CreatedAt.UTC()
	// Lines keep the client's order: line_no is the position in the request.
	requested, requestedQty := make([]int64, len(in.Lines)), make([]int64, len(in.Lines))
	for i, l := range in.Lines {
		requested[i], requestedQty[i] = l.ProductID, l.Quantity
	}
	if _, err := tx.Exec(ctx, `INSERT INTO order_lines (tenant_id, order_id, line_no, product_id, quantity)
SELECT $1, $2, l.n, l.p, l.q FROM unnest($3::bigint[], $4::bigint[]) WITH ORDINALITY AS l(p, q, n)`,
		tenant, o.ID, requested, requestedQty); err != nil {
		return nil, err
	}
	return o, nil
}

// lineArrays returns the lines' products and quantities sorted by product.
func lineArrays(lines []Line) (products, quantities []int64) {
	sorted := slices.Clone(lines)
	slices.SortFunc(sorted, func(a, b Line) int { return cmp.Compare(a.ProductID, b.ProductID) })
	for _, l := range sorted {
		products = append(products, l.ProductID)
		quantities = append(quantities, l.Quantity)
	}
	return products, quantities
}

// lockPositions locks the positions of products at location in product
// order — every transaction that locks several positions takes them in this
// one order, so two orders never deadlock — and returns their on_hand.
// Missing positions are absent from the map.
func lockPositions(ctx context.Context, tx pgx.Tx, tenant string, location int64, products []int64) (map[int64]int64, error) {
	rows, err := tx.Query(ctx, `SELECT product_id, on_hand FROM inventory
WHERE tenant_id = $1 AND location_id = $2 AND product_id = ANY($3)
ORDER BY product_id FOR UPDATE`, tenant, location, products)
	if err != nil {
		return nil, err
	}
	onHand := make(map[int64]int64, len(products))
	var p, n int64
	_, err = pgx.ForEachRow(rows, []any{&p, &n}, func() error {
		onHand[p] = n
		return nil
	})
	return onHand, err
}

// checkStock answers 404 for a product the tenant does not have and 409
// insufficient_stock when any line asks for more than is on hand.
func checkStock(ctx context.Context, tx pgx.Tx, tenant string, lines []Line, onHand map[int64]int64) error {
	var short []string
	var missing []int64
	for _, l := range lines {
		n, ok := onHand[l.ProductID]
		if !ok {
			missing = append(missing, l.ProductID)
		}
		if n < l.Quantity {
			short = append(short, fmt.Sprintf("product %d: requested %d, available %d", l.ProductID, l.Quantity, n))
		}
	}
	if len(missing) > 0 {
		var known []int64
		rows, err := tx.Query(ctx, "SELECT id FROM products WHERE tenant_id = $1 AND id = ANY($2)", tenant, missing)
		if err != nil {
			return err
		}
		if known, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		for _, p := range missing {
			if !slices.Contains(known, p) {
				return notFound("product", p)
			}
		}
	}
	if len(short) > 0 {
		return apiErr(CodeInsufficientStock, "%s", strings.Join(short, "; "))
	}
	return nil
}

func (s *Server) fulfilOrder(w http.ResponseWriter, r *request) error {
	return s.transition(w, r, StatusFulfilled)
}

func (s *Server) cancelOrder(w http.ResponseWriter, r *request) error {
	return s.transition(w, r, StatusCancelled)
}

// stockMoves say what leaving status reserved does to the order's positions.
var stockMoves = map[string]string{
	StatusFulfilled: "reserved = i.reserved - l.q, shipped = i.shipped + l.q",
	StatusCancelled: "reserved = i.reserved - l.q, on_hand = i.on_hand + l.q",
}

// transition moves a reserved order to status to (fulfilled or cancelled)
// and its reserved stock to shipped or back to on_hand. An order in any
// other status is 409 invalid_state. The request body is ignored beyond its
// size (it takes part in the idempotency hash).
func (s *Server) transition(w http.ResponseWriter, r *request, to string) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	body, err := readOptionalBody(w, r)
	if err != nil {
		return err
	}
	return s.write(w, r, body, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		o, err := loadOrder(ctx, tx, r.tenant, id, true)
		if err != nil {
			return 0, nil, err
		}
		if o.Status != StatusReserved {
			return 0, nil, apiErr(CodeInvalidState, "order %d is %s, not %s", id, o.Status, StatusReserved)
		}
		products, quantities := lineArrays(o.Lines)
		if _, err := lockPositions(ctx, tx, r.tenant, o.LocationID, products); err != nil {
			return 0, nil, err
		}
		if _, err := tx.Exec(ctx, "UPDATE inventory i SET "+stockMoves[to]+`, updated_at = now()
FROM unnest($3::bigint[], $4::bigint[]) AS l(p, q)
WHERE i.tenant_id = $1 AND i.location_id = $2 AND i.product_id = l.p`, r.tenant, o.LocationID, products, quantities); err != nil {
			return 0, nil, err
		}
		if _, err := tx.Exec(ctx, "UPDATE orders SET status = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
			r.tenant, id, to); err != nil {
			return 0, nil, err
		}
		if to == StatusFulfilled {
			if _, err := tx.Exec(ctx, "INSERT INTO fulfilments (tenant_id, order_id) VALUES ($1, $2)", r.tenant, id); err != nil {
				return 0, nil, err
			}
		}
		o.Status = to
		return http.StatusOK, o, nil
	})
}

// readOptionalBody reads a body that may be empty; a non-empty one must be a
// JSON object with no fields.
func readOptionalBody(w http.ResponseWriter, r *request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil || len(bytes.TrimSpace(body)) == 0 {
		return body, err
	}
	return body, decodeStrict(body, &struct{}{})
}

func (s *Server) getOrder(w http.ResponseWriter, r *request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	return s.read(w, r, func(ctx context.Context, tx pgx.Tx) (any, error) {
		return loadOrder(ctx, tx, r.tenant, id, false)
	})
}

const orderColumns = "id, status, location_id, customer_id, created_at"

// loadOrder reads one order with its lines, locking the order row when
// forUpdate is set.
func loadOrder(ctx context.Context, tx pgx.Tx, tenant string, id int64, forUpdate bool) (*Order, error) {
	q := "SELECT " + orderColumns + " FROM orders WHERE tenant_id = $1 AND id = $2"
	if forUpdate {
		q += " FOR UPDATE"
	}
	rows, err := tx.Query(ctx, q, tenant, id)
	if err != nil {
		return nil, err
	}
	orders, err := collectOrders(rows)
	if err != nil {
		return nil, err
	}
	if len(orders) == 0 {
		return nil, notFound("order", id)
	}
	if err := attachLines(ctx, tx, tenant, orders); err != nil {
		return nil, err
	}
	return orders[0], nil
}

func collectOrders(rows pgx.Rows) ([]*Order, error) {
	orders, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Order, error) {
		o := &Order{Lines: []Line{}}
		err := row.Scan(&o.ID, &o.Status, &o.LocationID, &o.CustomerID, &o.CreatedAt)
		o.CreatedAt = o.CreatedAt.UTC()
		return o, err
	})
	if orders == nil {
		orders = []*Order{}
	}
	return orders, err
}

// attachLines loads the lines of orders in line order.
func attachLines(ctx context.Context, tx pgx.Tx, tenant string, orders []*Order) error {
	if len(orders) == 0 {
		return nil
	}
	byID := make(map[int64]*Order, len(orders))
	ids := make([]int64, len(orders))
	for i, o := range orders {
		byID[o.ID], ids[i] = o, o.ID
	}
	rows, err := tx.Query(ctx, `SELECT order_id, product_id, quantity FROM order_lines
WHERE tenant_id = $1 AND order_id = ANY($2) ORDER BY order_id, line_no`, tenant, ids)
	if err != nil {
		return err
	}
	var id int64
	var l Line
	_, err = pgx.ForEachRow(rows, []any{&id, &l.ProductID, &l.Quantity}, func() error {
		byID[id].Lines = append(byID[id].Lines, l)
		return nil
	})
	return err
}

// listOrders pages through the tenant's orders by id (keyset pagination):
// next_after is the last id of a full page, null on the last page.
func (s *Server) listOrders(w http.ResponseWriter, r *request) error {
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && status != StatusReserved && status != StatusFulfilled && status != StatusCancelled {
		return invalid("status must be %s, %s or %s", StatusReserved, StatusFulfilled, StatusCancelled)
	}
	limit, err := queryInt(q.Get("limit"), "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return err
	}
	after, err := queryInt(q.Get("after"), "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	sql := listOrdersSQL(status != "")
	args := []any{r.tenant, after, limit + 1}
	if status != "" {
		args = append(args, status)
	}
	return s.read(w, r, func(ctx context.Context, tx pgx.Tx) (any, error) {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		orders, err := collectOrders(rows)
		if err != nil {
			return nil, err
		}
		var next *int64
		if len(orders) > int(limit) {
			orders = orders[:limit]
			next = &orders[limit-1].ID
		}
		if err := attachLines(ctx, tx, r.tenant, orders); err != nil {
			return nil, err
		}
		return map[string]any{"orders": orders, "next_after": next}, nil
	})
}

// listOrdersSQL is listOrders' page query: $1 tenant, $2 after, $3 limit,
// and $4 status when byStatus. It is served by orders_pkey, or by
// orders_status_idx with a status.
func listOrdersSQL(byStatus bool) string {
	sql := "SELECT " + orderColumns + " FROM orders WHERE tenant_id = $1 AND id > $2"
	if byStatus {
		sql += " AND status = $4"
	}
	return sql + " ORDER BY id LIMIT $3"
}

func queryInt(v, name string, def, min, max int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	// One spelling per number, as for ids (parseID): "+5" and "05" are refused.
	if err != nil || n < min || n > max || strconv.FormatInt(n, 10) != v {
		return 0, invalid("%s must be an integer between %d and %d, not %q", name, min, max, v)
	}
	return n, nil
}
