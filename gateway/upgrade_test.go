package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tenantry/registry"
	"tenantry/tenantsig"
)

// TestGateway_Upgrade: a protocol upgrade (as a WebSocket handshake makes)
// goes through ServeHTTP's ReverseProxy from the fasthttp listener: the
// instance sees the signed tenant, answers 101, and bytes then pass both
// ways on the switched connection.
func TestGateway_Upgrade(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := tenantsig.Verify(r, tenantsig.StackKey(testRoot, "a"), "a", time.Now()); err != nil || r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		io.WriteString(c, "echo: "+line)
	}))
	t.Cleanup(be.Close)
	src := &fakeSource{}
	src.publish(snapshot(1, map[string][]string{"a": {be.URL}}, route(registry.DefaultRoute, "a", 1)))
	_, gw, _ := newGateway(t, src, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET /v1/stream HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "+keyAcme+"\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("answered %d %s, want 101", resp.StatusCode, b)
	}
	io.WriteString(c, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("after the upgrade: %q, %v", line, err)
	}
}
