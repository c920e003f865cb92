package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

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
		tenant := ""
		if k := g.table.Load().lookupKey(req.Header.Get("Authorization")); k != nil {
			tenant = k.Tenant
		}
		check := func(path string, serve func() (int, string, []byte)) {
			before := reached.Load()
			code, ct, answer := serve()
			forwarded := reached.Load() != before
			if !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("%s: %s %q: answered %d with Content-Type %q: %q", path, method, target, code, ct, answer)
			}
			if forwarded && tenant == "" {
				t.Fatalf("%s: %s %q with Authorization %q reached the instance", path, method, target, auth)
			}
			if !forwarded {
				return
			}
			if code != http.StatusOK {
				t.Fatalf("%s: %s %q: the instance refused what the gateway forwarded: %d %q", path, method, target, code, answer)
			}
			var e echo
			if err := json.Unmarshal(answer, &e); err != nil || e.Tenant != tenant || e.Auth != "" || e.Tenants != 1 {
				t.Fatalf("%s: %s %q: instance saw %+v (%v), want tenant %s only", path, method, target, e, err, tenant)
			}
			// The echo carries the body as a JSON string: compare valid text only.
			if utf8.Valid(body) && !bytes.Equal([]byte(e.Body), body) {
				t.Fatalf("%s: %s %q: body %q arrived as %q", path, method, target, body, e.Body)
			}
		}
		check("ServeHTTP", func() (int, string, []byte) {
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			return rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()
		})
		// The public listener's path, on what fasthttp's parser accepts.
		var freq fasthttp.Request
		if err := freq.Read(bufio.NewReader(strings.NewReader(raw + string(body)))); err != nil {
			return
		}
		check("Serve", func() (int, string, []byte) {
			var c fasthttp.RequestCtx
			c.Init(&freq, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			g.serveFast(&c)
			return c.Response.StatusCode(), string(c.Response.Header.ContentType()), c.Response.Body()
		})
	})
}
