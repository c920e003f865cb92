// Package gateway is the HTTP entry point of tenantry: a reverse proxy that
// authenticates a tenant's API key, picks one of the stacks the tenant's
// route names (by weight), balances across that stack's instances with
// passive health, and passes the tenant to the instance in a header signed
// with that stack's key (package tenantsig). The `tenantry gateway`
// command runs it; rollouts move traffic by changing routes in the registry.
//
// Routing reads an immutable table built from a registry snapshot and held
// behind an atomic pointer. A route change is a table swap: a request keeps
// the stack and instance it started with, new requests see the new table.
//
// The gateway answers /healthz itself and every other path by proxying it;
// /metrics (labelled by tenant: it lists every customer and its traffic) is
// served only by AdminHandler, for a listener that is not the public one,
// and answers 404 on the public one.
package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tenantry/httpedge"
	"tenantry/jsonapi"
	"tenantry/registry"
)

// MaxBodyBytes is the largest request body the gateway accepts. Bodies are
// buffered so that a request can be resent to another instance when the
// first could not be connected to; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// Log keys.
const (
	logStack    = "stack"
	logInstance = "instance"
	logVersion  = "version"
	logErr      = "err"
)

// HeaderPreview names the stack a request previews: with a valid API key,
// the request goes to that stack only, not by the tenant's route. An
// unknown or stopped stack answers 404 unknown_stack.
const HeaderPreview = "X-Tenantry-Preview"

var errBadInstanceURL = errors.New("instance url must be absolute http(s)")

// SnapshotSource publishes registry snapshots; registry.Watcher is one.
// Current may return nil before the first snapshot is loaded. Subscribe
// returns a channel that receives every newer snapshot and a function that
// ends the subscription; a slow reader may miss intermediate snapshots but
// must eventually see the latest. Both are safe for concurrent use.
type SnapshotSource interface {
	Current() *registry.Snapshot
	Subscribe() (<-chan *registry.Snapshot, func())
}

// Config configures a Gateway. Zero values mean the documented defaults.
type Config struct {
	// Source provides registry snapshots. Required.
	Source SnapshotSource
	// HeaderKey is the tenant-header root key (tenantsig.RootKey of the
	// platform secret); the gateway derives each stack's key from it and
	// signs the tenant header of every request with the key of the stack it
	// goes to. Required.
	HeaderKey []byte
	// Transport sends requests to instances. Nil means a transport tuned
	// for a proxy: HTTP/1.1 keep-alive connections (up to DefaultConcurrency
	// idle per instance), the exchange done on the handler's goroutine, no
	// transparent compression.
	Transport http.RoundTripper
	// Logger receives operator logs; nil discards them.
	Logger *slog.Logger
	// Registerer registers the gateway's metrics; nil means a private
	// registry. AdminHandler's /metrics serves Gatherer, or Registerer when
	// it is also a Gatherer (a *prometheus.Registry is), or
	// prometheus.DefaultGatherer.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand returns a uniform integer in [0, n) for choosing a stack by
	// weight; nil means math/rand/v2.IntN. Balancing across the instances of
	// a stack uses its own randomness.
	Rand func(n int) int
	// UnhealthyAfter is the number of consecutive transport failures that
	// take an instance out of rotation; 0 means 3.
	UnhealthyAfter int
	// Cooldown is how long an instance stays out of rotation; 0 means 5s.
	Cooldown time.Duration
	// DrainTimeout bounds how long Serve waits for in-flight requests when
	// its context ends; 0 means 30s.
	DrainTimeout time.Duration
	// DefaultLimits are the request limits of a tenant that has none of its
	// own in the registry (per field); zero fields mean DefaultRate and
	// DefaultConcurrency. A request over a limit is answered 429
	// rate_limited or concurrency_limited with Retry-After.
	DefaultLimits registry.Limits
	// Limits are the timeouts and header limit of the server Serve runs;
	// zero fields mean httpedge's defaults.
	Limits httpedge.Limits
	// ResponseHeaderTimeout bounds how long the default Transport waits
	// for an instance's response headers once the request is sent; 0 means
	// 30s. An instance that takes longer is answered 504 gateway_timeout.
	// Ignored when Transport is set.
	ResponseHeaderTimeout time.Duration
	// Stats receives the per-stack request outcomes every StatsInterval
	// (requests, 5xx, a latency histogram), as the rollout analysis reads
	// them; nil publishes nothing. ID names this gateway's rows there;
	// default "gw-" and random hex.
	Stats         StatsSink
	StatsInterval time.Duration // 0 means 250ms
	ID            string
}

// Gateway is an http.Handler. Create it with New; call Start to follow
// the source's snapshots and Stop to stop following them.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	table   atomic.Pointer[table]
	health  healthSet
	limits  limiterSet
	proxy   *httputil.ReverseProxy
	metrics *metrics
	stats   statsSet
	promh   http.Handler

	// exchangeTimeout bounds one exchange with an instance: the server's
	// write timeout (Config.Limits).
	exchangeTimeout time.Duration

	mu        sync.Mutex
	quit      chan struct{}
	done      chan struct{}
	statsDone chan struct{}
}

// New validates cfg, fills defaults and builds the routing table from the
// source's current snapshot.
func New(cfg Config) (*Gateway, error) {
	if cfg.Source == nil {
		return nil, errors.New("gateway: Source is required")
	}
	if len(cfg.HeaderKey) == 0 {
		return nil, errors.New("gateway: HeaderKey is required")
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 30 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = defaultTransport(cfg.ResponseHeaderTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		r := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = r, r
	}
	if cfg.Gatherer == nil {
		if g, ok := cfg.Registerer.(prometheus.Gatherer); ok {
			cfg.Gatherer = g
		} else {
			cfg.Gatherer = prometheus.DefaultGatherer
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.IntN
	}
	if cfg.UnhealthyAfter <= 0 {
		cfg.UnhealthyAfter = 3
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = 250 * time.Millisecond
	}
	if cfg.ID == "" {
		cfg.ID = fmt.Sprintf("gw-%016x", rand.Uint64())
	}
	if cfg.DefaultLimits.Rate <= 0 {
		cfg.DefaultLimits.Rate = DefaultRate
	}
	if cfg.DefaultLimits.Concurrency <= 0 {
		cfg.DefaultLimits.Concurrency = DefaultConcurrency
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:     cfg,
		log:     cfg.Logger.With("subsystem", "gateway"),
		metrics: m,
		health:  healthSet{m: map[healthKey]*health{}},
		promh:   promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}),

		exchangeTimeout: cfg.Limits.WithDefaults().WriteTimeout,
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      &retryTransport{base: cfg.Transport, g: g},
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	g.table.Store(buildTable(nil, nil, &g.health, nil))
	g.Apply(cfg.Source.Current())
	return g, nil
}

// Start follows the source: every published snapshot replaces the routing
// table. Start after Stop is allowed.
func (g *Gateway) Start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.quit != nil {
		return
	}
	ch, cancel := g.cfg.Source.Subscribe()
	g.quit, g.done = make(chan struct{}), make(chan struct{})
	// A snapshot published between New and Subscribe is not lost.
	g.Apply(g.cfg.Source.Current())
	go g.follow(ch, cancel, g.quit, g.done)
	g.statsDone = make(chan struct{})
	if g.cfg.Stats != nil {
		go g.publishLoop(g.quit, g.statsDone)
	} else {
		close(g.statsDone)
	}
}

// Stop stops following the source and waits for the loop to end. The last
// table stays in use.
func (g *Gateway) Stop() {
	g.mu.Lock()
	quit, done, statsDone := g.quit, g.done, g.statsDone
	g.quit, g.done, g.statsDone = nil, nil, nil
	g.mu.Unlock()
	if quit == nil {
		return
	}
	close(quit)
	<-done
	<-statsDone
}

func (g *Gateway) follow(ch <-chan *registry.Snapshot, cancel func(), quit, done chan struct{}) {
	defer close(done)
	defer cancel()
	for {
		select {
		case <-quit:
			return
		case snap, ok := <-ch:
			if !ok {
				return
			}
			g.Apply(snap)
		}
	}
}

// Apply builds the routing table of snap and swaps it in. Requests already
// routed keep their stack and instance. A nil snapshot, or one older than
// the current, or the current itself, is ignored.
func (g *Gateway) Apply(snap *registry.Snapshot) {
	if snap == nil {
		return
	}
	if cur := g.table.Load(); cur.snap == snap || (cur.snap != nil && snap.Version < cur.snap.Version) {
		return
	}
	t := buildTable(snap, g.cfg.HeaderKey, &g.health, func(stack, url string, err error) {
		g.log.Warn("skipping instance with a bad url", logStack, stack, logInstance, url, logErr, err)
	})
	t.limits = g.limits.build(snap, g.cfg.DefaultLimits)
	g.table.Store(t)
	g.log.Debug("routing table swapped", logVersion, snap.Version)
}

// InstanceHealth is the gateway's view of one instance of the current table.
type InstanceHealth struct {
	Stack               string    `json:"stack"`
	URL                 string    `json:"url"`
	Available           bool      `json:"available"`
	InFlight            int64     `json:"in_flight"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	DownUntil           time.Time `json:"down_until,omitzero"`
}

// Health returns the passive health of every instance the current table
// routes to, ordered by stack and URL as the snapshot lists them.
func (g *Gateway) Health() []InstanceHealth {
	t := g.table.Load()
	now := g.cfg.Now().UnixNano()
	var out []InstanceHealth
	for _, p := range t.stacks {
		for _, u := range p.ups {
			ih := InstanceHealth{
				Stack: u.stack, URL: u.raw, Available: u.health.available(now),
				InFlight: u.health.inflight.Load(), ConsecutiveFailures: int(u.health.fails.Load()),
			}
			if d := u.health.downUntil.Load(); d > now {
				ih.DownUntil = time.Unix(0, d)
			}
			out = append(out, ih)
		}
	}
	return out
}

// AdminHandler serves what only operators may see, for an admin listener
// that is not the public one (`tenantry gateway --admin-listen`, loopback by
// default): GET /metrics (Prometheus), GET /healthz, and GET /instances
// (Health as JSON). Other paths answer 404.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.promh)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { g.serveHealthz(w) })
	mux.HandleFunc("GET /instances", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"instances": g.Health()})
	})
	mux.Handle("/", jsonapi.Unmatched(mux))
	return jsonapi.Canonical(mux)
}

// reqState is what the proxy needs to know about one request after it has
// been authenticated and routed. It is the request's context, so that one
// allocation carries both.
type reqState struct {
	context.Context
	cancel context.CancelFunc
	tenant string
	pool   *pool
	up     *upstream // changes when the transport moves the request
	body   []byte
	code   int
	// preview: sent by HeaderPreview, not by the route; left out of the
	// published stack stats (the rollout counts its probes itself).
	preview bool
}

type stateKey struct{}

func (s *reqState) Value(k any) any {
	if k == (stateKey{}) {
		return s
	}
	return s.Context.Value(k)
}

func stateOf(ctx context.Context) *reqState {
	s, _ := ctx.Value(stateKey{}).(*reqState)
	return s
}

// ServeHTTP authenticates, routes and proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !jsonapi.CanonicalPath(r.URL.Path) {
		// Never forwarded: an instance (or whatever an external stack runs)
		// might resolve "/v1/../admin" to a path the client may not reach.
		jsonapi.NotCanonical(w, r)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			jsonapi.WriteError(w, http.StatusMethodNotAllowed, jsonapi.CodeMethodNotAllowed, r.Method+" is not allowed on /healthz; allowed: GET, HEAD")
			return
		}
		g.serveHealthz(w)
		return
	case "/metrics":
		// Only on the admin listener (AdminHandler).
		jsonapi.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint")
		return
	}
	start := g.cfg.Now()
	t := g.table.Load()
	k := t.lookupKey(r.Header.Get("Authorization"))
	if k == nil {
		// Nothing of the body is read: a client without a key cannot hold
		// the connection by announcing a body it never sends.
		httpedge.DropConnection(w)
		g.reject(w, "", "", http.StatusUnauthorized, "unauthorized", "missing or unknown API key", start)
		return
	}
	if lim := t.limits[k.Tenant]; lim != nil {
		// Before the body is read: a tenant over its limits costs no more.
		if le := lim.acquire(start); le != nil {
			w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(le.retryAfter), 10))
			g.reject(w, "", k.Tenant, http.StatusTooManyRequests, le.code, le.msg, start)
			return
		}
		defer lim.release()
	}
	st := &reqState{Context: r.Context(), tenant: k.Tenant}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		code, err := st.readBody(r)
		if err != nil {
			g.reject(w, "", st.tenant, code, codeText(code), err.Error(), start)
			return
		}
	}
	if name := r.Header.Get(HeaderPreview); name != "" {
		// A preview request goes to the named stack only, whatever the
		// tenant's route says, and never elsewhere: a rollout tries a stack
		// with no tenant traffic this way (issue 13).
		p := t.stacks[name]
		if p == nil {
			g.reject(w, "", st.tenant, http.StatusNotFound, "unknown_stack", "preview: no running stack "+strconv.Quote(name), start)
			return
		}
		st.preview = true
		if st.up = p.pick(start.UnixNano(), nil); st.up != nil {
			st.pool = p
		}
	} else if w8 := t.route(st.tenant); w8 != nil && w8.total() > 0 {
		st.pool, st.up = w8.pick(g.cfg.Rand(w8.total()), start.UnixNano())
	}
	if st.up == nil {
		g.reject(w, "", st.tenant, http.StatusServiceUnavailable, "no_backend", "no stack instance available for this tenant", start)
		return
	}
	// The exchange with the instance is not cancelled when the client's
	// side of the connection closes: net/http cannot tell a client that
	// half-closed its socket after sending the request (and still reads the
	// answer) from one that is gone, and cancelling left the first with an
	// empty 200 for work that may or may not have been done (issue 16).
	// The instance's answer is relayed, so a request is done and answered,
	// or not done. The server's write timeout bounds the exchange: past it
	// no answer can reach the client anyway.
	st.Context, st.cancel = context.WithTimeout(context.WithoutCancel(r.Context()), g.exchangeTimeout)
	st.up.health.inflight.Add(1)
	defer g.finish(st, start)
	g.proxy.ServeHTTP(w, r.WithContext(st))
}

// finish runs even when the proxy aborts the handler (a response body copy
// that failed after the status was sent).
func (g *Gateway) finish(st *reqState, start time.Time) {
	st.cancel()
	st.up.health.inflight.Add(-1)
	d := g.cfg.Now().Sub(start)
	g.metrics.observe(st.pool.stack, st.tenant, st.code, d)
	if !st.preview {
		g.stats.observe(st.pool.stack, st.tenant, st.code, d)
	}
}

// lookupKey returns the API key of an "Authorization: Bearer <key>" header
// value, or nil. The hash must equal registry.HashAPIKey (hex SHA-256); it
// is computed here without allocating.
func (t *table) lookupKey(auth string) *registry.APIKey {
	const prefix = "Bearer "
	if t.snap == nil || len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(auth[len(prefix):])))
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	return t.snap.KeysByHash[string(hx[:])]
}

// readBody buffers the request body, up to MaxBodyBytes.
func (st *reqState) readBody(r *http.Request) (int, error) {
	if r.ContentLength > MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, errBodyTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return http.StatusBadRequest, errors.New("reading request body: " + err.Error())
	}
	if len(b) > MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, errBodyTooLarge
	}
	st.body = b
	return 0, nil
}

var errBodyTooLarge = errors.New("request body larger than 1 MiB")

func codeText(code int) string {
	if code == http.StatusRequestEntityTooLarge {
		return "body_too_large"
	}
	return "bad_request"
}

// rewrite aims the outbound request at the chosen instance and replaces
// whatever tenant headers the client sent with the signed tenant. The API key
// is not forwarded: instances trust the signature, not the key.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.Out.Context())
	pr.SetURL(st.up.url)
	pr.SetXForwarded()
	h := pr.Out.Header
	h.Del("Authorization")
	h.Del(HeaderPreview) // the gateway's own; the instance has no use for it
	st.pool.signer.SignRequest(pr.Out, st.tenant, g.cfg.Now())
	if st.body != nil {
		body := st.body
		pr.Out.Body = io.NopCloser(bytes.NewReader(body))
		pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		pr.Out.ContentLength = int64(len(body))
		pr.Out.TransferEncoding = nil
	}
}

func (g *Gateway) modifyResponse(resp *http.Response) error {
	if st := stateOf(resp.Request.Context()); st != nil {
		st.code = resp.StatusCode
	}
	return nil
}

// errorHandler answers a request the transport could not complete: 503
// no_backend when no instance received it (safe to retry), 504
// gateway_timeout when the instance did not answer in time, 502 bad_gateway
// when it failed otherwise. It always answers: a handler that writes
// nothing makes net/http send 200 with an empty body.
func (g *Gateway) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	var ns *NeverSentError
	var ne net.Error
	switch {
	case errors.As(err, &ns):
		st.code = http.StatusServiceUnavailable
		jsonapi.WriteError(w, st.code, "no_backend", "no instance of the stack accepted the connection")
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		st.code = http.StatusGatewayTimeout
		jsonapi.WriteError(w, st.code, "gateway_timeout", "the instance did not answer in time")
	default:
		st.code = http.StatusBadGateway
		jsonapi.WriteError(w, st.code, "bad_gateway", "the instance failed to answer")
	}
	g.log.Debug("proxy error", logStack, st.pool.stack, logInstance, st.up.raw, logErr, err)
}

// failed records a transport failure of u for passive health.
func (g *Gateway) failed(u *upstream, err error) {
	if u.health.failure(int32(g.cfg.UnhealthyAfter), g.cfg.Now(), g.cfg.Cooldown) {
		g.metrics.downs.WithLabelValues(u.stack).Inc()
		g.log.Warn("instance out of rotation", logStack, u.stack, logInstance, u.raw, "cooldown", g.cfg.Cooldown, logErr, err)
	}
}

func (g *Gateway) now() time.Time { return g.cfg.Now() }

func (g *Gateway) reject(w http.ResponseWriter, stack, tenant string, code int, errCode, msg string, start time.Time) {
	jsonapi.WriteError(w, code, errCode, msg)
	g.metrics.observe(stack, tenant, code, g.cfg.Now().Sub(start))
}

func (g *Gateway) serveHealthz(w http.ResponseWriter) {
	t := g.table.Load()
	var version int64
	if t.snap != nil {
		version = t.snap.Version
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, `{"status":"ok","registry_version":`)
	io.WriteString(w, strconv.FormatInt(version, 10))
	io.WriteString(w, "}\n")
}

// Serve serves the gateway on ln, with Config.Limits, until ctx ends, then
// stops accepting connections and waits up to Config.DrainTimeout for
// in-flight requests. It returns nil after a clean drain.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	return httpedge.Serve(ctx, httpedge.NewServer(g, g.cfg.Limits, g.log), ln, g.cfg.DrainTimeout)
}

// bufferPool lends the proxy 32 KiB copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

var _ SnapshotSource = registry.StaticSource{}
