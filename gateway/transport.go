package gateway

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
)

// maxAttempts bounds how many instances one request may be tried on.
const maxAttempts = 3

// NeverSentError wraps the last error of a request that no instance received
// (every attempt failed to connect). The gateway answers it with 503, which
// tells the client that a retry is safe.
type NeverSentError struct{ Err error }

func (e *NeverSentError) Error() string {
	return "no instance accepted the connection: " + e.Err.Error()
}
func (e *NeverSentError) Unwrap() error { return e.Err }

// retryTransport sends a request to the instance the gateway picked and,
// when the connection could not even be made, to another instance of the
// same stack. It never retries a request that may have reached an instance:
// once bytes may have been written, a failure is the client's 502.
//
// net/http's Transport has its own, narrower retry: a request that failed on
// a reused keep-alive connection the server had closed is replayed on a new
// connection to the same instance when it is idempotent (GET, HEAD, OPTIONS,
// TRACE, or any method with an Idempotency-Key or X-Idempotency-Key header)
// and its body can be rewound; a request net/http knows it wrote nothing of is
// replayed whatever its method. A replay that then fails to connect comes back
// here as a dial error and moves to another instance. A non-idempotent request
// without an idempotency key that died on a closed keep-alive connection is
// not replayed by anyone: the server may have processed it.
type retryTransport struct {
	base http.RoundTripper
	g    *Gateway
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req.Context())
	if st == nil {
		return t.base.RoundTrip(req)
	}
	for attempt := 1; ; attempt++ {
		resp, err := t.base.RoundTrip(req)
		if err == nil {
			st.up.health.success()
			return resp, nil
		}
		if req.Context().Err() != nil {
			// The client went away; that says nothing about the instance.
			return nil, err
		}
		t.g.failed(st.up, err)
		if !neverSent(err) {
			return nil, err
		}
		next := st.pool.pick(t.g.now().UnixNano(), st.up)
		if next == nil || attempt >= maxAttempts || (req.Body != nil && req.GetBody == nil) {
			return nil, &NeverSentError{Err: err}
		}
		r2, err := redirect(req, st.up, next)
		if err != nil {
			return nil, err
		}
		// The signature covers the path, which differs when the instances'
		// URLs have different base paths.
		st.pool.signer.SignRequest(r2, st.tenant, t.g.now())
		t.g.metrics.retries.WithLabelValues(st.pool.stack).Inc()
		st.up.health.inflight.Add(-1)
		next.health.inflight.Add(1)
		st.up, req = next, r2
	}
}

// redirect returns a copy of req aimed at instance to instead of from, with a
// fresh body.
func redirect(req *http.Request, from, to *upstream) (*http.Request, error) {
	r2 := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host = to.url.Scheme, to.url.Host
	u.Path = to.url.Path + strings.TrimPrefix(req.URL.Path, from.url.Path)
	u.RawPath = ""
	r2.URL = &u
	r2.Host = ""
	if req.Body != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r2.Body = b
	}
	return r2, nil
}

// neverSent reports whether err means the request cannot have reached the
// instance: the connection was never established.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// defaultTransport is tuned for one hop to a few instances on a fast
// network: keep-alive connections reused by concurrent requests instead of
// dialling (maxIdlePerInstance idle per instance: one per request in flight
// at the tenants' default concurrency), HTTP/1.1 only, no transparent
// compression (bodies pass through as the instance encoded them), and a
// bound on the wait for response headers so that a stuck instance does not
// hold the client's request (and the gateway's goroutine) forever. http://
// instances get the forwarder; https ones and upgrades the same settings on
// an *http.Transport.
func defaultTransport(responseHeaderTimeout time.Duration) http.RoundTripper {
	const idleTimeout = 90 * time.Second
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &forwarder{
		dial:                  dial,
		responseHeaderTimeout: responseHeaderTimeout,
		idleTimeout:           idleTimeout,
		maxIdlePerHost:        maxIdlePerInstance,
		now:                   time.Now,
		idle:                  map[string][]*fconn{},
		fallback: &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			MaxIdleConns:          4096,
			MaxIdleConnsPerHost:   maxIdlePerInstance,
			IdleConnTimeout:       idleTimeout,
			ExpectContinueTimeout: time.Second,
			ResponseHeaderTimeout: responseHeaderTimeout,
			DisableCompression:    true,
			ForceAttemptHTTP2:     false,
			WriteBufferSize:       32 << 10,
			ReadBufferSize:        32 << 10,
		},
	}
}

// maxIdlePerInstance is how many idle connections the default transport
// keeps per instance: DefaultConcurrency, so that a tenant at its limit
// never dials.
const maxIdlePerInstance = DefaultConcurrency
