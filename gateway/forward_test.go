package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// forwardDo sends method url with body through f and returns the status
// and body of the answer.
func forwardDo(t *testing.T, f http.RoundTripper, method, url, body string, hdr http.Header) (int, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, url, rd)
	req.RequestURI = ""
	if body != "" {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := f.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestForwarder_KeepAlive: sequential requests share one connection, and an
// idle connection the instance closed is noticed before use, so that even a
// POST without an idempotency key goes through on a new one.
func TestForwarder_KeepAlive(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	f := defaultTransport(5 * time.Second)
	for i := range 20 {
		code, body, err := forwardDo(t, f, "GET", srv.URL+"/x", "", nil)
		if err != nil || code != 200 || body != "GET " {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests used %d connections, want 1", n)
	}
	srv.CloseClientConnections()
	waitFor(t, "closed connections seen", func() bool { return !f.(*forwarder).idle[hostOf(srv.URL)][0].alive() })
	code, body, err := forwardDo(t, f, "POST", srv.URL+"/x", `{"a":1}`, nil)
	if err != nil || code != 200 || body != `POST {"a":1}` {
		t.Fatalf("POST after the instance closed the idle connection: %d %q %v", code, body, err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2", n)
	}
}

func hostOf(u string) string { return strings.TrimPrefix(u, "http://") }

// TestForwarder_Replay: an instance that reads the second request of a
// connection and closes it without an answer gets a GET or a POST with an
// Idempotency-Key again on a new connection, but not a POST without one
// (it may have acted on it), which fails.
func TestForwarder_Replay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var received atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					received.Add(1)
					if n == 2 {
						return // read, then gone: no answer
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	url := "http://" + ln.Addr().String() + "/x"
	f := defaultTransport(5 * time.Second)
	for _, tc := range []struct {
		name, method string
		hdr          http.Header
		want         bool
	}{
		{"GET", "GET", nil, true},
		{"POST with Idempotency-Key", "POST", http.Header{"Idempotency-Key": {"k1"}}, true},
		{"POST", "POST", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.(*forwarder).CloseIdleConnections()
			if code, _, err := forwardDo(t, f, "GET", url, "", nil); err != nil || code != 200 {
				t.Fatalf("first request: %d %v", code, err)
			}
			before := received.Load()
			code, body, err := forwardDo(t, f, tc.method, url, "{}", tc.hdr)
			switch {
			case tc.want && (err != nil || code != 200 || body != "ok"):
				t.Fatalf("got %d %q %v, want it replayed and answered", code, body, err)
			case !tc.want && err == nil:
				t.Fatalf("got %d %q, want an error (not replayed)", code, body)
			}
			if want := map[bool]int64{true: 2, false: 1}[tc.want]; received.Load()-before != want {
				t.Fatalf("instance received it %d times, want %d", received.Load()-before, want)
			}
		})
	}
}

// TestForwarder_Interim: 1xx answers before the real one are skipped, and a
// response whose headers never end is cut off.
func TestForwarder_Interim(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				if req.URL.Path == "/huge" {
					io.WriteString(c, "HTTP/1.1 200 OK\r\n")
					line := "X-Filler: " + strings.Repeat("x", 1000) + "\r\n"
					for range 2000 {
						if _, err := io.WriteString(c, line); err != nil {
							return
						}
					}
					return
				}
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
			}()
		}
	}()
	f := defaultTransport(5 * time.Second)
	base := "http://" + ln.Addr().String()
	if code, body, err := forwardDo(t, f, "GET", base+"/x", "", nil); err != nil || code != 201 || body != "done" {
		t.Fatalf("got %d %q %v, want 201 done", code, body, err)
	}
	if _, _, err := forwardDo(t, f, "GET", base+"/huge", "", nil); err == nil {
		t.Fatal("2 MB of response headers accepted")
	}
}

// TestForwarder_Sweep: connections idle past the idle timeout are closed by
// the next request to any instance, so that those to an instance no longer
// routed to do not stay open.
func TestForwarder_Sweep(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	gone, live := httptest.NewServer(handler), httptest.NewServer(handler)
	defer gone.Close()
	defer live.Close()
	f := defaultTransport(5 * time.Second).(*forwarder)
	now := time.Now()
	f.now = func() time.Time { return now }
	if code, _, err := forwardDo(t, f, "GET", gone.URL+"/", "", nil); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	if n := len(f.idle[hostOf(gone.URL)]); n != 1 {
		t.Fatalf("%d idle connections to the first instance, want 1", n)
	}
	now = now.Add(f.idleTimeout + time.Second)
	if code, _, err := forwardDo(t, f, "GET", live.URL+"/", "", nil); err != nil || code != 200 {
		t.Fatalf("second request: %d %v", code, err)
	}
	if l, ok := f.idle[hostOf(gone.URL)]; ok {
		t.Fatalf("%d idle connections to the instance no longer used, want none", len(l))
	}
	if n := len(f.idle[hostOf(live.URL)]); n != 1 {
		t.Fatalf("%d idle connections to the live instance, want 1", n)
	}
}
