package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
)

// SetupOptions says what Setup creates per tenant. Zero values mean the
// documented defaults.
type SetupOptions struct {
	Products  int   // default 5
	Locations int   // default 2
	Stock     int64 // on_hand set for every product at every location; default 1000
}

// TenantCatalog is what one tenant's orders are placed against.
type TenantCatalog struct {
	Products  []int64 `json:"products"`
	Locations []int64 `json:"locations"`
}

// Catalog maps each tenant to its catalog.
type Catalog map[string]TenantCatalog

// Setup creates, for every target, products and locations and sets the
// stock of every product at every location, through the API with
// idempotency keys derived from cfg.Seed (running Setup again with the same
// seed replays the same entities). Every created entity and stock level is
// written to the ledger.
func Setup(ctx context.Context, cfg Config, opts SetupOptions) (Catalog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if opts.Products <= 0 {
		opts.Products = 5
	}
	if opts.Locations <= 0 {
		opts.Locations = 2
	}
	if opts.Stock <= 0 {
		opts.Stock = 1000
	}
	w := newWriter(cfg, nil)
	cat := Catalog{}
	for _, t := range cfg.Targets {
		tc, err := w.setupTenant(ctx, t, opts, fmt.Sprintf("setup-%x-%s", uint64(cfg.Seed), t.Tenant))
		if err != nil {
			return nil, fmt.Errorf("set up tenant %s: %w", t.Tenant, err)
		}
		cat[t.Tenant] = tc
	}
	return cat, nil
}

func (w *writer) setupTenant(ctx context.Context, t Target, opts SetupOptions, keyBase string) (TenantCatalog, error) {
	var tc TenantCatalog
	var err error
	if tc.Products, err = w.createN(ctx, t, OpProduct, opts.Products, keyBase); err != nil {
		return tc, err
	}
	if tc.Locations, err = w.createN(ctx, t, OpLocation, opts.Locations, keyBase); err != nil {
		return tc, err
	}
	for _, p := range tc.Products {
		for _, l := range tc.Locations {
			onHand := opts.Stock
			rec := Record{Op: OpStock, ProductID: p, LocationID: l, OnHand: &onHand, Key: fmt.Sprintf("%s-stock-%d-%d", keyBase, p, l)}
			path := fmt.Sprintf("/v1/inventory/%d/%d", p, l)
			o, err := w.write(ctx, t, rec, http.MethodPut, path, map[string]any{"on_hand": onHand}, http.StatusOK)
			if err != nil {
				return tc, err
			}
			if o != OutcomeAck {
				return tc, fmt.Errorf("PUT %s: %s", path, o)
			}
		}
	}
	return tc, nil
}

// createN creates n products or locations named after keyBase.
func (w *writer) createN(ctx context.Context, t Target, op Op, n int, keyBase string) ([]int64, error) {
	path, field, label := "/v1/products", "sku", "Product"
	if op == OpLocation {
		path, field, label = "/v1/locations", "code", "Location"
	}
	ids := make([]int64, 0, n)
	for i := range n {
		name := fmt.Sprintf("%s-%s-%d", keyBase, op, i)
		body := map[string]any{field: name, "name": fmt.Sprintf("%s %d", label, i)}
		id, err := w.create(ctx, t, Record{Op: op, Name: name, Key: name}, path, body)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// create POSTs body to path and returns the id of the created entity,
// writing it to the ledger record's ProductID or LocationID.
func (w *writer) create(ctx context.Context, t Target, rec Record, path string, body any) (int64, error) {
	var id int64
	_, o, err := w.writeWith(ctx, t, rec, http.MethodPost, path, body, func(resp Response, ack *Record) error {
		var created struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(resp.Body, &created); err != nil || created.ID == 0 {
			return fmt.Errorf("POST %s: response has no id: %s", path, resp.Body)
		}
		id = created.ID
		if rec.Op == OpProduct {
			ack.ProductID = id
		} else {
			ack.LocationID = id
		}
		return nil
	}, http.StatusCreated, http.StatusOK)
	if err == nil && o != OutcomeAck {
		err = fmt.Errorf("POST %s: %s", path, o)
	}
	return id, err
}

// Discover reads each target's inventory positions through the API and
// returns the catalog they span, for runs against tenants set up earlier.
func Discover(ctx context.Context, cfg Config) (Catalog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := newClient(cfg, nil)
	cat := Catalog{}
	for _, t := range cfg.Targets {
		ps, ls := map[int64]bool{}, map[int64]bool{}
		for after := ""; ; {
			page, err := readInventoryPage(ctx, c, t, after)
			if err != nil {
				return nil, fmt.Errorf("discover tenant %s: %w", t.Tenant, err)
			}
			for _, p := range page.Positions {
				ps[p.ProductID], ls[p.LocationID] = true, true
			}
			if page.NextAfter == nil {
				break
			}
			after = *page.NextAfter
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("discover tenant %s: no inventory positions (run with setup first)", t.Tenant)
		}
		cat[t.Tenant] = TenantCatalog{Products: sortedKeys(ps), Locations: sortedKeys(ls)}
	}
	return cat, nil
}

// inventoryPage is one page of GET /v1/inventory.
type inventoryPage struct {
	Positions []struct {
		ProductID  int64 `json:"product_id"`
		LocationID int64 `json:"location_id"`
	} `json:"positions"`
	NextAfter *string `json:"next_after"`
}

// readInventoryPage reads the page of t's inventory after the cursor after
// ("" for the first).
func readInventoryPage(ctx context.Context, c *client, t Target, after string) (inventoryPage, error) {
	path := fmt.Sprintf("/v1/inventory?limit=%d", inventoryPageSize)
	if after != "" {
		path += "&after=" + url.QueryEscape(after)
	}
	var page inventoryPage
	resp, err := c.do(ctx, http.MethodGet, path, t, "", nil)
	if err != nil {
		return page, err
	}
	if resp.Status != http.StatusOK {
		return page, &RequestError{Method: http.MethodGet, Path: path, Status: resp.Status, APICode: resp.APICode, Attempts: resp.Attempts}
	}
	if err := json.Unmarshal(resp.Body, &page); err != nil {
		return page, fmt.Errorf("decode inventory: %w", err)
	}
	return page, nil
}

// inventoryPageSize is the page size Discover asks for: the OMS's maximum.
const inventoryPageSize = 500

func sortedKeys(m map[int64]bool) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
