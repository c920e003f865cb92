package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"tenantry/jsonapi"
	"tenantry/tenantsig"
)

// The public listener is served by fasthttp (Serve) rather than net/http.
// In a profile of the gateway in front of a trivial backend, net/http's
// server spent about as much per request as a whole direct request: a
// background read per request (a goroutine and a read that finds nothing),
// a response writer and its buffers allocated per request, and the
// ReverseProxy's copies of the request and its headers. fasthttp reads and
// answers on the connection's goroutine with pooled request contexts, and
// its HostClient keeps pooled connections per instance; the hop costs
// about a third less CPU (README, Benchmarks).
//
// What the gateway decides is the same code on both paths (answerLocally,
// admit, pick, the tenantsig.Signer); ServeHTTP stays the http.Handler for
// embedding and for what this path hands over to it (protocol upgrades).
//
// Differences from the net/http path, all bounded: an authenticated
// request's body is read (up to MaxBodyBytes, within the read timeout)
// before its tenant's limits are checked; the whole answer of an instance,
// not only its headers, must arrive within ResponseHeaderTimeout, and it is
// buffered (up to maxResponseBodyBytes) rather than streamed; an
// instance's response headers may take up to fastReadBufferSize; response
// trailers arrive as headers.

// maxResponseBodyBytes bounds an instance's answer, which the fast path
// buffers. An instance that sends more is answered 502 bad_gateway.
const maxResponseBodyBytes = 64 << 20

// fastReadBufferSize is the read buffer of a connection to an instance,
// and so the most its response headers may take.
const fastReadBufferSize = 64 << 10

// Serve serves the gateway on ln, with Config.Limits, until ctx ends, then
// stops accepting connections and waits up to Config.DrainTimeout for
// in-flight requests. It returns nil after a clean drain.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	l := g.cfg.Limits.WithDefaults()
	srv := &fasthttp.Server{
		Handler:        g.serveFast,
		ErrorHandler:   g.serveFastError,
		HeaderReceived: g.headerReceived,
		// fasthttp has one timeout for a request's headers and body:
		// ReadHeaderTimeout has no counterpart.
		ReadTimeout:  l.ReadTimeout,
		WriteTimeout: l.WriteTimeout,
		IdleTimeout:  l.IdleTimeout,
		// A request line and headers that do not fit the read buffer are
		// answered 431 (serveFastError).
		ReadBufferSize: l.MaxHeaderBytes,
		// The read buffers (64 KiB by default) go back to a pool while a
		// connection is idle, so that idle keep-alive connections hold none.
		ReduceMemoryUsage:            true,
		MaxRequestBodySize:           MaxBodyBytes,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{g},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.DrainTimeout)
	defer cancel()
	err := srv.ShutdownWithContext(sctx)
	if serr := <-errc; serr != nil && err == nil {
		err = serr
	}
	return err
}

// fastLogger sends fasthttp's own messages to the gateway's log, at
// debug level as httpedge does with net/http's.
type fastLogger struct{ g *Gateway }

func (l fastLogger) Printf(format string, args ...any) {
	l.g.log.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)), "from", "fasthttp")
}

// headerReceived runs once a request's headers are read, before its body:
// a request with a body but without a valid API key gets a body limit of
// one byte, so that its body is never waited for (serveFastError answers
// it 401 and closes the connection, as ServeHTTP does).
func (g *Gateway) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() == 0 || h.ContentLength() == -2 {
		return fasthttp.RequestConfig{}
	}
	if g.table.Load().lookupKey(string(h.Peek("Authorization"))) == nil {
		g.keyless.Store(h, struct{}{})
		return fasthttp.RequestConfig{MaxRequestBodySize: 1}
	}
	g.keyless.Delete(h)
	return fasthttp.RequestConfig{}
}

// serveFastError answers a request fasthttp could not read: headers too
// large (431), a body over its limit (the request is decided as usual, its
// body counting as too large: 401 without a key, 413 with one), a read
// timeout (400, as ServeHTTP answers a body that stops arriving), anything
// else malformed (400). The connection is closed after the answer.
func (g *Gateway) serveFastError(c *fasthttp.RequestCtx, err error) {
	w := &fastWriter{c: c}
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		jsonapi.WriteError(w, http.StatusRequestHeaderFieldsTooLarge, jsonapi.CodeHeaderTooLarge, "request headers too large")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// fasthttp forgets the request when a chunked body overflows: what
		// headerReceived learned of it decides then.
		_, keyless := g.keyless.LoadAndDelete(&c.Request.Header)
		forgotten := len(c.Request.Header.RawHeaders()) == 0
		if keyless && forgotten {
			c.SetConnectionClose()
			g.reject(w, errUnauthorized, g.cfg.Now())
			return
		}
		if forgotten {
			g.reject(w, &rejection{status: http.StatusRequestEntityTooLarge, code: codeText(http.StatusRequestEntityTooLarge), msg: errBodyTooLarge.Error()}, g.cfg.Now())
			return
		}
		g.handleFast(c, true)
	case errors.As(err, &ne) && ne.Timeout():
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.CodeBadRequest, "reading request: "+err.Error())
	default:
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.CodeBadRequest, "malformed request: "+err.Error())
	}
}

func (g *Gateway) serveFast(c *fasthttp.RequestCtx) {
	if c.Request.Header.ContentLength() != 0 {
		g.keyless.Delete(&c.Request.Header)
	}
	g.handleFast(c, false)
}

// handleFast authenticates, routes and forwards one request, as ServeHTTP
// does. bodyTooLarge: fasthttp stopped reading the body at its limit.
func (g *Gateway) handleFast(c *fasthttp.RequestCtx, bodyTooLarge bool) {
	w := &fastWriter{c: c}
	if !validHeaders(&c.Request.Header) {
		// fasthttp lets through header names that are not tokens ("X A"),
		// which net/http refuses and an instance might read otherwise.
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.CodeBadRequest, "invalid header name or value")
		c.SetConnectionClose()
		return
	}
	if len(c.Request.Header.Peek("Upgrade")) > 0 && !bodyTooLarge {
		g.upgradeHandler(c)
		return
	}
	// The target parsed as net/http parses it, so that the path checked,
	// forwarded and signed is the one ServeHTTP would see.
	in, err := url.ParseRequestURI(string(c.RequestURI()))
	if err != nil {
		jsonapi.WriteError(w, http.StatusBadRequest, jsonapi.CodeBadRequest, "malformed request target")
		c.SetConnectionClose()
		return
	}
	method := string(c.Method())
	if g.answerLocally(w, method, in.Path) {
		return
	}
	start := g.cfg.Now()
	t := g.table.Load()
	st, rej := g.admit(t, string(c.Request.Header.Peek("Authorization")), start)
	if rej != nil {
		if rej.drop {
			c.SetConnectionClose()
		}
		g.reject(w, rej, start)
		return
	}
	defer st.release()
	if bodyTooLarge {
		g.reject(w, &rejection{tenant: st.tenant, status: http.StatusRequestEntityTooLarge, code: codeText(http.StatusRequestEntityTooLarge), msg: errBodyTooLarge.Error()}, start)
		return
	}
	if rej := g.pick(t, st, string(c.Request.Header.Peek(HeaderPreview)), start); rej != nil {
		g.reject(w, rej, start)
		return
	}
	st.up.health.inflight.Add(1)
	defer g.finishFast(st, start)
	g.forwardFast(c, st, in, method, start)
}

// validHeaders reports whether every header name of h is a token and no
// value holds a control character other than a tab (RFC 9110 5.1, 5.5).
func validHeaders(h *fasthttp.RequestHeader) bool {
	ok := true
	h.VisitAll(func(k, v []byte) {
		if !ok {
			return
		}
		if len(k) == 0 {
			ok = false
			return
		}
		for _, b := range k {
			if !tokenByte[b] {
				ok = false
				return
			}
		}
		for _, b := range v {
			if (b < ' ' && b != '\t') || b == 0x7f {
				ok = false
				return
			}
		}
	})
	return ok
}

// tokenByte marks the bytes of an HTTP token (RFC 9110 5.6.2).
var tokenByte = func() (t [256]bool) {
	for _, b := range []byte("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
		t[b] = true
	}
	return t
}()

// upgradeHandler serves a protocol upgrade (WebSocket) through
// ServeHTTP, whose ReverseProxy relays the switched connection.
func (g *Gateway) upgradeHandler(c *fasthttp.RequestCtx) {
	g.upgradeOnce.Do(func() { g.upgrade = fasthttpadaptor.NewFastHTTPHandler(g) })
	g.upgrade(c)
}

func (g *Gateway) finishFast(st *reqState, start time.Time) {
	st.up.health.inflight.Add(-1)
	d := g.cfg.Now().Sub(start)
	g.metrics.observe(st.pool.stack, st.tenant, st.code, d)
	if !st.preview {
		g.stats.observe(st.pool.stack, st.tenant, st.code, d)
	}
}

// forwardFast sends the request to st.up and relays the answer. A request
// no instance received (every connection refused) moves to another
// instance of the stack, up to maxAttempts; a failure after that is the
// client's, answered as errorHandler answers it. The exchange is bounded by
// the server's write timeout, as ServeHTTP's is, and is not cancelled when
// the client goes away (issue 16).
func (g *Gateway) forwardFast(c *fasthttp.RequestCtx, st *reqState, in *url.URL, method string, start time.Time) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	deadline := start.Add(g.exchangeTimeout)
	for attempt := 1; ; attempt++ {
		g.outbound(req, c, st, in, method)
		err := st.up.fast.DoDeadline(req, resp, deadline)
		if err == nil {
			st.up.health.success()
			break
		}
		g.failed(st.up, err)
		var next *upstream
		if neverSent(err) && attempt < maxAttempts {
			next = st.pool.pick(g.now().UnixNano(), st.up)
		}
		if next == nil {
			if neverSent(err) {
				err = &NeverSentError{Err: err}
			}
			g.answerError(&fastWriter{c: c}, st, err)
			return
		}
		g.metrics.retries.WithLabelValues(st.pool.stack).Inc()
		st.up.health.inflight.Add(-1)
		next.health.inflight.Add(1)
		st.up = next
		req.Reset()
	}
	st.code = resp.StatusCode()
	relay(c, resp)
}

// hopHeaders are the hop-by-hop headers, which apply to one connection and
// are not forwarded in either direction (RFC 9110 7.6.1), as ReverseProxy
// drops them.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// outbound fills req with the request of c aimed at st.up: what
// ServeHTTP's rewrite does, on fasthttp's request. The client's headers
// pass except hop-by-hop ones, the API key, the preview header and
// X-Forwarded-*/Forwarded (replaced); the tenant header is signed.
func (g *Gateway) outbound(req *fasthttp.Request, c *fasthttp.RequestCtx, st *reqState, in *url.URL, method string) {
	c.Request.Header.CopyTo(&req.Header)
	h := &req.Header
	h.ResetConnectionClose()
	dropConnectionHeaders(h, c.Request.Header.Peek("Connection"))
	trailers := strings.Contains(strings.ToLower(string(c.Request.Header.Peek("Te"))), "trailers")
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
	for _, k := range []string{"Authorization", HeaderPreview, "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		h.Del(k)
	}
	prior := c.Request.Header.PeekAll("X-Forwarded-For")
	xff := c.RemoteIP().String()
	if len(prior) > 0 {
		parts := make([]string, 0, len(prior)+1)
		for _, p := range prior {
			parts = append(parts, string(p))
		}
		xff = strings.Join(append(parts, xff), ", ")
	}
	h.Set("X-Forwarded-For", xff)
	if host := c.Request.Header.Host(); len(host) > 0 {
		h.SetBytesV("X-Forwarded-Host", host)
	}
	h.Set("X-Forwarded-Proto", "http")
	if len(c.Request.Header.Peek("User-Agent")) == 0 {
		h.Del("User-Agent")
	}

	path, query := targetOf(st.up.url, in)
	uri := path
	if query != "" {
		uri += "?" + query
	}
	h.SetMethod(method)
	h.SetRequestURI(uri)
	h.SetHost(st.up.url.Host)
	req.URI().DisablePathNormalizing = true
	req.UseHostHeader = true
	if st.up.url.Scheme == "https" {
		req.URI().SetScheme("https")
	}
	sig := st.pool.signer.Sign(st.tenant, method, path, query, g.cfg.Now())
	h.Set(tenantsig.HeaderTenant, st.tenant)
	h.Set(tenantsig.HeaderSignature, sig)
	if body := c.Request.Body(); len(body) > 0 {
		req.SetBodyRaw(body)
	} else {
		req.ResetBody()
	}
}

// dropConnectionHeaders deletes the headers the client's Connection header
// names: they are hop-by-hop too.
func dropConnectionHeaders(h *fasthttp.RequestHeader, conn []byte) {
	for f := range strings.SplitSeq(string(conn), ",") {
		if f = strings.TrimSpace(f); f != "" {
			h.Del(f)
		}
	}
}

// targetOf is the escaped path and the query of in aimed at target, as
// httputil.ProxyRequest.SetURL joins them (the instance's base path first,
// the queries of both).
func targetOf(target, in *url.URL) (string, string) {
	if target.Path == "" && target.RawQuery == "" {
		return in.EscapedPath(), in.RawQuery
	}
	out := &http.Request{URL: new(url.URL)}
	*out.URL = *in
	(&httputil.ProxyRequest{Out: out}).SetURL(target)
	return out.URL.EscapedPath(), out.URL.RawQuery
}

// relay writes resp, an instance's answer, as c's response, without
// hop-by-hop headers.
func relay(c *fasthttp.RequestCtx, resp *fasthttp.Response) {
	head := c.IsHead()
	contentLength := resp.Header.ContentLength()
	conn := append([]byte(nil), resp.Header.Peek("Connection")...)
	resp.CopyTo(&c.Response)
	h := &c.Response.Header
	h.ResetConnectionClose()
	for f := range strings.SplitSeq(string(conn), ",") {
		if f = strings.TrimSpace(f); f != "" {
			h.Del(f)
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if head && contentLength >= 0 {
		h.SetContentLength(contentLength)
	}
}

// fastWriter is an http.ResponseWriter that writes c's response: the
// gateway's own answers (jsonapi.WriteError, /healthz) are the same code
// on both paths.
type fastWriter struct {
	c      *fasthttp.RequestCtx
	header http.Header
	wrote  bool
}

func (w *fastWriter) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

func (w *fastWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	for k, vs := range w.header {
		if strings.EqualFold(k, "Connection") {
			w.c.SetConnectionClose()
			continue
		}
		for _, v := range vs {
			w.c.Response.Header.Add(k, v)
		}
	}
	w.c.SetStatusCode(code)
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.c.Write(p)
}

var _ http.ResponseWriter = (*fastWriter)(nil)

// fastClients keeps one fasthttp.HostClient per instance address, across
// routing tables, so that a table swap keeps the pooled connections.
type fastClients struct {
	responseTimeout time.Duration
	dial            func(network, addr string) (net.Conn, error)

	mu sync.Mutex
	m  map[string]*fasthttp.HostClient
}

// get returns the client of u's address, creating it on first use.
func (fc *fastClients) get(u *url.URL) *fasthttp.HostClient {
	key := u.Scheme + "://" + u.Host
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if c := fc.m[key]; c != nil {
		return c
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	c := &fasthttp.HostClient{
		Addr:  addr,
		IsTLS: u.Scheme == "https",
		Dial:  func(addr string) (net.Conn, error) { return fc.dial("tcp", addr) },
		// As many connections as requests in flight: a request never
		// waits for another's connection.
		MaxConns:            1 << 20,
		MaxIdleConnDuration: 90 * time.Second,
		// fasthttp bounds reading the whole answer, not only its headers.
		ReadTimeout:                   fc.responseTimeout,
		WriteTimeout:                  fc.responseTimeout,
		ReadBufferSize:                fastReadBufferSize,
		WriteBufferSize:               32 << 10,
		MaxResponseBodySize:           maxResponseBodyBytes,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
	}
	c.RetryIfErr = func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
		// io.EOF: the connection ended before the first byte of an answer
		// (Do returns it as ErrConnectionClosed).
		if err != io.EOF && !errors.Is(err, fasthttp.ErrConnectionClosed) {
			return false, false
		}
		// The instance closed a pooled connection: the others are likely
		// closed too (it restarted, or closed its idle connections), and
		// fasthttp would take the next one from the pool. The replay
		// dials.
		c.CloseIdleConnections()
		return false, attempts < maxAttempts && idempotent(req)
	}
	if fc.m == nil {
		fc.m = map[string]*fasthttp.HostClient{}
	}
	fc.m[key] = c
	return c
}

// idempotent is net/http's replay rule, which the forwarder follows too:
// a request that met a connection the instance had closed, before any byte
// of an answer came back, is sent again on a new connection when it is
// idempotent — GET, HEAD, OPTIONS, TRACE, or an Idempotency-Key or
// X-Idempotency-Key header. Dial errors are not retried by the client: the
// gateway moves the request to another instance.
func idempotent(req *fasthttp.Request) bool {
	switch string(req.Header.Method()) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return len(req.Header.Peek("Idempotency-Key")) > 0 || len(req.Header.Peek("X-Idempotency-Key")) > 0
}
