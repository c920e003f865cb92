package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"tenantry/registry"
)

// BenchmarkGateway_ServeHTTP measures one proxied GET to a loopback backend
// (allocations included); compare with BenchmarkDirect for the hop's cost.
func BenchmarkGateway_ServeHTTP(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"ok":true}`)) }))
	defer be.Close()
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {be.URL}}, route(registry.DefaultRoute, "a", 1)))
	g, err := New(Config{Source: src, HeaderKey: testRoot})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

func BenchmarkDirect(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"ok":true}`)) }))
	defer be.Close()
	c := &http.Client{Transport: defaultTransport(30 * time.Second)}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(be.URL + "/v1/orders/1")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
