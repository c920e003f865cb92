package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tenantry/registry"
)

func TestGateway_Preview(t *testing.T) {
	blue, green := newBackend(t, "blue"), newBackend(t, "green")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"blue": {blue.srv.URL}, "green": {green.srv.URL}},
		route(registry.DefaultRoute, "blue", 100)))
	_, gw, _ := newGateway(t, src, nil)
	c := newClient(t, gw.URL)

	t.Run("goes to the named stack only", func(t *testing.T) {
		for range 20 {
			code, e, raw := c.mustDo("GET", "/v1/orders", keyAcme, nil, map[string]string{HeaderPreview: "green"})
			if code != http.StatusOK || e.Stack != "green" || e.Tenant != "acme" {
				t.Fatalf("preview of green: %d %s", code, raw)
			}
		}
	})
	t.Run("nothing else goes there", func(t *testing.T) {
		for range 20 {
			if _, e, raw := c.mustDo("GET", "/v1/orders", keyAcme, nil, nil); e.Stack != "blue" {
				t.Fatalf("routed request reached %q: %s", e.Stack, raw)
			}
		}
	})
	t.Run("unknown stack", func(t *testing.T) {
		code, _, raw := c.mustDo("GET", "/v1/orders", keyAcme, nil, map[string]string{HeaderPreview: "nope"})
		if code != http.StatusNotFound || !strings.Contains(raw, "unknown_stack") {
			t.Fatalf("got %d %s, want 404 unknown_stack", code, raw)
		}
	})
	t.Run("needs an API key", func(t *testing.T) {
		hdr := map[string]string{HeaderPreview: "green", "X-Req-Id": "preview-unauth"}
		if code, _, _ := c.mustDo("GET", "/v1/orders", "", nil, hdr); code != http.StatusUnauthorized {
			t.Fatalf("got %d, want 401", code)
		}
		if _, ok := green.received.Load("preview-unauth"); ok {
			t.Fatal("an unauthenticated preview reached the stack")
		}
	})
}

// recordingSink is a StatsSink that keeps what it is given.
type recordingSink struct {
	mu     sync.Mutex
	writes []map[string]registry.StackStats
	ids    []string
}

func (s *recordingSink) WriteStackStats(_ context.Context, id string, stats map[string]registry.StackStats) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, stats)
	s.ids = append(s.ids, id)
	return nil
}

func TestGateway_PublishStats(t *testing.T) {
	blue := newBackend(t, "blue")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"blue": {blue.srv.URL}, "dead": {"http://127.0.0.1:1"}},
		route(registry.DefaultRoute, "blue", 100)))
	sink := &recordingSink{}
	g, gw, _ := newGateway(t, src, func(c *Config) { c.Stats, c.ID, c.StatsInterval = sink, "gw-test", time.Hour })
	c := newClient(t, gw.URL)
	publish := func() {
		t.Helper()
		if err := g.PublishStats(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for range 7 {
		c.mustDo("GET", "/v1/orders", keyAcme, nil, nil)
	}
	publish()
	publish() // nothing new: nothing written
	if len(sink.writes) != 1 || sink.ids[0] != "gw-test" {
		t.Fatalf("writes %v by %v, want one by gw-test", sink.writes, sink.ids)
	}
	if b := sink.writes[0]["blue"]; b.Requests != 7 || b.Errors != 0 || sum(b.Buckets) != 7 {
		t.Errorf("blue: %+v, want 7 requests, no error", b)
	}

	src.publish(snapshot(2, map[string][]string{"blue": {blue.srv.URL}, "dead": {"http://127.0.0.1:1"}},
		route(registry.DefaultRoute, "blue", 100), route("acme", "dead", 100)))
	waitFor(t, "the new route", func() bool {
		code, _, _ := c.mustDo("GET", "/v1/orders", keyAcme, nil, nil)
		return code == http.StatusServiceUnavailable
	})
	publish()
	n := len(sink.writes)
	for range 2 {
		c.mustDo("GET", "/v1/orders", keyAcme, nil, nil) // 503: never connected
	}
	for range 5 { // previews are not tenant traffic: left out
		c.mustDo("GET", "/v1/orders", keyAcme, nil, map[string]string{HeaderPreview: "blue"})
	}
	publish()
	if len(sink.writes) != n+1 {
		t.Fatalf("%d writes, want %d", len(sink.writes), n+1)
	}
	got := sink.writes[n]
	if d := got["dead"]; d.Requests != 2 || d.Errors != 2 {
		t.Errorf("dead: %+v, want 2 requests, 2 errors", d)
	}
	if b, ok := got["blue"]; ok {
		t.Errorf("previews counted: blue %+v", b)
	}
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}
