package oms_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"tenantry/gateway"
	"tenantry/httpedge"
	"tenantry/jsonapi/jsonapitest"
	"tenantry/registry"
	"tenantry/tenantsig"
)

// TestServer_HalfClose: a client that closes its sending side right after
// its request (as `nc -N` or a shell pipe does) still reads the answer, and
// the answer tells the truth: a 2xx only when the work was done, and work
// that was done is answered. Shown straight to an OMS instance and through
// the gateway in front of it.
func TestServer_HalfClose(t *testing.T) {
	e := newEnv(t)
	product, location := e.stocked("acme", "p1", 1000)
	direct := jsonapitest.MustServe(t, e.handler, httpedge.Limits{})

	const apiKey = "tk_halfclose_acme"
	sum := sha256.Sum256([]byte(apiKey))
	snap := &registry.Snapshot{
		Version:    1,
		Stacks:     map[string]*registry.Stack{testStack: {Name: testStack, Version: "v1", Status: registry.StackReady, Instances: []registry.Instance{{URL: "http://" + direct, Healthy: true}}}},
		Routes:     map[string]*registry.Route{registry.DefaultRoute: {Backends: []registry.Backend{{Stack: testStack, Weight: 1}}}},
		KeysByHash: map[string]*registry.APIKey{hex.EncodeToString(sum[:]): {ID: "k", Tenant: "acme"}},
	}
	g, err := gateway.New(gateway.Config{Source: registry.StaticSource{Snapshot: snap}, HeaderKey: headerRoot})
	if err != nil {
		t.Fatal(err)
	}
	viaGateway := jsonapitest.MustServe(t, g, httpedge.Limits{})

	paths := []struct {
		name, addr string
		auth       func(method, target string) string
	}{
		{"direct", direct, func(method, target string) string {
			return fmt.Sprintf("%s: acme\r\n%s: %s\r\n", tenantsig.HeaderTenant, tenantsig.HeaderSignature,
				tenantsig.Sign(headerKey, "acme", testStack, method, target, time.Now()))
		}},
		{"gateway", viaGateway, func(string, string) string { return "Authorization: Bearer " + apiKey + "\r\n" }},
	}
	order := func(int) string {
		return pathf(`{"location_id":%d,"lines":[{"product_id":%d,"quantity":1}]}`, location, product)
	}
	n := 0
	for _, p := range paths {
		for _, tc := range []struct {
			name, method, path string
			body, extra        func(n int) string // of the request's sequence number
			status             int
			creates            string // the table a 2xx adds a row to
		}{
			{"create product", "POST", "/v1/products", func(n int) string { return pathf(`{"sku":"hc-%d","name":"Half"}`, n) }, nil, 201, "products"},
			{"place order", "POST", "/v1/orders", order, nil, 201, "orders"},
			{"place order with an idempotency key", "POST", "/v1/orders", order,
				func(n int) string { return pathf("Idempotency-Key: hc-%d\r\n", n) }, 201, "orders"},
			{"read a product", "GET", pathf("/v1/products/%d", product), nil, nil, 200, ""},
			{"refused body", "POST", "/v1/products", func(n int) string { return pathf(`{"sku":"hc-%d","SKU":"x"}`, n) }, nil, 400, ""},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				n++
				var body, extra string
				if tc.body != nil {
					body = tc.body(n)
				}
				if tc.extra != nil {
					extra = tc.extra(n)
				}
				before := e.counts()
				raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: oms\r\n%s%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					tc.method, tc.path, p.auth(tc.method, tc.path), extra, len(body), body)
				ans, answered := jsonapitest.Send(t, p.addr, raw, true)
				after := e.counts()
				if !answered {
					t.Fatalf("no answer to a request the server could serve")
				}
				if ans.Status != tc.status {
					t.Fatalf("answer %d %s, want %d", ans.Status, ans.Body, tc.status)
				}
				for table, c := range after {
					want := before[table]
					if table == tc.creates {
						want++
					}
					if c != want && (table == "products" || table == "orders") {
						t.Errorf("%s: %d rows -> %d, want %d", table, before[table], c, want)
					}
				}
				if ans.Status/100 == 2 {
					var out map[string]any
					if err := json.Unmarshal(ans.Body, &out); err != nil || out["id"] == nil {
						t.Errorf("a %d without the object: %s", ans.Status, ans.Body)
					}
				}
			})
		}
	}
}
