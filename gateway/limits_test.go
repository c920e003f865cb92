package gateway

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tenantry/registry"
)

// TestGateway_RateLimit: a tenant over its own rate is answered 429
// rate_limited with Retry-After and reaches no instance; other tenants keep
// the defaults; the bucket refills with time; a registry change of the
// limits applies from the next snapshot.
func TestGateway_RateLimit(t *testing.T) {
	a := newBackend(t, "a")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano()) // the backend checks signatures against its own clock
	snap := snapshot(1, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1))
	snap.Limits = map[string]registry.Limits{"acme": {Rate: 5}}
	src := &fakeSource{}
	src.publish(snap)
	g, gw, _ := newGateway(t, src, func(cfg *Config) { cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	cl := newClient(t, gw.URL)

	for i := range 5 {
		if code, _, raw := cl.mustDo("GET", "/x", keyAcme, nil, nil); code != http.StatusOK {
			t.Fatalf("request %d within the rate: %d %s", i, code, raw)
		}
	}
	req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	req.Header.Set("X-Req-Id", "over-rate")
	resp, err := cl.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("over the rate: %d, Retry-After %q, Content-Type %q", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
	}
	if code, _, raw := cl.mustDo("GET", "/x", keyAcme, nil, nil); code != http.StatusTooManyRequests || !strings.Contains(raw, `"code":"rate_limited"`) {
		t.Fatalf("over the rate: %d %s, want 429 rate_limited", code, raw)
	}
	if _, ok := a.received.Load("over-rate"); ok {
		t.Fatal("a request over the rate reached the instance")
	}
	for range 20 { // globex has the default rate
		if code, _, raw := cl.mustDo("GET", "/x", keyGlobex, nil, nil); code != http.StatusOK {
			t.Fatalf("globex: %d %s", code, raw)
		}
	}
	clock.Add(int64(time.Second))
	if code, _, raw := cl.mustDo("GET", "/x", keyAcme, nil, nil); code != http.StatusOK {
		t.Fatalf("a second later: %d %s", code, raw)
	}

	next := snapshot(2, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1))
	src.publish(next) // acme back to the defaults
	waitFor(t, "the new snapshot", func() bool { return g.table.Load().snap == next })
	for i := range 50 {
		if code, _, raw := cl.mustDo("GET", "/x", keyAcme, nil, nil); code != http.StatusOK {
			t.Fatalf("request %d at the default rate: %d %s", i, code, raw)
		}
	}
}

// TestGateway_ConcurrencyLimit: with two requests of a tenant in flight and
// a limit of two, the third is answered 429 concurrency_limited; once one
// ends, the next is admitted.
func TestGateway_ConcurrencyLimit(t *testing.T) {
	a := newBackend(t, "a")
	snap := snapshot(1, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1))
	snap.Limits = map[string]registry.Limits{"acme": {Concurrency: 2}}
	src := &fakeSource{}
	src.publish(snap)
	_, gw, _ := newGateway(t, src, nil)
	cl := newClient(t, gw.URL)

	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _, _ := cl.do("GET", "/slow", keyAcme, nil, nil)
			codes <- code
		}()
	}
	waitFor(t, "two requests held at the instance", func() bool { return a.inflight.Load() == 2 })
	code, _, raw := cl.mustDo("GET", "/x", keyAcme, nil, nil)
	if code != http.StatusTooManyRequests || !strings.Contains(raw, `"code":"concurrency_limited"`) {
		t.Fatalf("third request: %d %s, want 429 concurrency_limited", code, raw)
	}
	if code, _, raw := cl.mustDo("GET", "/x", keyGlobex, nil, nil); code != http.StatusOK {
		t.Fatalf("globex meanwhile: %d %s", code, raw)
	}
	a.unblock()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("held request ended %d", c)
		}
	}
	if code, _, raw := cl.mustDo("GET", "/x", keyAcme, nil, nil); code != http.StatusOK {
		t.Fatalf("after the held ones ended: %d %s", code, raw)
	}
}
