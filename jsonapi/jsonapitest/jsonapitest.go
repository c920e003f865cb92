// Package jsonapitest helps tests check what a tenantry server answers on
// the wire: it serves a handler the way the servers are served (httpedge,
// through jsonapi.Listener) and sends raw requests, including ones no Go
// client would send ("//metrics", "OPTIONS *", 100 KiB of headers, a
// half-closed socket).
package jsonapitest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"tenantry/httpedge"
)

// MustServe serves h with limits on a loopback port, through httpedge.Serve
// (and so jsonapi.Listener), until the test ends; it returns host:port.
func MustServe(tb testing.TB, h http.Handler, limits httpedge.Limits) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpedge.Serve(ctx, httpedge.NewServer(h, limits, nil), ln, 5*time.Second) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// Answer is one response read off the wire.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
	// Code is the error code of a JSON error body, "" otherwise.
	Code string
}

// Send writes raw (a whole request, "\r\n" line ends) to addr on a new
// connection; with halfClose it then closes its writing side, as a client
// that has nothing more to send may. It reads one response, or returns
// ok=false when the server closed the connection without one.
func Send(tb testing.TB, addr, raw string, halfClose bool) (Answer, bool) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		tb.Fatalf("write request: %v", err)
	}
	if halfClose {
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			tb.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return Answer{}, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read response body: %v", err)
	}
	a := Answer{Status: resp.StatusCode, Header: resp.Header, Body: body}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		a.Code = e.Error.Code
	}
	return a, true
}

// MustSend is Send that fails the test when no response came.
func MustSend(tb testing.TB, addr, raw string) Answer {
	tb.Helper()
	a, ok := Send(tb, addr, raw, false)
	if !ok {
		tb.Fatalf("no response to %.80q", raw)
	}
	return a
}

// WantJSON fails the test unless a is a JSON answer (Content-Type
// application/json, a body that parses) with status and error code (code ""
// for a success body).
func (a Answer) WantJSON(tb testing.TB, status int, code string) {
	tb.Helper()
	ct := a.Header.Get("Content-Type")
	if a.Status != status || a.Code != code || !strings.HasPrefix(ct, "application/json") || !json.Valid(bytes.TrimSpace(a.Body)) {
		tb.Errorf("answer %d %q (Content-Type %q): %.300s; want %d %q in JSON", a.Status, a.Code, ct, a.Body, status, code)
	}
}
