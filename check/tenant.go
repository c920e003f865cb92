package check

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"tenantry/load"
	"tenantry/tenanttable"
)

// tenantCheck checks one tenant's database against its history.
type tenantCheck struct {
	tenant string
	db     Querier
	hist   *tenantHistory
	rep    *Report
	max    int
}

func (c *tenantCheck) violation(kind, table, key, format string, a ...any) {
	c.rep.add(c.max, Violation{Kind: kind, Tenant: c.tenant, Table: table, Key: key, Detail: fmt.Sprintf(format, a...)})
}

func (c *tenantCheck) run(ctx context.Context) error {
	for _, step := range []func(context.Context) error{c.duplicateKeys, c.ackedOrders, c.orderIntegrity, c.conservation} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// duplicateKeys reports primary keys held by more than one row, in every
// tenant table of the database (tenanttable.List, which refuses a table
// without a primary key that starts with tenant_id). Under an existing
// constraint a duplicate means its index was corrupted or bypassed, which
// is what a checker is for.
func (c *tenantCheck) duplicateKeys(ctx context.Context) error {
	tables, err := tenanttable.List(ctx, c.db)
	if err != nil {
		return err
	}
	for _, t := range tables {
		cols := t.PK[1:] // PK[0] is tenant_id
		if len(cols) == 0 {
			cols = t.PK // one row per tenant
		}
		idents := make([]string, len(cols))
		for i, col := range cols {
			idents[i] = pgx.Identifier{col}.Sanitize()
		}
		list := strings.Join(idents, ", ")
		q := fmt.Sprintf("SELECT concat_ws(' ', %s), count(*) FROM %s WHERE tenant_id = $1 GROUP BY %s HAVING count(*) > 1 ORDER BY 1 LIMIT 100",
			keyExpr(cols), t.Ident(), list)
		rows, err := c.db.Query(ctx, q, c.tenant)
		if err != nil {
			return fmt.Errorf("find duplicate keys of %s: %w", t.Name, err)
		}
		var key string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&key, &n}, func() error {
			c.violation(KindDuplicateKey, t.Name, key, "%d rows share this primary key", n)
			return nil
		})
		if err != nil {
			return fmt.Errorf("find duplicate keys of %s: %w", t.Name, err)
		}
	}
	return nil
}

// keyExpr renders a key's columns as 'col=' || col terms for concat_ws.
func keyExpr(cols []string) string {
	terms := make([]string, len(cols))
	for i, col := range cols {
		terms[i] = fmt.Sprintf("'%s=' || %s", strings.ReplaceAll(col, "'", "''"), pgx.Identifier{col}.Sanitize())
	}
	return strings.Join(terms, ", ")
}

// ackedOrders compares every acknowledged order with its row and lines.
func (c *tenantCheck) ackedOrders(ctx context.Context) error {
	ids := make([]int64, 0, len(c.hist.orders))
	for id := range c.hist.orders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	type row struct {
		status   string
		location int64
		lines    []load.Line
	}
	got := map[int64]*row{}
	rows, err := c.db.Query(ctx, `SELECT id, status, location_id FROM orders WHERE tenant_id = $1 AND id = ANY($2)`, c.tenant, ids)
	if err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	var id, loc int64
	var status string
	if _, err := pgx.ForEachRow(rows, []any{&id, &status, &loc}, func() error {
		got[id] = &row{status: status, location: loc}
		return nil
	}); err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	rows, err = c.db.Query(ctx, `SELECT order_id, product_id, quantity FROM order_lines WHERE tenant_id = $1 AND order_id = ANY($2) ORDER BY order_id, line_no`, c.tenant, ids)
	if err != nil {
		return fmt.Errorf("read order lines: %w", err)
	}
	var l load.Line
	if _, err := pgx.ForEachRow(rows, []any{&id, &l.ProductID, &l.Quantity}, func() error {
		if r, ok := got[id]; ok {
			r.lines = append(r.lines, l)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read order lines: %w", err)
	}
	for _, id := range ids {
		want, key := c.hist.orders[id], fmt.Sprintf("order_id=%d", id)
		r, ok := got[id]
		if !ok {
			c.violation(KindMissingOrder, "orders", key, "acknowledged order (idempotency key %s) is not in the database", want.key)
			continue
		}
		if r.location != want.locationID {
			c.violation(KindOrder, "orders", key, "location_id %d, acknowledged %d", r.location, want.locationID)
		}
		if !sameLines(r.lines, want.lines) {
			c.violation(KindOrderLines, "order_lines", key, "lines %s, acknowledged %s", fmtLines(r.lines), fmtLines(want.lines))
		}
		if allowed := want.allowed(); !slices.Contains(allowed, r.status) {
			c.violation(KindStatus, "orders", key, "status %s, acknowledged history allows %s", r.status, strings.Join(allowed, " or "))
		}
	}
	return nil
}

// sameLines compares lines as multisets of (product, quantity).
func sameLines(a, b []load.Line) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(x, y load.Line) int {
		return cmp.Or(cmp.Compare(x.ProductID, y.ProductID), cmp.Compare(x.Quantity, y.Quantity))
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, key)
	slices.SortFunc(b, key)
	return slices.Equal(a, b)
}

func fmtLines(ls []load.Line) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%d×%d", l.ProductID, l.Quantity)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// orderIntegrity checks every order of the tenant, acknowledged or not:
// it has lines, and it has a fulfilment exactly when it is fulfilled.
func (c *tenantCheck) orderIntegrity(ctx context.Context) error {
	rows, err := c.db.Query(ctx, `
SELECT o.id, o.status,
       (SELECT count(*) FROM order_lines l WHERE l.tenant_id = o.tenant_id AND l.order_id = o.id),
       (SELECT count(*) FROM fulfilments f WHERE f.tenant_id = o.tenant_id AND f.order_id = o.id)
FROM orders o WHERE o.tenant_id = $1 ORDER BY o.id`, c.tenant)
	if err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	var id, lines, fulfilments int64
	var status string
	_, err = pgx.ForEachRow(rows, []any{&id, &status, &lines, &fulfilments}, func() error {
		c.rep.OrdersInDB++
		key := fmt.Sprintf("order_id=%d", id)
		if lines == 0 {
			c.violation(KindOrder, "order_lines", key, "order has no lines")
		}
		if want := map[bool]int64{true: 1}[status == "fulfilled"]; fulfilments != want {
			c.violation(KindFulfilment, "fulfilments", key, "%s order has %d fulfilments, want %d", status, fulfilments, want)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	return nil
}

// conservation checks every stock position of the tenant: on_hand +
// reserved + shipped equals the sum of its adjustments, reserved and
// shipped equal the lines of its reserved and fulfilled orders, nothing is
// negative, and every position with adjustments, lines or a stock level in
// the ledger has an inventory row.
func (c *tenantCheck) conservation(ctx context.Context) error {
	rows, err := c.db.Query(ctx, `
WITH inv AS (
	SELECT product_id, location_id, on_hand, reserved, shipped FROM inventory WHERE tenant_id = $1
), adj AS (
	SELECT product_id, location_id, sum(delta)::bigint AS delta
	FROM inventory_adjustments WHERE tenant_id = $1 GROUP BY 1, 2
), lin AS (
	SELECT l.product_id, o.location_id,
	       coalesce(sum(l.quantity) FILTER (WHERE o.status = 'reserved'), 0)::bigint AS reserved,
	       coalesce(sum(l.quantity) FILTER (WHERE o.status = 'fulfilled'), 0)::bigint AS shipped
	FROM orders o JOIN order_lines l ON l.tenant_id = o.tenant_id AND l.order_id = o.id
	WHERE o.tenant_id = $1 GROUP BY 1, 2
)
SELECT product_id, location_id, inv.product_id IS NOT NULL,
       coalesce(inv.on_hand, 0), coalesce(inv.reserved, 0), coalesce(inv.shipped, 0),
       coalesce(adj.delta, 0), coalesce(lin.reserved, 0), coalesce(lin.shipped, 0)
FROM inv FULL JOIN adj USING (product_id, location_id) FULL JOIN lin USING (product_id, location_id)
ORDER BY 1, 2`, c.tenant)
	if err != nil {
		return fmt.Errorf("read stock positions: %w", err)
	}
	var p position
	var exists bool
	var onHand, reserved, shipped, delta, linesReserved, linesShipped int64
	seen := map[position]bool{}
	_, err = pgx.ForEachRow(rows, []any{&p.product, &p.location, &exists, &onHand, &reserved, &shipped, &delta, &linesReserved, &linesShipped}, func() error {
		key := fmt.Sprintf("product_id=%d location_id=%d", p.product, p.location)
		if !exists {
			c.violation(KindMissingPosition, "inventory", key, "no inventory row, but adjustments sum to %d and order lines reserve %d and ship %d", delta, linesReserved, linesShipped)
			return nil
		}
		seen[p] = true
		c.rep.Positions++
		if onHand+reserved+shipped != delta {
			c.violation(KindConservation, "inventory", key, "on_hand %d + reserved %d + shipped %d = %d, but inventory_adjustments sum to %d",
				onHand, reserved, shipped, onHand+reserved+shipped, delta)
		}
		if reserved != linesReserved {
			c.violation(KindReserved, "inventory", key, "reserved %d, but lines of reserved orders sum to %d", reserved, linesReserved)
		}
		if shipped != linesShipped {
			c.violation(KindShipped, "inventory", key, "shipped %d, but lines of fulfilled orders sum to %d", shipped, linesShipped)
		}
		if onHand < 0 || reserved < 0 || shipped < 0 {
			c.violation(KindNegative, "inventory", key, "on_hand %d, reserved %d, shipped %d", onHand, reserved, shipped)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read stock positions: %w", err)
	}
	for _, p := range sortedPositions(c.hist.stocked) {
		if !seen[p] {
			c.violation(KindMissingPosition, "inventory", fmt.Sprintf("product_id=%d location_id=%d", p.product, p.location), "the ledger acknowledges stock here but there is no inventory row")
		}
	}
	return nil
}

func sortedPositions(m map[position]bool) []position {
	out := make([]position, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b position) int {
		return cmp.Or(cmp.Compare(a.product, b.product), cmp.Compare(a.location, b.location))
	})
	return out
}
