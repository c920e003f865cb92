package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// forwarder is the gateway's default RoundTripper for http:// instances:
// HTTP/1.1 over keep-alive connections, the whole exchange done on the
// calling goroutine. net/http's Transport hands every request to a write
// goroutine and every response back from a read goroutine of the
// connection; in a profile of the gateway in front of a trivial backend those
// hand-offs (channel operations, wake-ups, scheduling) cost about as much as
// the rest of the proxy. Here the handler's goroutine writes the request and
// reads the response itself, and an idle connection has no goroutine at all.
//
// Parsing and framing are net/http's own: Request.Write writes the request
// (Content-Length or chunked from the request's fields, never from client
// headers) and ReadResponse reads the answer (the same parser the Transport
// uses), so what reaches an instance and what comes back are framed as
// before. Requests it does not handle (https instances, protocol upgrades)
// go to fallback.
//
// Replays follow net/http's rule: a request that failed on a reused
// connection before any byte of an answer came back is sent again on a new
// connection when it is replayable (GET, HEAD, OPTIONS, TRACE, or an
// Idempotency-Key or X-Idempotency-Key header, with a body that can be
// rewound), or when not one byte of it was written. An idle connection the
// instance closed is noticed before use (a non-blocking peek), so a
// request rarely meets one.
type forwarder struct {
	dial                  func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback              http.RoundTripper
	responseHeaderTimeout time.Duration
	idleTimeout           time.Duration
	maxIdlePerHost        int
	now                   func() time.Time

	mu        sync.Mutex
	idle      map[string][]*fconn // by host:port, most recently used last
	lastSweep time.Time
}

// maxResponseHeaderBytes bounds an instance's response headers, as
// http.Transport's default MaxResponseHeaderBytes does (there 10 MiB).
const maxResponseHeaderBytes = 1 << 20

// aLongTimeAgo is a deadline that has passed: setting it makes blocked
// reads and writes of a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// fconn is one connection to an instance. It counts the bytes that pass in
// each direction of the current exchange, which tell whether a failed
// request can have reached the instance.
type fconn struct {
	conn     net.Conn
	key      string
	br       *bufio.Reader
	bw       *bufio.Writer
	nread    int64
	nwritten int64
	hdrLimit int64 // while reading response headers: the most nread may reach
	reused   bool
	idleAt   time.Time

	// alive's state (unix only).
	raw     syscall.RawConn
	peek    func(fd uintptr) bool
	peekOK  bool
	peekBuf [1]byte
}

func (c *fconn) Read(p []byte) (int, error) {
	if c.hdrLimit > 0 && c.nread >= c.hdrLimit {
		return 0, errResponseHeadersTooLarge
	}
	n, err := c.conn.Read(p)
	c.nread += int64(n)
	return n, err
}

func (c *fconn) Write(p []byte) (int, error) {
	n, err := c.conn.Write(p)
	c.nwritten += int64(n)
	return n, err
}

var errResponseHeadersTooLarge = errors.New("instance's response headers exceed 1 MiB")

func (f *forwarder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Header.Get("Upgrade") != "" {
		return f.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	ctx := req.Context()
	fresh := false
	for {
		c, err := f.get(ctx, addr, fresh)
		if err != nil {
			return nil, err
		}
		resp, err := f.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		if !c.reused || ctx.Err() != nil || !replayable(req, c) {
			return nil, err
		}
		// The instance closed a reused connection under the request: once
		// more on a new connection, as net/http's Transport does.
		if req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			r2 := *req
			r2.Body = body
			req = &r2
		}
		fresh = true
	}
}

// replayable reports whether req, which failed on the reused connection c,
// may be sent again: nothing of it was written, or nothing came back and
// the request is idempotent with a body that can be rewound.
func replayable(req *http.Request, c *fconn) bool {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.GetBody == nil {
		return false
	}
	if c.nwritten == 0 {
		return true
	}
	if c.nread != 0 {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// exchange sends req on c and reads the response headers. On success the
// response's body owns c: reading it to the end and closing it returns c to
// the idle pool, closing it earlier closes c. On error c is closed.
func (f *forwarder) exchange(c *fconn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c.nread, c.nwritten = 0, 0
	// Cancelling the request (its deadline included) interrupts whatever
	// the exchange is blocked in. The gateway's own requests end only at
	// their deadline before the exchange is over (reqState is cancelled when
	// the handler returns), so for them the connection's deadline does the
	// same without a callback registered per request. (ReverseProxy wraps
	// the state in a context with values; the same Done channel proves
	// that nothing in between can cancel it.)
	deadline, _ := ctx.Deadline()
	stop := noStop
	if st := stateOf(ctx); st != nil && st.Done() == ctx.Done() {
		c.conn.SetDeadline(deadline)
	} else {
		stop = context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	}
	fail := func(err error) (*http.Response, error) {
		stop()
		c.conn.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err)
	}
	if f.responseHeaderTimeout > 0 {
		hd := f.now().Add(f.responseHeaderTimeout)
		if !deadline.IsZero() && deadline.Before(hd) {
			hd = deadline
		}
		c.conn.SetReadDeadline(hd)
	}
	c.hdrLimit = maxResponseHeaderBytes
	resp, err := http.ReadResponse(c.br, req)
	// 1xx answers (100 Continue, 103 Early Hints) precede the real one;
	// they are not relayed to the client.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(c.br, req)
	}
	c.hdrLimit = 0
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && ctx.Err() == nil {
			err = &headerTimeoutError{err}
		}
		return fail(err)
	}
	if f.responseHeaderTimeout > 0 {
		c.conn.SetReadDeadline(deadline)
	}
	reuse := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody {
		stop()
		if reuse {
			f.put(c)
		} else {
			c.conn.Close()
		}
		return resp, nil
	}
	resp.Body = &fbody{f: f, c: c, body: resp.Body, stop: stop, reuse: reuse}
	return resp, nil
}

func noStop() bool { return true }

// headerTimeoutError is an instance that did not answer within
// responseHeaderTimeout; it is a net.Error whose Timeout is true.
type headerTimeoutError struct{ err error }

func (e *headerTimeoutError) Error() string {
	return "timeout awaiting response headers: " + e.err.Error()
}
func (e *headerTimeoutError) Unwrap() error { return e.err }
func (e *headerTimeoutError) Timeout() bool { return true }
func (e *headerTimeoutError) Temporary() bool {
	return true
}

// fbody is a response body read from c.
type fbody struct {
	f     *forwarder
	c     *fconn
	body  io.ReadCloser
	stop  func() bool
	reuse bool
	eof   bool
	done  bool
}

func (b *fbody) Read(p []byte) (int, error) {
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close returns the connection to the pool when the body was read to its
// end (trailers included) and the connection may be kept; otherwise it
// closes the connection rather than read what is left.
func (b *fbody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	cancelled := !b.stop()
	if b.eof && b.reuse && !cancelled {
		b.f.put(b.c)
	} else {
		b.c.conn.Close()
	}
	return nil
}

// get returns an idle connection to addr that the instance has not closed,
// or dials one (always when fresh). A dial error is the dialer's
// *net.OpError with Op "dial": the request was never sent.
func (f *forwarder) get(ctx context.Context, addr string, fresh bool) (*fconn, error) {
	if !fresh {
		for {
			c := f.popIdle(addr)
			if c == nil {
				break
			}
			if f.now().Sub(c.idleAt) < f.idleTimeout && c.alive() {
				c.reused = true
				return c, nil
			}
			c.conn.Close()
		}
	}
	nc, err := f.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &fconn{conn: nc, key: addr}
	c.br = bufio.NewReaderSize(c, 32<<10)
	c.bw = bufio.NewWriterSize(c, 32<<10)
	return c, nil
}

func (f *forwarder) popIdle(addr string) *fconn {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.idle[addr]
	if len(l) == 0 {
		return nil
	}
	c := l[len(l)-1]
	l[len(l)-1] = nil
	f.idle[addr] = l[:len(l)-1]
	return c
}

// put keeps c for the next request to its instance; beyond maxIdlePerHost
// idle connections it closes c instead.
func (f *forwarder) put(c *fconn) {
	c.idleAt = f.now()
	c.reused = false
	if c.br.Buffered() > 0 {
		// Bytes after the end of the response: the instance is confused.
		c.conn.Close()
		return
	}
	// An exchange's deadline must not end the connection's idle life (or
	// the next exchange's liveness peek).
	c.conn.SetDeadline(time.Time{})
	f.mu.Lock()
	var stale []*fconn
	if c.idleAt.Sub(f.lastSweep) > f.idleTimeout/2 {
		stale = f.sweepLocked(c.idleAt)
	}
	l := f.idle[c.key]
	if len(l) >= f.maxIdlePerHost {
		stale = append(stale, c)
	} else {
		f.idle[c.key] = append(l, c)
	}
	f.mu.Unlock()
	for _, s := range stale {
		s.conn.Close()
	}
}

// sweepLocked takes out of the pool every connection idle for idleTimeout
// or longer, and returns them to be closed. Connections to instances that
// are no longer routed to (a stopped stack) are never asked for again: the
// sweep, run from put at most twice per idleTimeout, is what closes them.
func (f *forwarder) sweepLocked(now time.Time) []*fconn {
	f.lastSweep = now
	var stale []*fconn
	for addr, l := range f.idle {
		keep := l[:0]
		for _, c := range l {
			if now.Sub(c.idleAt) >= f.idleTimeout {
				stale = append(stale, c)
			} else {
				keep = append(keep, c)
			}
		}
		clear(l[len(keep):])
		if len(keep) == 0 {
			delete(f.idle, addr)
		} else {
			f.idle[addr] = keep
		}
	}
	return stale
}

// CloseIdleConnections closes every idle connection, the fallback's too.
func (f *forwarder) CloseIdleConnections() {
	f.mu.Lock()
	idle := f.idle
	f.idle = map[string][]*fconn{}
	f.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.conn.Close()
		}
	}
	if ci, ok := f.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
