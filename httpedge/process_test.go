package httpedge_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tenantry/httpedge"
)

// TestListeners_Serve: the public URL is announced in the addr file and
// served, and cancelling the context drains both listeners with no error.
func TestListeners_Serve(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "addr")
	l := httpedge.Listeners{AddrFile: addrFile}
	public := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "public") })
	admin := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "admin") })
	serve := func(ctx context.Context, ln net.Listener) error {
		return httpedge.Serve(ctx, httpedge.NewServer(public, httpedge.Limits{}, nil), ln, time.Second)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, serve, admin, time.Second, nil) }()
	url := waitAddrFile(t, addrFile)
	if got := get(t, url); got != "public" {
		t.Fatalf("public listener answered %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
}

// TestListeners_ServeListenError: a public address that cannot be opened
// ends Serve with the error, the admin listener drained.
func TestListeners_ServeListenError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	l := httpedge.Listeners{Public: taken.Addr().String()}
	err = l.Serve(context.Background(), func(context.Context, net.Listener) error { return nil },
		http.NotFoundHandler(), time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Serve = %v, want a listen error", err)
	}
}

func waitAddrFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no addr file: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
