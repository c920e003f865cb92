package check

import (
	"fmt"
	"io"

	"tenantry/load"
	"tenantry/registry"
)

// orderHistory is what the ledger says about one acknowledged order.
type orderHistory struct {
	key        string
	locationID int64
	lines      []load.Line
	// fulfilled/cancelled: acknowledged; mayFulfil/mayCancel: attempted and
	// never acknowledged nor refused, so it may have applied.
	fulfilled, cancelled bool
	mayFulfil, mayCancel bool
}

// allowed returns the statuses the order may have.
func (o *orderHistory) allowed() []string {
	switch {
	case o.fulfilled:
		return []string{"fulfilled"}
	case o.cancelled:
		return []string{"cancelled"}
	}
	s := []string{"reserved"}
	if o.mayFulfil {
		s = append(s, "fulfilled")
	}
	if o.mayCancel {
		s = append(s, "cancelled")
	}
	return s
}

type position struct{ product, location int64 }

// tenantHistory is the ledger of one tenant, folded.
type tenantHistory struct {
	tenant  string
	orders  map[int64]*orderHistory
	byKey   map[string]int64 // acknowledged placement key -> order id
	stocked map[position]bool
	// pending holds state changes attempted and not yet resolved, by key.
	pending          map[string]load.Record
	fulfils, cancels int
	refusals         int
	unresolved       int
	ledgerViolations []Violation
}

func newTenantHistory(tenant string) *tenantHistory {
	return &tenantHistory{tenant: tenant, orders: map[int64]*orderHistory{}, byKey: map[string]int64{},
		stocked: map[position]bool{}, pending: map[string]load.Record{}}
}

func (h *tenantHistory) ledgerViolation(key, format string, a ...any) {
	h.ledgerViolations = append(h.ledgerViolations, Violation{Kind: KindLedger, Tenant: h.tenant, Table: "ledger", Key: key, Detail: fmt.Sprintf(format, a...)})
}

func (h *tenantHistory) apply(r load.Record) {
	if r.Outcome == load.OutcomeRefused {
		h.refusals++
	}
	switch r.Op {
	case load.OpStock:
		if r.Outcome == load.OutcomeAck {
			h.stocked[position{r.ProductID, r.LocationID}] = true
		}
	case load.OpPlaceOrder:
		h.applyPlacement(r)
	case load.OpFulfil, load.OpCancel:
		h.applyChange(r)
	}
}

func (h *tenantHistory) applyPlacement(r load.Record) {
	switch r.Outcome {
	case load.OutcomeAttempt:
		h.pending[r.Key] = r
		return
	case load.OutcomeAck:
	case load.OutcomeRefused:
		delete(h.pending, r.Key)
		return
	default:
		return
	}
	delete(h.pending, r.Key)
	key := fmt.Sprintf("order_id=%d", r.OrderID)
	if id, ok := h.byKey[r.Key]; ok && id != r.OrderID {
		h.ledgerViolation(key, "idempotency key %s acknowledged as order %d and as order %d", r.Key, id, r.OrderID)
		return
	}
	if o, ok := h.orders[r.OrderID]; ok {
		if o.key != r.Key {
			h.ledgerViolation(key, "order %d acknowledged for two idempotency keys: %s and %s", r.OrderID, o.key, r.Key)
		}
		return
	}
	h.byKey[r.Key] = r.OrderID
	h.orders[r.OrderID] = &orderHistory{key: r.Key, locationID: r.LocationID, lines: r.Lines}
}

func (h *tenantHistory) applyChange(r load.Record) {
	if r.Outcome == load.OutcomeAttempt {
		h.pending[r.Key] = r
		return
	}
	if r.Outcome != load.OutcomeAck {
		if r.Outcome == load.OutcomeRefused {
			delete(h.pending, r.Key)
		}
		return
	}
	delete(h.pending, r.Key)
	o, ok := h.orders[r.OrderID]
	if !ok {
		h.ledgerViolation(fmt.Sprintf("order_id=%d", r.OrderID), "%s acknowledged for an order the ledger never acknowledged", r.Op)
		return
	}
	if r.Op == load.OpFulfil {
		o.fulfilled = true
		h.fulfils++
	} else {
		o.cancelled = true
		h.cancels++
	}
	if o.fulfilled && o.cancelled {
		h.ledgerViolation(fmt.Sprintf("order_id=%d", r.OrderID), "order acknowledged both fulfilled and cancelled")
	}
}

// finish marks the state changes that may have applied.
func (h *tenantHistory) finish() {
	h.unresolved = len(h.pending)
	for _, r := range h.pending {
		o, ok := h.orders[r.OrderID]
		if !ok {
			continue
		}
		switch r.Op {
		case load.OpFulfil:
			o.mayFulfil = true
		case load.OpCancel:
			o.mayCancel = true
		}
	}
}

func (h *tenantHistory) count(rep *Report) {
	rep.Orders += len(h.orders)
	rep.Fulfils += h.fulfils
	rep.Cancels += h.cancels
	rep.Refusals += h.refusals
	rep.Unresolved += h.unresolved
}

// readHistory folds the ledger into one history per tenant.
func readHistory(r io.Reader) (map[string]*tenantHistory, error) {
	hist := map[string]*tenantHistory{}
	err := load.ReadLedger(r, func(rec load.Record) error {
		h, ok := hist[rec.Tenant]
		if !ok {
			if err := registry.ValidateTenantID(rec.Tenant); err != nil {
				return err
			}
			h = newTenantHistory(rec.Tenant)
			hist[rec.Tenant] = h
		}
		h.apply(rec)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	for _, h := range hist {
		h.finish()
	}
	return hist, nil
}
