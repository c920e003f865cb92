package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"tenantry/registry"
)

// FuzzGateway_ServeHTTP sends arbitrary requests (method, target,
// Authorization, body) through a gateway in front of a real backend that
// verifies the signed tenant header. The gateway never panics; it forwards
// only requests with a valid API key, as that key's tenant; whatever it
// forwards, it signs so that the instance accepts it (any method, any
// path and query it lets through); and every answer is JSON. Seeds in
// testdata/fuzz/FuzzGateway_ServeHTTP.
func FuzzGateway_ServeHTTP(f *testing.F) {
	b := &backend{stack: "a", release: make(chan struct{})}
	var reached atomic.Int64
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		b.serve(w, r)
	}))
	f.Cleanup(b.srv.Close)
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {b.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	g, err := New(Config{Source: src, HeaderKey: testRoot})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("GET", "/v1/orders/1", "Bearer "+keyAcme, []byte(nil))
	f.Add("POST", "/v1/orders?x=1", "bearer "+keyGlobex+" ", []byte(`{"location_id":1}`))
	f.Add("GET", "/v1/orders/%2e%2e/x", "Bearer "+keyAcme, []byte(nil))
	f.Add("DELETE", "/x", "Bearer nope", []byte("x"))
	f.Fuzz(func(t *testing.T, method, target, auth string, body []byte) {
		if strings.ContainsAny(auth, "\r\n") {
			return // not one header
		}
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n", method, target, auth, len(body))
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + string(body))))
		if err != nil {
			return // net/http answers 400 before any handler
		}
		req.RemoteAddr = "127.0.0.1:1"
		before := reached.Load()
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		forwarded := reached.Load() != before

		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s %q: answered %d with Content-Type %q: %q", method, target, rec.Code, ct, rec.Body.Bytes())
		}
		tenant := ""
		if k := g.table.Load().lookupKey(req.Header.Get("Authorization")); k != nil {
			tenant = k.Tenant
		}
		if forwarded && tenant == "" {
			t.Fatalf("%s %q with Authorization %q reached the instance", method, target, auth)
		}
		if !forwarded {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("%s %q: the instance refused what the gateway forwarded: %d %q", method, target, rec.Code, rec.Body.Bytes())
		}
		var e echo
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Tenant != tenant || e.Auth != "" || e.Tenants != 1 {
			t.Fatalf("%s %q: instance saw %+v (%v), want tenant %s only", method, target, e, err, tenant)
		}
		// The echo carries the body as a JSON string: compare valid text only.
		if utf8.Valid(body) && !bytes.Equal([]byte(e.Body), body) {
			t.Fatalf("%s %q: body %q arrived as %q", method, target, body, e.Body)
		}
	})
}
