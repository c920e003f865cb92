package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tenantry/httpedge"
	"tenantry/jsonapi/jsonapitest"
	"tenantry/registry"
	"tenantry/tenantsig"
)

func TestGateway_Authentication(t *testing.T) {
	a := newBackend(t, "a")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	_, gw, _ := newGateway(t, src, nil)
	c := newClient(t, gw.URL)

	for _, tc := range []struct{ name, auth string }{
		{"missing", ""},
		{"unknown key", "Bearer nope"},
		{"not bearer", "Basic " + keyAcme},
		{"empty bearer", "Bearer "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"X-Req-Id": "unauth-" + tc.name}
			if tc.auth != "" {
				hdr["Authorization"] = tc.auth
			}
			code, _, raw := c.mustDo("GET", "/v1/orders/1", "", nil, hdr)
			if code != http.StatusUnauthorized || !strings.Contains(raw, `"code":"unauthorized"`) {
				t.Fatalf("got %d %s, want 401 unauthorized", code, raw)
			}
			if _, ok := a.received.Load(hdr["X-Req-Id"]); ok {
				t.Fatal("an unauthenticated request reached the backend")
			}
		})
	}

	t.Run("forged tenant headers are replaced", func(t *testing.T) {
		forged := map[string]string{
			tenantsig.HeaderTenant:    "globex",
			tenantsig.HeaderSignature: tenantsig.Sign([]byte("guess"), "globex", "a", "GET", "/v1/orders/1", time.Now()),
		}
		code, e, raw := c.mustDo("GET", "/v1/orders/1", keyAcme, nil, forged)
		if code != http.StatusOK {
			t.Fatalf("got %d %s", code, raw)
		}
		if e.Tenant != "acme" || e.Tenants != 1 {
			t.Fatalf("backend saw tenant %q (%d header values), want only the signed acme", e.Tenant, e.Tenants)
		}
		if e.Auth != "" {
			t.Fatalf("API key forwarded to the instance: %q", e.Auth)
		}
		if e.Path != "/v1/orders/1" {
			t.Fatalf("path = %q", e.Path)
		}
	})
}

func TestGateway_Weights(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {a.srv.URL}, "b": {b.srv.URL}, "c": {c.srv.URL}},
		route(registry.DefaultRoute, "c", 1),
		route("acme", "a", 30, "b", 70, "c", 0)))
	var next atomic.Int64 // deterministic: 0, 1, 2, ... mod n
	_, gw, _ := newGateway(t, src, func(cfg *Config) {
		cfg.Rand = func(n int) int { return int(next.Add(1)-1) % n }
	})
	cl := newClient(t, gw.URL)

	counts := map[string]int{}
	for range 100 {
		_, e, _ := cl.mustDo("GET", "/x", keyAcme, nil, nil)
		counts[e.Stack]++
	}
	if counts["a"] != 30 || counts["b"] != 70 {
		t.Fatalf("acme went to %v, want a:30 b:70", counts)
	}
	if _, e, _ := cl.mustDo("GET", "/x", keyGlobex, nil, nil); e.Stack != "c" {
		t.Fatalf("globex (default route) went to %q, want c", e.Stack)
	}
}

func TestGateway_NoBackend(t *testing.T) {
	a := newBackend(t, "a")
	snap := snapshot(1, map[string][]string{"a": {a.srv.URL}}, route("acme", "a", 1))
	snap.Stacks["a"].Instances[0].Healthy = false
	src := &fakeSource{}
	src.publish(snap)
	_, gw, _ := newGateway(t, src, nil)
	cl := newClient(t, gw.URL)
	for _, key := range []string{keyAcme, keyGlobex} { // unhealthy instance; no route at all
		code, _, raw := cl.mustDo("GET", "/x", key, nil, nil)
		if code != http.StatusServiceUnavailable || !strings.Contains(raw, `"code":"no_backend"`) {
			t.Fatalf("got %d %s, want 503 no_backend", code, raw)
		}
	}
}

// TestGateway_RouteSwap moves acme from stack a to stack b under load: no
// request fails, requests in flight on a finish on a.
func TestGateway_RouteSwap(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	stacks := map[string][]string{"a": {a.srv.URL}, "b": {b.srv.URL}}
	src := &fakeSource{}
	src.publish(snapshot(1, stacks, route("acme", "a", 1)))
	_, gw, _ := newGateway(t, src, nil)
	cl := newClient(t, gw.URL)

	// Slow requests that start on a and are held there across the swap.
	const slow = 4
	slowRes := make(chan echo, slow)
	slowErr := make(chan error, slow)
	for range slow {
		go func() {
			code, e, raw, err := cl.do("GET", "/slow", keyAcme, nil, nil)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d: %s", code, raw)
			}
			slowErr <- err
			slowRes <- e
		}()
	}
	waitFor(t, "slow requests in flight on a", func() bool { return a.inflight.Load() == slow })

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		failures atomic.Int64
		onB      atomic.Int64
		total    atomic.Int64
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				code, e, raw, err := cl.do("GET", "/fast", keyAcme, nil, nil)
				total.Add(1)
				if err != nil || code != http.StatusOK {
					failures.Add(1)
					t.Errorf("request failed: %d %s %v", code, raw, err)
					continue
				}
				if e.Stack == "b" {
					onB.Add(1)
				}
			}
		}()
	}
	waitFor(t, "load running", func() bool { return total.Load() > 200 })
	src.publish(snapshot(2, stacks, route("acme", "b", 1)))
	waitFor(t, "requests on b", func() bool { return onB.Load() > 200 })
	a.unblock()
	for range slow {
		if err := <-slowErr; err != nil {
			t.Fatalf("slow request: %v", err)
		}
		if e := <-slowRes; e.Stack != "a" || !e.Slow {
			t.Fatalf("slow request finished on %q, want a", e.Stack)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the swap", n, total.Load())
	}
	t.Logf("%d requests, %d on b after the swap", total.Load(), onB.Load())
}

// TestGateway_InstanceKilled kills one of two instances under load: only
// requests that had reached the dead instance may fail (GETs and POSTs with
// an Idempotency-Key are replayed by net/http and then moved here, so in
// practice none does), and passive health takes it out of rotation.
func TestGateway_InstanceKilled(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	a.inStack, b.inStack = "s", "s"
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"s": {a.srv.URL, b.srv.URL}}, route(registry.DefaultRoute, "s", 1)))
	g, gw, reg := newGateway(t, src, func(cfg *Config) { cfg.Cooldown = time.Minute })
	cl := newClient(t, gw.URL)

	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		seq    atomic.Int64
		mu     sync.Mutex
		failed []string
		okA    atomic.Int64
		total  atomic.Int64
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				id := fmt.Sprintf("r%d", seq.Add(1))
				hdr := map[string]string{"X-Req-Id": id}
				method, body := "GET", io.Reader(nil)
				if w%2 == 1 {
					method, body = "POST", strings.NewReader(`{"sku":"x"}`)
					hdr["Idempotency-Key"] = id
				}
				code, e, _, err := cl.do(method, "/v1/orders", keyAcme, body, hdr)
				total.Add(1)
				if err != nil || code != http.StatusOK {
					mu.Lock()
					failed = append(failed, id)
					mu.Unlock()
					continue
				}
				if e.Stack == "a" {
					okA.Add(1)
				}
			}
		}()
	}
	waitFor(t, "load on both instances", func() bool { return total.Load() > 300 && okA.Load() > 50 })
	// In flight at b: every request the gateway had routed to b and not
	// finished. Requests routed to b after this count find the listener
	// closed or their connection dead before they were read; both are
	// replayed (dial error: moved by the gateway; dead keep-alive
	// connection: replayed by net/http, these requests being replayable).
	inflightAtKill := instanceInFlight(g, b.srv.URL)
	b.srv.Listener.Close()
	b.srv.CloseClientConnections()
	after := total.Load()
	waitFor(t, "b out of rotation", func() bool {
		for _, h := range g.Health() {
			if h.URL == b.srv.URL {
				return !h.Available
			}
		}
		return false
	})
	waitFor(t, "load after the kill", func() bool { return total.Load() > after+300 })
	stop.Store(true)
	wg.Wait()

	for _, id := range failed {
		if _, ok := b.received.Load(id); !ok {
			t.Errorf("request %s failed but never reached the killed instance", id)
		}
	}
	if int64(len(failed)) > inflightAtKill {
		t.Fatalf("%d requests failed, but only %d were in flight at the killed instance", len(failed), inflightAtKill)
	}
	if got := counterSum(t, reg, "tenantry_gateway_instance_unhealthy_total"); got < 1 {
		t.Fatalf("instance_unhealthy_total = %v", got)
	}
	t.Logf("%d requests, %d failed (all had reached the killed instance), %d in flight there at kill",
		total.Load(), len(failed), inflightAtKill)
}

func instanceInFlight(g *Gateway, url string) int64 {
	for _, h := range g.Health() {
		if h.URL == url {
			return h.InFlight
		}
	}
	return 0
}

// counterSum sums every series of the counter name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestGateway_RetryNeverSent sends bodies to a stack whose first instance
// refuses connections: every request lands on the live one with its body.
func TestGateway_RetryNeverSent(t *testing.T) {
	a, dead := newBackend(t, "a"), newBackend(t, "a")
	dead.srv.Close()
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {dead.srv.URL, a.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	_, gw, reg := newGateway(t, src, func(cfg *Config) { cfg.UnhealthyAfter = 1000 })
	cl := newClient(t, gw.URL)
	for i := range 20 {
		body := fmt.Sprintf(`{"n":%d}`, i)
		code, e, raw := cl.mustDo("POST", "/v1/orders", keyAcme, strings.NewReader(body), nil)
		if code != http.StatusOK || e.Body != body {
			t.Fatalf("got %d %s, want 200 echoing %s", code, raw, body)
		}
	}
	if got := counterSum(t, reg, "tenantry_gateway_retries_total"); got < 1 {
		t.Fatalf("retries_total = %v, want > 0", got)
	}
}

func TestGateway_BodyLimit(t *testing.T) {
	a := newBackend(t, "a")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	_, gw, _ := newGateway(t, src, nil)
	cl := newClient(t, gw.URL)

	big := bytes.Repeat([]byte("x"), MaxBodyBytes+1)
	t.Run("content length", func(t *testing.T) {
		code, _, raw := cl.mustDo("POST", "/x", keyAcme, bytes.NewReader(big), map[string]string{"X-Req-Id": "big1"})
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(raw, "body_too_large") {
			t.Fatalf("got %d %s, want 413", code, raw)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		// A reader without a known length makes the client send chunked.
		code, _, raw := cl.mustDo("POST", "/x", keyAcme, io.MultiReader(bytes.NewReader(big)), map[string]string{"X-Req-Id": "big2"})
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d %s, want 413", code, raw)
		}
	})
	t.Run("at the limit", func(t *testing.T) {
		code, e, raw := cl.mustDo("POST", "/x", keyAcme, io.MultiReader(bytes.NewReader(big[1:])), nil)
		if code != http.StatusOK || len(e.Body) != MaxBodyBytes {
			t.Fatalf("got %d (%d bytes echoed) %.100s", code, len(e.Body), raw)
		}
	})
	for _, id := range []string{"big1", "big2"} {
		if _, ok := a.received.Load(id); ok {
			t.Fatalf("oversized request %s reached the backend", id)
		}
	}
}

// TestGateway_AdminListener: /metrics and the instance health view are
// served by the admin handler only; the public listener answers /metrics 404
// (JSON), with or without an API key, and still answers /healthz.
func TestGateway_AdminListener(t *testing.T) {
	a := newBackend(t, "a")
	src := &fakeSource{}
	src.publish(snapshot(7, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	g, gw, _ := newGateway(t, src, nil)
	admin := httptest.NewServer(g.AdminHandler())
	t.Cleanup(admin.Close)
	cl, acl := newClient(t, gw.URL), newClient(t, admin.URL)

	for _, c := range []*client{cl, acl} {
		code, _, raw := c.mustDo("GET", "/healthz", "", nil, nil)
		if code != http.StatusOK || !strings.Contains(raw, `"registry_version":7`) {
			t.Fatalf("/healthz: %d %s", code, raw)
		}
	}
	for _, key := range []string{"", keyAcme} {
		code, _, raw := cl.mustDo("GET", "/metrics", key, nil, nil)
		if code != http.StatusNotFound || !strings.Contains(raw, `"code":"not_found"`) || strings.Contains(raw, "tenantry_gateway") {
			t.Fatalf("public /metrics (key %q): %d %s, want 404 not_found", key, code, raw)
		}
	}
	cl.mustDo("GET", "/x", keyAcme, nil, nil)
	cl.mustDo("GET", "/x", keyAcme, nil, nil)
	cl.mustDo("GET", "/x", "bad", nil, nil)
	code, _, raw := acl.mustDo("GET", "/metrics", "", nil, nil)
	if code != http.StatusOK {
		t.Fatalf("admin /metrics: %d", code)
	}
	for _, want := range []string{
		`tenantry_gateway_requests_total{code="200",stack="a",tenant="acme"} 2`,
		`tenantry_gateway_requests_total{code="401",stack="",tenant=""} 1`,
		`tenantry_gateway_request_duration_seconds_count{stack="a",tenant="acme"} 2`,
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("admin /metrics lacks %s", want)
		}
	}
	code, _, raw = acl.mustDo("GET", "/instances", "", nil, nil)
	if code != http.StatusOK || !strings.Contains(raw, `"url":"`+a.srv.URL+`"`) {
		t.Fatalf("admin /instances: %d %s", code, raw)
	}
	if code, _, raw = acl.mustDo("GET", "/v1/orders", keyAcme, nil, nil); code != http.StatusNotFound {
		t.Fatalf("admin listener proxied an API request: %d %s", code, raw)
	}
}

func TestHealth_FailureAndSuccess(t *testing.T) {
	now := time.Unix(1000, 0)
	var h health
	for i, want := range []bool{false, false, true} {
		if got := h.failure(3, now, 5*time.Second); got != want {
			t.Fatalf("failure %d: marked down = %v, want %v", i+1, got, want)
		}
	}
	if h.available(now.UnixNano()) {
		t.Fatal("available during cooldown")
	}
	later := now.Add(6 * time.Second)
	if !h.available(later.UnixNano()) {
		t.Fatal("not available after cooldown")
	}
	if !h.failure(3, later, 5*time.Second) {
		t.Fatal("one failure after cooldown should take it out again")
	}
	h.success()
	if !h.available(later.UnixNano()) || h.fails.Load() != 0 {
		t.Fatal("success did not reset health")
	}
}

// TestGateway_Edges: the gateway's own answers are JSON with a stable code,
// and a path that is not canonical is answered 404 and never forwarded.
func TestGateway_Edges(t *testing.T) {
	a := newBackend(t, "a")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	g, _, _ := newGateway(t, src, nil)
	addr := jsonapitest.MustServe(t, g, httpedge.Limits{})
	admin := jsonapitest.MustServe(t, g.AdminHandler(), httpedge.Limits{})
	for _, tc := range []struct {
		name, addr, method, target string
		headers                    string
		status                     int
		code                       string
		forwarded                  bool
	}{
		{"canonical", addr, "GET", "/v1/orders/1", "", 200, "", true},
		{"double slash", addr, "GET", "//metrics", "", 404, "not_found", false},
		{"dot dot", addr, "GET", "/v1/../admin", "", 404, "not_found", false},
		{"escaped dot dot", addr, "GET", "/v1/%2E%2E/admin", "", 404, "not_found", false},
		{"OPTIONS *", addr, "OPTIONS", "*", "", 404, "not_found", false},
		{"metrics on the public listener", addr, "GET", "/metrics", "", 404, "not_found", false},
		{"health", addr, "GET", "/healthz", "", 200, "", false},
		{"health with another method", addr, "POST", "/healthz", "Content-Length: 0\r\n", 405, "method_not_allowed", false},
		{"oversized header", addr, "GET", "/v1/orders/1", "X-Big: " + strings.Repeat("b", 70<<10) + "\r\n", 431, "header_too_large", false},
		{"admin: double slash", admin, "GET", "//metrics", "", 404, "not_found", false},
		{"admin: wrong method", admin, "DELETE", "/instances", "", 405, "method_not_allowed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "edge-" + tc.name
			raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nX-Req-Id: %s\r\n%s\r\n",
				tc.method, tc.target, keyAcme, id, tc.headers)
			jsonapitest.MustSend(t, tc.addr, raw).WantJSON(t, tc.status, tc.code)
			if _, got := a.received.Load(id); got != tc.forwarded {
				t.Errorf("forwarded to the instance: %v, want %v", got, tc.forwarded)
			}
		})
	}
}
