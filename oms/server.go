package oms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tenantry/httpedge"
	"tenantry/jsonapi"
	"tenantry/tenantsig"
)

// MaxBodyBytes bounds a request body; a larger one is answered 413 too_large.
const MaxBodyBytes = 1 << 20

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// DB runs the tenant's transactions. Required.
	DB DB
	// HeaderKey verifies the signed tenant header: tenantsig.StackKey of
	// the stack this instance belongs to. Required.
	HeaderKey []byte
	// Stack is the name of that stack; a header signed for another stack is
	// refused. Required.
	Stack string
	// Logger receives internal errors; nil discards.
	Logger *slog.Logger
	// Registerer receives the server's metrics. Nil: a private registry.
	// AdminHandler's /metrics serves Registerer when it is also a
	// prometheus.Gatherer (as a *prometheus.Registry is), else
	// prometheus.DefaultGatherer.
	Registerer prometheus.Registerer
	// Retryable reports errors from DB that a client should retry (a paused
	// tenant): answered 503 tenant_unavailable with Retry-After: 1. Nil: none.
	Retryable func(error) bool
	// NotFound reports errors from DB that mean the tenant is unknown:
	// answered 404 tenant_not_found. Nil: none.
	NotFound func(error) bool
	// Now is the clock used to check header signatures; nil means time.Now.
	Now func() time.Time
	// WorkTimeout bounds the work of one API request. The work is not
	// cancelled when the client's side of the connection closes: net/http
	// cannot tell a client that half-closed its socket after sending the
	// request (and still reads the answer) from one that is gone, and
	// cancelling would answer such a client 503 for work that was never
	// the problem, or leave it without an answer to work that was done.
	// So a request is either done and answered, or not done. 0 means 30s.
	WorkTimeout time.Duration
	// Faults are test-only misbehaviour (a share of 500s, added latency);
	// the zero value injects nothing.
	Faults Faults
}

// DefaultWorkTimeout is Config.WorkTimeout's default.
const DefaultWorkTimeout = 30 * time.Second

// Server is the OMS HTTP API. It is an http.Handler, safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	admin    *http.ServeMux
	served   atomic.Int64 // API requests, for Faults.After
}

var _ http.Handler = (*Server)(nil)

// NewServer checks cfg, registers the server's metrics and returns the server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.DB == nil {
		return nil, errors.New("oms: Config.DB is required")
	}
	if len(cfg.HeaderKey) == 0 || cfg.Stack == "" {
		return nil, errors.New("oms: Config.HeaderKey and Config.Stack are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WorkTimeout <= 0 {
		cfg.WorkTimeout = DefaultWorkTimeout
	}
	if err := cfg.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("oms: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	var gatherer prometheus.Gatherer = prometheus.DefaultGatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oms_http_requests_total",
		Help: "OMS HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "oms_http_request_duration_seconds",
		Help:    "OMS HTTP request latency by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	for _, c := range []prometheus.Collector{s.requests, s.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	s.routes()
	s.adminRoutes(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return s, nil
}

func serveHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// AdminHandler serves what only operators may see, for an admin listener
// that is not the public one (`tenantry oms --admin-listen`, loopback by
// default): GET /metrics and GET /healthz. Other paths answer 404.
func (s *Server) AdminHandler() http.Handler { return jsonapi.Canonical(s.admin) }

func (s *Server) adminRoutes(metrics http.Handler) {
	s.admin = http.NewServeMux()
	s.admin.Handle("GET /metrics", metrics)
	s.admin.HandleFunc("GET /healthz", serveHealthz)
	s.admin.Handle("/", jsonapi.Unmatched(s.admin))
}

// routes registers the public API. /metrics is not among them: it is on the
// admin handler only, and answers 404 here like any unknown path.
func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", serveHealthz)

	s.api("POST /v1/products", s.createProduct)
	s.api("GET /v1/products/{id}", s.getProduct)
	s.api("POST /v1/locations", s.createLocation)
	s.api("GET /v1/locations/{id}", s.getLocation)
	s.api("POST /v1/customers", s.createCustomer)
	s.api("GET /v1/customers/{id}", s.getCustomer)

	s.api("PUT /v1/inventory/{product_id}/{location_id}", s.setInventory)
	s.api("POST /v1/inventory/{product_id}/{location_id}/receipts", s.receiveInventory)
	s.api("GET /v1/inventory", s.listInventory)

	s.api("POST /v1/orders", s.createOrder)
	s.api("GET /v1/orders", s.listOrders)
	s.api("GET /v1/orders/{id}", s.getOrder)
	s.api("POST /v1/orders/{id}/fulfil", s.fulfilOrder)
	s.api("POST /v1/orders/{id}/cancel", s.cancelOrder)

	// Unknown paths answer 404 not_found, known paths with another method
	// 405 method_not_allowed with Allow, both in JSON.
	s.mux.Handle("/", jsonapi.Unmatched(s.mux))
}

// ServeHTTP serves the API and records metrics by route pattern.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if jsonapi.CanonicalPath(r.URL.Path) {
		s.mux.ServeHTTP(rec, r)
	} else {
		// The mux would redirect to the cleaned path, in HTML.
		jsonapi.NotCanonical(rec, r)
	}
	route := r.Pattern // set by the mux on r itself
	if route == "" || route == "/" {
		route = "unmatched"
	}
	s.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
	s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// request is an authenticated API request. Its Context is not cancelled by
// the client going away, only by Config.WorkTimeout (see there).
type request struct {
	*http.Request
	tenant string
	ctx    context.Context
}

// Context is the context of the request's work.
func (r *request) Context() context.Context { return r.ctx }

// handler serves one authenticated API request. It writes the response
// itself on success and returns an error otherwise; the error becomes the
// response in exactly one place (writeError).
type handler func(w http.ResponseWriter, r *request) error

// tenantRe is registry.ValidateTenantID's rule (at most 61 characters, so
// that the role t_<id> fits PostgreSQL's 63-byte identifiers).
var tenantRe = regexp.MustCompile(`^[a-z][a-z0-9-]{1,60}$`)

// api registers h behind tenant authentication: the tenant comes only from
// the signed header.
func (s *Server) api(pattern string, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		tenant, err := tenantsig.Verify(r, s.cfg.HeaderKey, s.cfg.Stack, s.cfg.Now())
		if err == nil && !tenantRe.MatchString(tenant) {
			err = errors.New("tenant id malformed")
		}
		if err != nil {
			// Answered without reading the body, on a connection that
			// closes: an unsigned client cannot hold it open.
			httpedge.DropConnection(w)
			s.writeError(w, r, apiErr(CodeUnauthorized, "%v", err))
			return
		}
		if s.cfg.Faults.Enabled() {
			if err := s.cfg.Faults.inject(s.served.Add(1)); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.WorkTimeout)
		defer cancel()
		if err := h(w, &request{Request: r, tenant: tenant, ctx: ctx}); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := s.toAPIError(err)
	if internal {
		s.log.Error("oms request", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.Code == CodeTenantUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status(), map[string]*Error{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte{'\n'})
}

// readBody reads the request body (at most MaxBodyBytes) and decodes it
// strictly into v: one JSON value, no unknown fields. It returns the raw
// bytes for the idempotency hash.
func readBody(w http.ResponseWriter, r *request, v any) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, err
	}
	return body, decodeStrict(body, v)
}

// decodeStrict decodes body into v with jsonapi.Decode: exactly one JSON
// value, valid UTF-8, no duplicate keys, field names matched exactly, no
// unknown fields.
func decodeStrict(body []byte, v any) error {
	err := jsonapi.Decode(body, v)
	var de *jsonapi.DecodeError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jsonapi.ErrUnknownField):
		return apiErr(CodeUnknownField, "%v", err)
	case errors.Is(err, jsonapi.ErrType) && errors.As(err, &de):
		return invalid("field %q %s", de.Path, de.Detail)
	}
	return apiErr(CodeInvalidJSON, "%v", err)
}

// pathID parses the path value name as a positive id.
func pathID(r *request, name string) (int64, error) {
	return parseID(name, r.PathValue(name))
}

// parseID parses v as a positive id: decimal digits only, without a sign
// or leading zeros, so that one id has one spelling ("+1", "01" and " 1"
// are refused, not read as 1).
func parseID(name, v string) (int64, error) {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != v {
		return 0, invalid("%s must be a positive integer, not %q", name, v)
	}
	return id, nil
}

// read runs fn in a read-only transaction and answers 200 with its result.
func (s *Server) read(w http.ResponseWriter, r *request, fn func(ctx context.Context, tx pgx.Tx) (any, error)) error {
	ctx := r.Context()
	var out any
	err := s.cfg.DB.ReadTx(ctx, r.tenant, func(tx pgx.Tx) error {
		var err error
		out, err = fn(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
