package oms_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/oms"
	"tenantry/tenantsig"
)

func TestServer_Auth(t *testing.T) {
	e := newEnv(t)
	e.must(200, "", "GET", "/healthz", nil)
	e.must(201, "acme", "POST", "/v1/products", map[string]any{"sku": "a", "name": "A"})
	if r := e.must(404, "acme", "GET", "/metrics", nil); r.code() != "not_found" {
		t.Fatalf("public /metrics: %s, want 404 not_found", r.raw)
	}
	resp, err := http.Get(e.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `oms_http_requests_total{code="201",route="POST /v1/products"} 1`) {
		t.Fatalf("admin /metrics lacks the request counter:\n%s", metrics)
	}
	before := e.counts()
	now := time.Now()
	sig := func(key []byte, tenant, stack, method, path string, at time.Time) []string {
		return []string{tenantsig.HeaderTenant, tenant, tenantsig.HeaderSignature, tenantsig.Sign(key, tenant, stack, method, path, at)}
	}
	otherStack := tenantsig.StackKey(tenantsig.RootKey([]byte("test-platform-secret")), "other")
	cases := map[string]func(method, path string) []string{
		"missing": func(string, string) []string { return nil },
		"forged":  func(m, p string) []string { return sig([]byte("wrong"), "acme", testStack, m, p, now) },
		"other tenant sig": func(m, p string) []string {
			h := sig(headerKey, "globex", testStack, m, p, now)
			h[1] = "acme"
			return h
		},
		"expired":          func(m, p string) []string { return sig(headerKey, "acme", testStack, m, p, now.Add(-time.Minute)) },
		"malformed tenant": func(m, p string) []string { return sig(headerKey, "Bad Tenant", testStack, m, p, now) },
		"other stack":      func(m, p string) []string { return sig(otherStack, "acme", "other", m, p, now) },
		"other path":       func(m, p string) []string { return sig(headerKey, "acme", testStack, m, p+"0", now) },
		"other method":     func(m, p string) []string { return sig(headerKey, "acme", testStack, "DELETE", p, now) },
	}
	for name, headers := range cases {
		t.Run(name, func(t *testing.T) {
			for _, m := range [][2]string{{"GET", "/v1/products/1"}, {"POST", "/v1/products"}} {
				r := e.call("", m[0], m[1], map[string]any{"sku": "b", "name": "B"}, headers(m[0], m[1])...)
				if r.status != 401 || r.code() != "unauthorized" {
					t.Fatalf("%s %s: %d %s, want 401 unauthorized", m[0], m[1], r.status, r.raw)
				}
				if !r.close {
					t.Fatalf("%s %s: 401 on a connection kept open", m[0], m[1])
				}
			}
		})
	}
	if after := e.counts(); !maps.Equal(before, after) {
		t.Fatalf("rejected requests changed rows: %v -> %v", before, after)
	}
}

// TestServer_CapturedHeader replays a tenant header captured on its way to
// an instance of one stack: the same request is accepted there within 30 s;
// an instance of another stack, the same instance 31 s later, and another
// method or path are refused.
func TestServer_CapturedHeader(t *testing.T) {
	var clock atomic.Int64 // unix seconds the servers see
	t0 := time.Now().Truncate(time.Second)
	clock.Store(t0.Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	e := newEnvWith(t, func(cfg *oms.Config) { cfg.Now = now })
	keyB := tenantsig.StackKey(tenantsig.RootKey([]byte("test-platform-secret")), "b")
	b, err := oms.NewServer(oms.Config{DB: oms.PoolDB{Pool: e.pool}, HeaderKey: keyB, Stack: "b", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srvB := httptest.NewServer(b)
	t.Cleanup(srvB.Close)
	id := e.must(201, "acme", "POST", "/v1/products", map[string]any{"sku": "a", "name": "A"}).id()
	path := pathf("/v1/products/%d", id)
	captured := []string{tenantsig.HeaderTenant, "acme",
		tenantsig.HeaderSignature, tenantsig.Sign(headerKey, "acme", testStack, "GET", path, t0)}

	send := func(base, method, path string) int {
		req, err := http.NewRequest(method, base+path, strings.NewReader(`{"sku":"z","name":"Z"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(captured[0], captured[1])
		req.Header.Set(captured[2], captured[3])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	before := e.counts()
	for _, tc := range []struct {
		name         string
		base, method string
		path         string
		after        time.Duration
		want         int
	}{
		{"same request, same stack", e.srv.URL, "GET", path, 0, 200},
		{"same request, 30s later", e.srv.URL, "GET", path, 30 * time.Second, 200},
		{"another stack", srvB.URL, "GET", path, 0, 401},
		{"31s later", e.srv.URL, "GET", path, 31 * time.Second, 401},
		{"another method", e.srv.URL, "POST", "/v1/products", 0, 401},
		{"another path", e.srv.URL, "GET", pathf("/v1/products/%d", id+1), 0, 401},
	} {
		clock.Store(t0.Add(tc.after).Unix())
		if got := send(tc.base, tc.method, tc.path); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if after := e.counts(); !maps.Equal(before, after) {
		t.Fatalf("replayed requests changed rows: %v -> %v", before, after)
	}
}

func TestServer_Validation(t *testing.T) {
	e := newEnv(t)
	product, location := e.stocked("acme", "p1", 10)
	e.must(201, "acme", "POST", "/v1/orders", map[string]any{"location_id": location, "lines": []any{map[string]any{"product_id": product, "quantity": 1}}})
	before := e.counts()
	manyLines := make([]any, 101)
	for i := range manyLines {
		manyLines[i] = map[string]any{"product_id": i + 1, "quantity": 1}
	}
	inv := pathf("/v1/inventory/%d/%d", product, location)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
		headers            []string
	}{
		{"invalid json", "POST", "/v1/products", `{"sku":`, 400, "invalid_json", nil},
		{"empty body", "POST", "/v1/products", ``, 400, "invalid_json", nil},
		{"two values", "POST", "/v1/products", `{"sku":"x","name":"X"} {}`, 400, "invalid_json", nil},
		{"unknown field", "POST", "/v1/products", `{"sku":"x","name":"X","price":1}`, 400, "unknown_field", nil},
		{"wrong type", "POST", "/v1/products", `{"sku":1,"name":"X"}`, 400, "invalid_request", nil},
		{"field name in capitals", "POST", "/v1/orders", pathf(`{"LOCATION_ID":%d,"LINES":[{"PRODUCT_ID":%d,"QUANTITY":1}]}`, location, product), 400, "unknown_field", nil},
		{"nested field name in capitals", "POST", "/v1/orders", pathf(`{"location_id":%d,"lines":[{"product_id":%d,"Quantity":1}]}`, location, product), 400, "unknown_field", nil},
		{"duplicate key", "POST", "/v1/products", `{"sku":"dup","name":"X","name":"Y"}`, 400, "invalid_json", nil},
		{"duplicate key by escape", "POST", "/v1/products", `{"sku":"dup","name":"X","n\u0061me":"Y"}`, 400, "invalid_json", nil},
		{"invalid UTF-8", "POST", "/v1/products", "{\"sku\":\"utf\",\"name\":\"x\xffy\"}", 400, "invalid_json", nil},
		{"lone surrogate", "POST", "/v1/products", `{"sku":"utf","name":"x\ud800y"}`, 400, "invalid_json", nil},
		{"too large", "POST", "/v1/products", `{"sku":"x","name":"` + strings.Repeat("a", oms.MaxBodyBytes) + `"}`, 413, "too_large", nil},
		{"missing sku", "POST", "/v1/products", map[string]any{"name": "X"}, 400, "invalid_request", nil},
		{"blank name", "POST", "/v1/products", map[string]any{"sku": "x", "name": "  "}, 400, "invalid_request", nil},
		{"NUL in name", "POST", "/v1/products", map[string]any{"sku": "x", "name": "a\u0000b"}, 400, "invalid_request", nil},
		{"long sku", "POST", "/v1/products", map[string]any{"sku": strings.Repeat("x", 101), "name": "X"}, 400, "invalid_request", nil},
		{"duplicate sku", "POST", "/v1/products", map[string]any{"sku": "p1", "name": "X"}, 409, "conflict", nil},
		{"duplicate code", "POST", "/v1/locations", map[string]any{"code": "loc-p1", "name": "X"}, 409, "conflict", nil},
		{"bad email", "POST", "/v1/customers", map[string]any{"email": "nobody", "name": "X"}, 400, "invalid_request", nil},
		{"bad id", "GET", "/v1/products/abc", nil, 400, "invalid_request", nil},
		{"zero id", "GET", "/v1/orders/0", nil, 400, "invalid_request", nil},
		{"negative id", "GET", "/v1/locations/-3", nil, 400, "invalid_request", nil},
		{"unknown product", "GET", "/v1/products/999999", nil, 404, "not_found", nil},
		{"unknown route", "GET", "/v1/nothing", nil, 404, "not_found", nil},
		{"negative on_hand", "PUT", inv, map[string]any{"on_hand": -1}, 400, "invalid_request", nil},
		{"missing on_hand", "PUT", inv, map[string]any{}, 400, "invalid_request", nil},
		{"fractional on_hand", "PUT", inv, `{"on_hand": 1.5}`, 400, "invalid_request", nil},
		{"inventory unknown product", "PUT", pathf("/v1/inventory/999999/%d", location), map[string]any{"on_hand": 1}, 404, "not_found", nil},
		{"inventory bad location", "PUT", pathf("/v1/inventory/%d/x", product), map[string]any{"on_hand": 1}, 400, "invalid_request", nil},
		{"zero receipt", "POST", inv + "/receipts", map[string]any{"quantity": 0}, 400, "invalid_request", nil},
		{"negative receipt", "POST", inv + "/receipts", map[string]any{"quantity": -5}, 400, "invalid_request", nil},
		{"inventory bad filter", "GET", "/v1/inventory?product_id=x", nil, 400, "invalid_request", nil},
		{"order no lines", "POST", "/v1/orders", map[string]any{"location_id": location, "lines": []any{}}, 400, "invalid_request", nil},
		{"order too many lines", "POST", "/v1/orders", map[string]any{"location_id": location, "lines": manyLines}, 400, "invalid_request", nil},
		{"order zero quantity", "POST", "/v1/orders", map[string]any{"location_id": location, "lines": []any{map[string]any{"product_id": product, "quantity": 0}}}, 400, "invalid_request", nil},
		{"order huge quantity", "POST", "/v1/orders", map[string]any{"location_id": location, "lines": []any{map[string]any{"product_id": product, "quantity": 10001}}}, 400, "invalid_request", nil},
		{"order duplicate product", "POST", "/v1/orders", map[string]any{"location_id": location, "lines": []any{
			map[string]any{"product_id": product, "quantity": 1}, map[string]any{"product_id": product, "quantity": 1}}}, 400, "invalid_request", nil},
		{"order no location", "POST", "/v1/orders", map[string]any{"lines": []any{map[string]any{"product_id": product, "quantity": 1}}}, 400, "invalid_request", nil},
		{"order unknown location", "POST", "/v1/orders", map[string]any{"location_id": 999999, "lines": []any{map[string]any{"product_id": product, "quantity": 1}}}, 404, "not_found", nil},
		{"order unknown customer", "POST", "/v1/orders", map[string]any{"customer_id": 999999, "location_id": location, "lines": []any{map[string]any{"product_id": product, "quantity": 1}}}, 404, "not_found", nil},
		{"order unknown product", "POST", "/v1/orders", map[string]any{"location_id": location, "lines": []any{map[string]any{"product_id": 999999, "quantity": 1}}}, 404, "not_found", nil},
		{"list bad status", "GET", "/v1/orders?status=shipped", nil, 400, "invalid_request", nil},
		{"list limit too big", "GET", "/v1/orders?limit=501", nil, 400, "invalid_request", nil},
		{"list limit zero", "GET", "/v1/orders?limit=0", nil, 400, "invalid_request", nil},
		{"list bad after", "GET", "/v1/orders?after=-1", nil, 400, "invalid_request", nil},
		{"fulfil with fields", "POST", "/v1/orders/1/fulfil", `{"force":true}`, 400, "unknown_field", nil},
		{"long idempotency key", "POST", "/v1/products", map[string]any{"sku": "k", "name": "K"}, 400, "invalid_request",
			[]string{oms.HeaderIdempotencyKey, strings.Repeat("k", 201)}},
		{"non-ASCII idempotency key", "POST", "/v1/products", map[string]any{"sku": "k", "name": "K"}, 400, "invalid_request",
			[]string{oms.HeaderIdempotencyKey, "clé"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call("acme", c.method, c.path, c.body, c.headers...)
			if r.status != c.status || r.code() != c.code {
				t.Fatalf("%s %s: %d %s, want %d %s", c.method, c.path, r.status, r.raw, c.status, c.code)
			}
			if msg, _ := r.body["error"].(map[string]any)["message"].(string); msg == "" {
				t.Fatalf("error without message: %s", r.raw)
			}
		})
	}
	if after := e.counts(); !maps.Equal(before, after) {
		t.Fatalf("rejected requests changed rows: %v -> %v", before, after)
	}
	if p := e.position("acme", product, location); p != [3]int64{9, 1, 0} {
		t.Fatalf("position = %v, want [9 1 0]", p)
	}
}

func TestServer_CrossTenant(t *testing.T) {
	e := newEnv(t)
	product, location := e.stocked("acme", "p1", 10)
	customer := e.must(201, "acme", "POST", "/v1/customers", map[string]any{"email": "a@acme.test", "name": "A"}).id()
	order := e.must(201, "acme", "POST", "/v1/orders", map[string]any{"customer_id": customer, "location_id": location,
		"lines": []any{map[string]any{"product_id": product, "quantity": 2}}}).id()
	// globex has its own stock, so a 404 can only come from isolation.
	gp, gl := e.stocked("globex", "p1", 10)
	before := e.counts()
	line := func(p int64) []any { return []any{map[string]any{"product_id": p, "quantity": 1}} }
	cases := []struct {
		method, path string
		body         any
	}{
		{"GET", pathf("/v1/products/%d", product), nil},
		{"GET", pathf("/v1/locations/%d", location), nil},
		{"GET", pathf("/v1/customers/%d", customer), nil},
		{"GET", pathf("/v1/orders/%d", order), nil},
		{"POST", pathf("/v1/orders/%d/fulfil", order), nil},
		{"POST", pathf("/v1/orders/%d/cancel", order), nil},
		{"PUT", pathf("/v1/inventory/%d/%d", product, location), map[string]any{"on_hand": 0}},
		{"POST", pathf("/v1/inventory/%d/%d/receipts", product, location), map[string]any{"quantity": 1}},
		{"PUT", pathf("/v1/inventory/%d/%d", gp, location), map[string]any{"on_hand": 0}},
		{"POST", "/v1/orders", map[string]any{"location_id": location, "lines": line(gp)}},
		{"POST", "/v1/orders", map[string]any{"location_id": gl, "lines": line(product)}},
		{"POST", "/v1/orders", map[string]any{"customer_id": customer, "location_id": gl, "lines": line(gp)}},
	}
	for _, c := range cases {
		r := e.call("globex", c.method, c.path, c.body)
		if r.status != 404 || r.code() != "not_found" {
			t.Errorf("globex %s %s: %d %s, want 404 not_found", c.method, c.path, r.status, r.raw)
		}
	}
	if after := e.counts(); !maps.Equal(before, after) {
		t.Fatalf("cross-tenant requests changed rows: %v -> %v", before, after)
	}
	lists := map[string]string{"/v1/orders": "orders", "/v1/inventory": "positions"}
	for p, key := range lists {
		r := e.must(200, "globex", "GET", p, nil)
		for _, item := range r.body[key].([]any) {
			if id, _ := item.(map[string]any)["id"].(float64); int64(id) == order {
				t.Errorf("globex lists acme's order: %s", r.raw)
			}
			if pid, _ := item.(map[string]any)["product_id"].(float64); int64(pid) == product {
				t.Errorf("globex lists acme's position: %s", r.raw)
			}
		}
	}
	if p := e.position("acme", product, location); p != [3]int64{8, 2, 0} {
		t.Fatalf("acme position = %v, want [8 2 0]", p)
	}
}

func TestServer_Orders(t *testing.T) {
	e := newEnv(t)
	p1, loc := e.stocked("acme", "p1", 5)
	p2 := e.must(201, "acme", "POST", "/v1/products", map[string]any{"sku": "p2", "name": "P2"}).id()
	pos := e.must(200, "acme", "POST", pathf("/v1/inventory/%d/%d/receipts", p2, loc), map[string]any{"quantity": 3})
	if pos.body["on_hand"] != float64(3) || pos.body["reserved"] != float64(0) || pos.body["product_id"] != float64(p2) {
		t.Fatalf("receipt position: %s", pos.raw)
	}

	order := func(q1, q2 int) map[string]any {
		return map[string]any{"location_id": loc, "lines": []any{
			map[string]any{"product_id": p2, "quantity": q2}, map[string]any{"product_id": p1, "quantity": q1}}}
	}
	t.Run("insufficient stock reserves nothing", func(t *testing.T) {
		before := e.counts()
		r := e.must(409, "acme", "POST", "/v1/orders", order(1, 4))
		if r.code() != "insufficient_stock" {
			t.Fatalf("code %s", r.raw)
		}
		if after := e.counts(); !maps.Equal(before, after) {
			t.Fatalf("rows changed: %v -> %v", before, after)
		}
		if a, b := e.position("acme", p1, loc), e.position("acme", p2, loc); a != [3]int64{5, 0, 0} || b != [3]int64{3, 0, 0} {
			t.Fatalf("positions %v %v", a, b)
		}
	})
	t.Run("no position at the location is insufficient stock", func(t *testing.T) {
		loc2 := e.must(201, "acme", "POST", "/v1/locations", map[string]any{"code": "empty", "name": "Empty"}).id()
		r := e.must(409, "acme", "POST", "/v1/orders", map[string]any{"location_id": loc2, "lines": []any{map[string]any{"product_id": p1, "quantity": 1}}})
		if r.code() != "insufficient_stock" {
			t.Fatalf("code %s", r.raw)
		}
	})

	r := e.must(201, "acme", "POST", "/v1/orders", order(2, 3))
	id := r.id()
	if r.body["status"] != "reserved" || r.body["customer_id"] != nil || r.body["location_id"] != float64(loc) || r.body["created_at"] == "" {
		t.Fatalf("created order: %s", r.raw)
	}
	if lines := r.body["lines"].([]any); len(lines) != 2 || lines[0].(map[string]any)["product_id"] != float64(p2) {
		t.Fatalf("lines must keep the request's order: %s", r.raw)
	}
	if got := e.must(200, "acme", "GET", pathf("/v1/orders/%d", id), nil); string(got.raw) != string(r.raw) {
		t.Fatalf("GET order = %s, POST returned %s", got.raw, r.raw)
	}
	if a, b := e.position("acme", p1, loc), e.position("acme", p2, loc); a != [3]int64{3, 2, 0} || b != [3]int64{0, 3, 0} {
		t.Fatalf("after reserve: %v %v", a, b)
	}

	f := e.must(200, "acme", "POST", pathf("/v1/orders/%d/fulfil", id), nil)
	if f.body["status"] != "fulfilled" {
		t.Fatalf("fulfil: %s", f.raw)
	}
	if a, b := e.position("acme", p1, loc), e.position("acme", p2, loc); a != [3]int64{3, 0, 2} || b != [3]int64{0, 0, 3} {
		t.Fatalf("after fulfil: %v %v", a, b)
	}
	before := e.counts()
	for _, action := range []string{"fulfil", "cancel"} {
		if r := e.must(409, "acme", "POST", pathf("/v1/orders/%d/%s", id, action), nil); r.code() != "invalid_state" {
			t.Fatalf("%s of a fulfilled order: %s", action, r.raw)
		}
	}

	customer := e.must(201, "acme", "POST", "/v1/customers", map[string]any{"email": "c@acme.test", "name": "C"}).id()
	c := e.must(201, "acme", "POST", "/v1/orders", map[string]any{"customer_id": customer, "location_id": loc,
		"lines": []any{map[string]any{"product_id": p1, "quantity": 3}}})
	if c.body["customer_id"] != float64(customer) {
		t.Fatalf("customer order: %s", c.raw)
	}
	if r := e.must(200, "acme", "POST", pathf("/v1/orders/%d/cancel", c.id()), `{}`); r.body["status"] != "cancelled" {
		t.Fatalf("cancel: %s", r.raw)
	}
	if a := e.position("acme", p1, loc); a != [3]int64{3, 0, 2} {
		t.Fatalf("after cancel: %v", a)
	}
	for _, action := range []string{"fulfil", "cancel"} {
		if r := e.must(409, "acme", "POST", pathf("/v1/orders/%d/%s", c.id(), action), nil); r.code() != "invalid_state" {
			t.Fatalf("%s of a cancelled order: %s", action, r.raw)
		}
	}
	e.must(404, "acme", "POST", "/v1/orders/999999/fulfil", nil)
	after := e.counts()
	if after["fulfilments"] != before["fulfilments"] || after["orders"] != before["orders"]+1 {
		t.Fatalf("rows: %v -> %v", before, after)
	}

	set := e.must(200, "acme", "PUT", pathf("/v1/inventory/%d/%d", p1, loc), map[string]any{"on_hand": 10})
	if set.body["on_hand"] != float64(10) || set.body["shipped"] != float64(2) {
		t.Fatalf("set: %s", set.raw)
	}
	list := e.must(200, "acme", "GET", pathf("/v1/inventory?product_id=%d&location_id=%d", p1, loc), nil)
	if ps := list.body["positions"].([]any); len(ps) != 1 || ps[0].(map[string]any)["on_hand"] != float64(10) {
		t.Fatalf("inventory list: %s", list.raw)
	}
	e.checkLedger()
}

func TestServer_ListOrders(t *testing.T) {
	e := newEnv(t)
	p, loc := e.stocked("acme", "p1", 100)
	var ids []int64
	for i := 0; i < 7; i++ {
		ids = append(ids, e.must(201, "acme", "POST", "/v1/orders", map[string]any{"location_id": loc,
			"lines": []any{map[string]any{"product_id": p, "quantity": 1}}}).id())
	}
	e.must(200, "acme", "POST", pathf("/v1/orders/%d/cancel", ids[1]), nil)
	e.must(200, "acme", "POST", pathf("/v1/orders/%d/cancel", ids[4]), nil)
	e.stocked("globex", "p1", 100) // another tenant's data must not show

	page := func(query string) (got []int64, next any) {
		r := e.must(200, "acme", "GET", "/v1/orders"+query, nil)
		for _, o := range r.body["orders"].([]any) {
			got = append(got, int64(o.(map[string]any)["id"].(float64)))
		}
		return got, r.body["next_after"]
	}
	var all []int64
	next := any(float64(0))
	for pages := 0; next != nil; pages++ {
		if pages > 4 {
			t.Fatal("pagination does not end")
		}
		var got []int64
		got, next = page(pathf("?limit=3&after=%d", int64(next.(float64))))
		if len(got) > 3 {
			t.Fatalf("page of %d orders, limit 3", len(got))
		}
		all = append(all, got...)
	}
	if len(all) != len(ids) {
		t.Fatalf("paged ids %v, want %v", all, ids)
	}
	for i := range ids {
		if all[i] != ids[i] {
			t.Fatalf("paged ids %v, want %v", all, ids)
		}
	}
	if got, next := page("?status=cancelled"); len(got) != 2 || got[0] != ids[1] || got[1] != ids[4] || next != nil {
		t.Fatalf("cancelled: %v next %v", got, next)
	}
	if got, next := page(pathf("?status=reserved&limit=2&after=%d", ids[1])); len(got) != 2 || got[0] != ids[2] || got[1] != ids[3] || next != float64(ids[3]) {
		t.Fatalf("reserved page: %v next %v", got, next)
	}
	if got, next := page(""); len(got) != 7 || next != nil {
		t.Fatalf("default page: %v next %v", got, next)
	}
}

// errPaused and errUnknown stand for the router's errors.
var (
	errPaused  = errors.New("tenant paused")
	errUnknown = errors.New("tenant unknown")
)

// gatedDB fails transactions of tenants "paused" and "ghost" before they
// start, as the tenant router does, and passes the rest to a real database.
type gatedDB struct{ oms.DB }

func (d gatedDB) gate(tenant string) error {
	switch tenant {
	case "paused":
		return errPaused
	case "ghost":
		return errUnknown
	}
	return nil
}

func (d gatedDB) Tx(ctx context.Context, tenant string, fn func(pgx.Tx) error) error {
	if err := d.gate(tenant); err != nil {
		return err
	}
	return d.DB.Tx(ctx, tenant, fn)
}

func (d gatedDB) ReadTx(ctx context.Context, tenant string, fn func(pgx.Tx) error) error {
	if err := d.gate(tenant); err != nil {
		return err
	}
	return d.DB.ReadTx(ctx, tenant, fn)
}

func TestServer_TenantErrors(t *testing.T) {
	e := newEnvWith(t, func(cfg *oms.Config) {
		cfg.DB = gatedDB{cfg.DB}
		cfg.Retryable = func(err error) bool { return errors.Is(err, errPaused) }
		cfg.NotFound = func(err error) bool { return errors.Is(err, errUnknown) }
	})
	for _, m := range [][2]string{{"GET", "/v1/orders"}, {"POST", "/v1/products"}} {
		r := e.call("paused", m[0], m[1], map[string]any{"sku": "a", "name": "A"})
		if r.status != 503 || r.code() != "tenant_unavailable" || r.header.Get("Retry-After") != "1" {
			t.Fatalf("paused %s: %d %v %s", m[0], r.status, r.header, r.raw)
		}
		if r := e.call("ghost", m[0], m[1], map[string]any{"sku": "a", "name": "A"}); r.status != 404 || r.code() != "tenant_not_found" {
			t.Fatalf("ghost %s: %d %s", m[0], r.status, r.raw)
		}
	}
	e.must(201, "acme", "POST", "/v1/products", map[string]any{"sku": "a", "name": "A"})
	if got := e.counts()["products"]; got != 1 {
		t.Fatalf("%d products, want 1", got)
	}
}

var _ http.Handler = (*oms.Server)(nil)

// TestServer_InventoryPages: GET /v1/inventory answers at most limit
// positions (default DefaultPageSize, at most MaxPageSize) and a cursor to
// the next page; following the cursors lists every position once.
func TestServer_InventoryPages(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := range 7 {
		p, l := e.stocked("acme", pathf("pg%d", i), 1)
		want = append(want, pathf("%d.%d", p, l))
	}
	e.stocked("globex", "other", 1)
	var got []string
	after, pages := "", 0
	for {
		path := "/v1/inventory?limit=3"
		if after != "" {
			path += "&after=" + after
		}
		r := e.must(200, "acme", "GET", path, nil)
		pages++
		ps := r.body["positions"].([]any)
		if len(ps) > 3 {
			t.Fatalf("page of %d positions with limit 3", len(ps))
		}
		for _, p := range ps {
			m := p.(map[string]any)
			got = append(got, pathf("%d.%d", int64(m["product_id"].(float64)), int64(m["location_id"].(float64))))
		}
		next, _ := r.body["next_after"].(string)
		if next == "" {
			break
		}
		after = next
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages listing %v, want 3 pages listing %v", pages, got, want)
	}
	for _, q := range []string{"limit=0", pathf("limit=%d", oms.MaxPageSize+1), "limit=x", "after=1", "after=x.1", "after=1.-1", "after=.", "after=1.2.3"} {
		if r := e.call("acme", "GET", "/v1/inventory?"+q, nil); r.status != 400 || r.code() != "invalid_request" {
			t.Errorf("?%s: %d %s, want 400 invalid_request", q, r.status, r.raw)
		}
	}
}
