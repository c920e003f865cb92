package oms_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"tenantry/httpedge"
	"tenantry/jsonapi/jsonapitest"
	"tenantry/tenantsig"
)

// TestServer_Edges: every answer of the OMS, including those net/http
// would give by itself in text or HTML, is JSON with a stable code; ids are
// digits only.
func TestServer_Edges(t *testing.T) {
	e := newEnv(t)
	product, location := e.stocked("acme", "p1", 10)
	order := e.must(201, "acme", "POST", "/v1/orders", map[string]any{"location_id": location,
		"lines": []any{map[string]any{"product_id": product, "quantity": 1}}}).id()
	addr := jsonapitest.MustServe(t, e.handler, httpedge.Limits{})
	admin := jsonapitest.MustServe(t, e.handler.AdminHandler(), httpedge.Limits{})
	signed := func(method, target string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: oms\r\n%s: acme\r\n%s: %s\r\n\r\n", method, target,
			tenantsig.HeaderTenant, tenantsig.HeaderSignature, tenantsig.Sign(headerKey, "acme", testStack, method, target, time.Now()))
	}
	huge := strings.Repeat("a", 70<<10)
	for _, tc := range []struct {
		name, addr, raw string
		status          int
		code, allow     string
	}{
		{"order id", addr, signed("GET", pathf("/v1/orders/%d", order)), 200, "", ""},
		{"order id with a plus", addr, signed("GET", pathf("/v1/orders/+%d", order)), 400, "invalid_request", ""},
		{"order id with an escaped plus", addr, signed("GET", pathf("/v1/orders/%%2B%d", order)), 400, "invalid_request", ""},
		{"order id with a leading zero", addr, signed("GET", pathf("/v1/orders/0%d", order)), 400, "invalid_request", ""},
		{"order id with a space", addr, signed("GET", pathf("/v1/orders/%%20%d", order)), 400, "invalid_request", ""},
		{"limit with a plus", addr, signed("GET", "/v1/orders?limit=%2B5"), 400, "invalid_request", ""},
		{"after with a leading zero", addr, signed("GET", "/v1/orders?after=01"), 400, "invalid_request", ""},
		{"product filter with a plus", addr, signed("GET", pathf("/v1/inventory?product_id=%%2B%d", product)), 400, "invalid_request", ""},
		{"double slash", addr, signed("GET", "//metrics"), 404, "not_found", ""},
		{"dot dot", addr, signed("GET", "/v1/../admin"), 404, "not_found", ""},
		{"dot", addr, signed("GET", "/v1/./orders"), 404, "not_found", ""},
		{"escaped dot dot", addr, signed("GET", "/v1/%2e%2e/orders"), 404, "not_found", ""},
		{"unknown path", addr, signed("GET", "/v1/nothing"), 404, "not_found", ""},
		{"metrics on the public listener", addr, signed("GET", "/metrics"), 404, "not_found", ""},
		{"DELETE on a collection", addr, signed("DELETE", "/v1/orders"), 405, "method_not_allowed", "GET, HEAD, POST"},
		{"unknown method", addr, signed("BREW", pathf("/v1/orders/%d", order)), 405, "method_not_allowed", "GET, HEAD"},
		{"PUT on an action", addr, signed("PUT", pathf("/v1/orders/%d/fulfil", order)), 405, "method_not_allowed", "POST"},
		{"OPTIONS *", addr, "OPTIONS * HTTP/1.1\r\nHost: oms\r\n\r\n", 404, "not_found", ""},
		{"oversized URL", addr, signed("GET", "/v1/orders?x="+huge), 431, "header_too_large", ""},
		{"oversized header", addr, "GET /healthz HTTP/1.1\r\nHost: oms\r\nX-Big: " + huge + "\r\n\r\n", 431, "header_too_large", ""},
		{"malformed header", addr, "GET /healthz HTTP/1.1\r\nHost: oms\r\nno colon here\r\n\r\n", 400, "bad_request", ""},
		{"no Host", addr, "GET /healthz HTTP/1.1\r\n\r\n", 400, "bad_request", ""},
		{"unknown expectation", addr, "GET /healthz HTTP/1.1\r\nHost: oms\r\nExpect: magic\r\n\r\n", 417, "expectation_failed", ""},
		{"HTTP/2.0 request line", addr, "GET /healthz HTTP/2.0\r\nHost: oms\r\n\r\n", 505, "version_not_supported", ""},
		{"unknown transfer encoding", addr, "POST /v1/products HTTP/1.1\r\nHost: oms\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented", ""},
		{"admin: double slash", admin, "GET //metrics HTTP/1.1\r\nHost: oms\r\n\r\n", 404, "not_found", ""},
		{"admin: wrong method", admin, "POST /metrics HTTP/1.1\r\nHost: oms\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed", "GET, HEAD"},
		{"admin: unknown path", admin, "GET /admin HTTP/1.1\r\nHost: oms\r\n\r\n", 404, "not_found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := jsonapitest.MustSend(t, tc.addr, tc.raw)
			a.WantJSON(t, tc.status, tc.code)
			if got := a.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if tc.status == http.StatusOK && !strings.Contains(string(a.Body), pathf(`"id":%d`, order)) {
				t.Errorf("body %s is not order %d", a.Body, order)
			}
		})
	}
}
