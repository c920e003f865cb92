package httpedge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"tenantry/httpedge"
	"tenantry/jsonapi/jsonapitest"
)

// announce sends a POST that announces a body it never sends, and returns
// the status line and how long the server took to close the connection.
func announce(t *testing.T, addr string) (string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err == nil {
		_, err = io.Copy(io.Discard, br)
	}
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return strings.TrimSpace(status), time.Since(start)
}

func TestDropConnection(t *testing.T) {
	const readTimeout = 3 * time.Second
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpedge.DropConnection(w)
		w.WriteHeader(http.StatusUnauthorized)
	})
	status, took := announce(t, jsonapitest.MustServe(t, refuse, httpedge.Limits{ReadTimeout: readTimeout}))
	if status != "HTTP/1.1 401 Unauthorized" || took >= readTimeout {
		t.Fatalf("refused: %q after %v; want 401 and a close before the read timeout", status, took)
	}

	// Without it, net/http waits for the announced body after answering.
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	status, took = announce(t, jsonapitest.MustServe(t, plain, httpedge.Limits{ReadTimeout: readTimeout}))
	if status != "HTTP/1.1 401 Unauthorized" || took < readTimeout {
		t.Fatalf("not dropped: %q after %v; want 401 and a close at the read timeout", status, took)
	}
}

func TestNewServer_Defaults(t *testing.T) {
	s := httpedge.NewServer(http.NotFoundHandler(), httpedge.Limits{WriteTimeout: time.Minute * 5}, nil)
	if s.ReadHeaderTimeout != httpedge.DefaultReadHeaderTimeout || s.ReadTimeout != httpedge.DefaultReadTimeout ||
		s.WriteTimeout != 5*time.Minute || s.IdleTimeout != httpedge.DefaultIdleTimeout ||
		s.MaxHeaderBytes != httpedge.DefaultMaxHeaderBytes {
		t.Fatalf("server settings: %+v", s)
	}
	// The header timeout never exceeds the whole-request timeout.
	if s := httpedge.NewServer(http.NotFoundHandler(), httpedge.Limits{ReadTimeout: time.Second}, nil); s.ReadHeaderTimeout != time.Second {
		t.Fatalf("ReadHeaderTimeout = %v with a 1s ReadTimeout", s.ReadHeaderTimeout)
	}
}

func TestServe_Drains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inside := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inside)
		time.Sleep(200 * time.Millisecond) // a request in flight when the context ends
		io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- httpedge.Serve(ctx, httpedge.NewServer(h, httpedge.Limits{}, nil), ln, 10*time.Second)
	}()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-inside
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve after drain: %v", err)
	}
	if b := <-got; b != "done" {
		t.Fatalf("in-flight request got %q", b)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Serve returned")
	}
}
