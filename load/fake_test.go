package load

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeOMS implements just enough of the OMS API in memory to exercise the
// generator: catalog, stock, orders, idempotency keys and injected faults.
// The API key is the tenant.
type fakeOMS struct {
	mu       sync.Mutex
	nextID   int64
	stock    map[string]int64 // tenant/product/location -> on_hand
	orders   map[int64]*fakeOrder
	stored   map[string]fakeAnswer // tenant/key -> first success
	attempts map[string]int        // tenant/key -> attempts seen
	// fault, if set, is asked before each request with the number of
	// attempts of its idempotency key so far (1 for the first); a non-zero
	// status is answered instead of serving, with Retry-After retryAfter.
	// dropAfterApply makes the server apply the write and then close the
	// connection without answering.
	fault func(r *http.Request, attempt int) (status int, retryAfter string, dropAfterApply bool)
}

type fakeOrder struct {
	Tenant     string `json:"-"`
	ID         int64  `json:"id"`
	Status     string `json:"status"`
	LocationID int64  `json:"location_id"`
	Lines      []Line `json:"lines"`
}

type fakeAnswer struct {
	status int
	body   []byte
}

func newFakeOMS(t *testing.T) (*fakeOMS, *httptest.Server) {
	f := &fakeOMS{stock: map[string]int64{}, orders: map[int64]*fakeOrder{}, stored: map[string]fakeAnswer{}, attempts: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeOMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tenant := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	key := r.Header.Get(HeaderIdempotencyKey)
	f.mu.Lock()
	defer f.mu.Unlock()
	attempt := 1
	if key != "" {
		f.attempts[tenant+"/"+key]++
		attempt = f.attempts[tenant+"/"+key]
	}
	drop := false
	if f.fault != nil {
		var status int
		var ra string
		status, ra, drop = f.fault(r, attempt)
		if status != 0 {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			writeJSON(w, status, map[string]any{"error": map[string]string{"code": "tenant_unavailable"}})
			return
		}
	}
	if a, ok := f.stored[tenant+"/"+key]; ok && key != "" {
		w.Header().Set(HeaderReplayed, "true")
		w.WriteHeader(a.status)
		w.Write(a.body)
		return
	}
	status, v := f.serve(r, tenant)
	body, _ := json.Marshal(v)
	if key != "" && status < 300 {
		f.stored[tenant+"/"+key] = fakeAnswer{status, body}
	}
	if drop {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(status int, code string) (int, any) {
	return status, map[string]any{"error": map[string]string{"code": code}}
}

func (f *fakeOMS) serve(r *http.Request, tenant string) (int, any) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")[1:]
	var in struct {
		OnHand     int64  `json:"on_hand"`
		LocationID int64  `json:"location_id"`
		Lines      []Line `json:"lines"`
	}
	if r.Body != nil {
		json.NewDecoder(r.Body).Decode(&in)
	}
	switch {
	case r.Method == "POST" && len(parts) == 1 && (parts[0] == "products" || parts[0] == "locations"):
		f.nextID++
		return 201, map[string]any{"id": f.nextID}
	case r.Method == "PUT" && len(parts) == 3 && parts[0] == "inventory":
		f.stock[tenant+"/"+parts[1]+"/"+parts[2]] = in.OnHand
		return 200, map[string]any{"on_hand": in.OnHand}
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "inventory":
		var pos []map[string]int64
		for k := range f.stock {
			s := strings.Split(k, "/")
			if s[0] == tenant {
				p, _ := strconv.ParseInt(s[1], 10, 64)
				l, _ := strconv.ParseInt(s[2], 10, 64)
				pos = append(pos, map[string]int64{"product_id": p, "location_id": l})
			}
		}
		return 200, map[string]any{"positions": pos}
	case r.Method == "POST" && len(parts) == 1 && parts[0] == "orders":
		for _, l := range in.Lines {
			if f.stock[fmt.Sprintf("%s/%d/%d", tenant, l.ProductID, in.LocationID)] < l.Quantity {
				return apiError(409, "insufficient_stock")
			}
		}
		for _, l := range in.Lines {
			f.stock[fmt.Sprintf("%s/%d/%d", tenant, l.ProductID, in.LocationID)] -= l.Quantity
		}
		f.nextID++
		o := &fakeOrder{Tenant: tenant, ID: f.nextID, Status: "reserved", LocationID: in.LocationID, Lines: in.Lines}
		f.orders[o.ID] = o
		return 201, o
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "orders":
		return 200, map[string]any{"orders": []any{}, "next_after": nil}
	}
	id, _ := strconv.ParseInt(parts[1], 10, 64)
	o, ok := f.orders[id]
	if !ok || o.Tenant != tenant {
		return apiError(404, "not_found")
	}
	switch {
	case r.Method == "GET" && len(parts) == 2:
		return 200, o
	case r.Method == "POST" && len(parts) == 3 && o.Status != "reserved":
		return apiError(409, "invalid_state")
	case r.Method == "POST" && len(parts) == 3 && parts[2] == "fulfil":
		o.Status = "fulfilled"
		return 200, o
	case r.Method == "POST" && len(parts) == 3 && parts[2] == "cancel":
		o.Status = "cancelled"
		return 200, o
	}
	return apiError(404, "no_route")
}

// ordersOf returns the fake's orders of tenant by id.
func (f *fakeOMS) ordersOf(tenant string) map[int64]fakeOrder {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int64]fakeOrder{}
	for id, o := range f.orders {
		if o.Tenant == tenant {
			out[id] = *o
		}
	}
	return out
}
