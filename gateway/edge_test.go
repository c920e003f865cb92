package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tenantry/httpedge"
	"tenantry/registry"
)

// serveGateway runs g.Serve on a loopback listener until the test ends and
// returns its base URL.
func serveGateway(t *testing.T, g *Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// hangingRequest opens a connection, sends the headers of a POST that
// announces a 200,000-byte body, and never sends the body.
func hangingRequest(addr, key string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	_, err = fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: gw\r\n%sContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n", auth)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// TestGateway_SlowBodies holds 500 connections that announce a body and
// never send it, half of them without an API key: normal requests still
// succeed meanwhile, the keyless ones are answered 401 and closed at once,
// and the keyed ones are closed when the read timeout expires.
func TestGateway_SlowBodies(t *testing.T) {
	const readTimeout = 2 * time.Second
	a := newBackend(t, "a")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	g, err := New(Config{Source: src, HeaderKey: testRoot, Limits: httpedge.Limits{ReadTimeout: readTimeout}})
	if err != nil {
		t.Fatal(err)
	}
	base := serveGateway(t, g)
	addr := strings.TrimPrefix(base, "http://")

	type result struct {
		keyed  bool
		status string
		after  time.Duration
		err    error
	}
	const n = 500
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := range n {
		key := ""
		if i%2 == 0 {
			key = keyAcme
		}
		c, err := hangingRequest(addr, key)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		sent := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			// Bound the test, not the server: a connection the server never
			// closes fails here instead of hanging the test.
			c.SetReadDeadline(time.Now().Add(readTimeout + 30*time.Second))
			br := bufio.NewReader(c)
			status, err := br.ReadString('\n')
			if err == nil {
				_, err = io.Copy(io.Discard, br) // until the server closes
			}
			results <- result{keyed: key != "", status: strings.TrimSpace(status), after: time.Since(sent), err: err}
		}()
	}

	cl := newClient(t, base)
	for i := range 20 {
		code, e, raw := cl.mustDo("POST", "/v1/orders", keyAcme, strings.NewReader(`{"n":1}`), nil)
		if code != http.StatusOK || e.Tenant != "acme" {
			t.Fatalf("normal request %d during the slow ones: %d %s", i, code, raw)
		}
	}

	wg.Wait()
	close(results)
	var slowest [2]time.Duration
	for r := range results {
		var ne net.Error
		if errors.As(r.err, &ne) && ne.Timeout() {
			t.Fatalf("connection (keyed %v) still open %v after sending its headers", r.keyed, r.after)
		}
		if r.err != nil {
			t.Fatalf("connection (keyed %v): %v", r.keyed, r.err)
		}
		want := "HTTP/1.1 401 Unauthorized"
		idx := 0
		if r.keyed {
			want, idx = "HTTP/1.1 400 Bad Request", 1
		}
		if r.status != want {
			t.Fatalf("connection (keyed %v) answered %q, want %q", r.keyed, r.status, want)
		}
		slowest[idx] = max(slowest[idx], r.after)
	}
	t.Logf("slowest close: without key %v, with key %v (read timeout %v)", slowest[0], slowest[1], readTimeout)
	if slowest[0] >= readTimeout {
		t.Errorf("a keyless connection stayed open %v: its body was waited for", slowest[0])
	}
	if slowest[1] > readTimeout+5*time.Second {
		t.Errorf("a keyed connection stayed open %v, well past the read timeout", slowest[1])
	}
	if slowest[1] < readTimeout {
		t.Errorf("a keyed connection closed after %v, before the read timeout: was its body read at all?", slowest[1])
	}
}

// TestGateway_HeaderLimit: headers past Limits.MaxHeaderBytes are answered
// 431 before any handler runs.
func TestGateway_HeaderLimit(t *testing.T) {
	src := &fakeSource{}
	src.publish(snapshot(1, nil))
	g, err := New(Config{Source: src, HeaderKey: testRoot, Limits: httpedge.Limits{MaxHeaderBytes: 8 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	base := serveGateway(t, g)
	code, _, raw := newClient(t, base).mustDo("GET", "/v1/orders", keyAcme, nil, map[string]string{"X-Big": strings.Repeat("a", 64<<10)})
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("got %d %s, want 431", code, raw)
	}
}

// TestGateway_ResponseHeaderTimeout: an instance that does not answer in
// Config.ResponseHeaderTimeout is answered 504 gateway_timeout, and the
// gateway's own request ends instead of waiting for it.
func TestGateway_ResponseHeaderTimeout(t *testing.T) {
	a := newBackend(t, "a")
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {a.srv.URL}}, route(registry.DefaultRoute, "a", 1)))
	_, gw, _ := newGateway(t, src, func(cfg *Config) { cfg.ResponseHeaderTimeout = 300 * time.Millisecond })
	code, _, raw := newClient(t, gw.URL).mustDo("GET", "/slow", keyAcme, nil, nil)
	if code != http.StatusGatewayTimeout || !strings.Contains(raw, `"code":"gateway_timeout"`) {
		t.Fatalf("got %d %s, want 504 gateway_timeout", code, raw)
	}
}
