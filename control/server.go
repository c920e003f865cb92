package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tenantry/httpedge"
	"tenantry/jsonapi"
	"tenantry/registry"
)

// maxBody bounds request bodies of the control API.
const maxBody = 1 << 20

// Limits are the HTTP server limits of the control API: httpedge's defaults,
// except that a response may take up to five minutes, since some commands
// (a move's promote, a stack deploy, a cluster create) answer when their
// work is done.
var Limits = httpedge.Limits{WriteTimeout: 5 * time.Minute}

// Server is the control plane HTTP API. Every /v1 request needs
// `Authorization: Bearer <admin token>`; /healthz does not.
type Server struct {
	svc   *Service
	token string
	mux   *http.ServeMux
	log   *slog.Logger
	// extra routes added by other subsystems (moves, stacks).
}

// NewServer returns the API over svc, authenticated by token.
func NewServer(svc *Service, token string) (*Server, error) {
	if token == "" {
		return nil, errors.New("control: admin token is required")
	}
	s := &Server{svc: svc, token: token, mux: http.NewServeMux(), log: svc.log}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	// Process metrics (Go runtime, process) of the control plane, like every
	// tenantry process; unauthenticated, as Prometheus scrapes it.
	s.mux.Handle("GET /metrics", promhttp.Handler())
	s.Handle("GET /v1/status", s.status)
	s.Handle("GET /v1/clusters", s.listClusters)
	s.Handle("POST /v1/clusters", s.createCluster)
	s.Handle("POST /v1/clusters/register", s.registerCluster)
	s.Handle("GET /v1/clusters/{name}", s.clusterStatus)
	s.Handle("POST /v1/clusters/{name}/standbys", s.addStandby)
	s.Handle("DELETE /v1/clusters/{name}/standbys/{member}", s.removeStandby)
	s.Handle("PUT /v1/clusters/{name}/sync", s.setSync)
	s.Handle("GET /v1/aliases", s.listAliases)
	s.Handle("POST /v1/aliases", s.createAlias)
	s.Handle("GET /v1/tenants", s.listTenants)
	s.Handle("POST /v1/tenants", s.createTenant)
	s.Handle("GET /v1/tenants/{id}", s.getTenant)
	s.tenantRoutes()
	s.Handle("PUT /v1/tenants/{id}/limits", s.setTenantLimits)
	notFound := jsonapi.Unmatched(s.mux)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.unmatched(w, r, notFound) })
	return s, nil
}

// Mount serves h for every path under prefix (a pattern ending in "/"),
// without the admin token check: h authenticates its own requests (the
// dashboard, with its session cookie).
func (s *Server) Mount(prefix string, h http.Handler) { s.mux.Handle(prefix, h) }

// ErrorText is how the API shows an error to the CLI: its message and
// stable code. The dashboard shows a refused action the same way.
func ErrorText(err error) string {
	_, code := statusOf(err)
	return (&APIError{Code: code, Message: err.Error()}).Error()
}

// HandlerFunc is an API handler: it returns the status and body to send, or
// an error that the one error table turns into a status and code.
type HandlerFunc func(r *http.Request) (int, any, error)

// Handle adds an authenticated API route.
func (s *Server) Handle(pattern string, h HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			// Answered without reading the body, on a connection that
			// closes: a client without the token cannot hold it open.
			httpedge.DropConnection(w)
			writeError(w, s.log, fmt.Errorf("admin token: %w", ErrUnauthorized))
			return
		}
		// The work is not cancelled when the client's side of the
		// connection closes: net/http cannot tell a client that half-closed
		// its socket after sending (and still reads the answer) from one
		// that is gone, and cancelling answered the first 500 for work half
		// done. The server's write timeout bounds it instead: past it no
		// answer can reach the client anyway.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), Limits.WithDefaults().WriteTimeout)
		defer cancel()
		status, body, err := h(r.WithContext(ctx))
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		writeJSON(w, status, body)
	})
}

// ServeHTTP serves the API. A request for no endpoint (an unknown path, a
// known path with another method, a path not in canonical form) is answered
// in JSON, and only to a client with the admin token: without it, 401 comes
// first, so the API's shape is not probed by strangers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !jsonapi.CanonicalPath(r.URL.Path) {
		s.unmatched(w, r, jsonapi.NotCanonical)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// unmatched answers a request for no endpoint with answer, after the token
// check.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request, answer http.HandlerFunc) {
	if !s.authorized(r) {
		httpedge.DropConnection(w)
		writeError(w, s.log, fmt.Errorf("admin token: %w", ErrUnauthorized))
		return
	}
	answer(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}

// DecodeJSON reads a JSON body into v: at most 1 MiB, decoded strictly by
// jsonapi.Decode (one value, valid UTF-8, no duplicate keys, field names
// matched exactly, no unknown fields). Every refusal wraps
// registry.ErrInvalid.
func DecodeJSON(r *http.Request, v any) error {
	// Read the whole body first: a decoder over a limited reader would
	// accept a valid document followed by padding past the limit.
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("%w: request body: %v", registry.ErrInvalid, err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("%w: request body larger than %d bytes", registry.ErrInvalid, maxBody)
	}
	if err := jsonapi.Decode(b, v); err != nil {
		return fmt.Errorf("%w: request body: %w", registry.ErrInvalid, err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	status, code := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		log.Error("request failed", "err", err)
	}
	e := &APIError{Code: code, Message: msg}
	var d interface{ Details() map[string]any }
	if errors.As(err, &d) {
		e.Details = d.Details()
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func (s *Server) status(r *http.Request) (int, any, error) {
	st, err := s.svc.Status(r.Context())
	return http.StatusOK, st, err
}

func (s *Server) snapshot(ctx context.Context) (*registry.Snapshot, error) {
	return s.svc.Snapshot(ctx)
}

func (s *Server) listClusters(r *http.Request) (int, any, error) {
	snap, err := s.snapshot(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := make([]*registry.Cluster, 0, len(snap.Clusters))
	for _, c := range snap.Clusters {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return http.StatusOK, map[string]any{"clusters": out}, nil
}

func (s *Server) listAliases(r *http.Request) (int, any, error) {
	snap, err := s.snapshot(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := make([]*registry.Alias, 0, len(snap.Aliases))
	for _, a := range snap.Aliases {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return http.StatusOK, map[string]any{"aliases": out}, nil
}

func (s *Server) createAlias(r *http.Request) (int, any, error) {
	var a registry.Alias
	if err := DecodeJSON(r, &a); err != nil {
		return 0, nil, err
	}
	if err := s.svc.CreateAlias(r.Context(), a); err != nil {
		return 0, nil, err
	}
	if a.Database == "" {
		a.Database = a.Name
	}
	return http.StatusCreated, a, nil
}

// Tenant pages of GET /v1/tenants.
const (
	DefaultTenantPage = 500
	MaxTenantPage     = 1000
)

// listTenants lists tenants in id order, a page at a time: ?limit=N
// (default DefaultTenantPage, at most MaxTenantPage) after ?after=ID; the
// answer's next_after is the cursor of the next page, null on the last.
func (s *Server) listTenants(r *http.Request) (int, any, error) {
	q := r.URL.Query()
	limit := DefaultTenantPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxTenantPage {
			return 0, nil, fmt.Errorf("%w: limit must be an integer from 1 to %d, not %q", registry.ErrInvalid, MaxTenantPage, v)
		}
		limit = n
	}
	after := q.Get("after")
	if after != "" {
		if err := registry.ValidateTenantID(after); err != nil {
			return 0, nil, err
		}
	}
	snap, err := s.snapshot(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := make([]*registry.Tenant, 0, min(limit, len(snap.Tenants)))
	for _, t := range snap.Tenants {
		if t.ID > after {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	var next *string
	if len(out) > limit {
		out = out[:limit]
		next = &out[limit-1].ID
	}
	return http.StatusOK, map[string]any{"tenants": out, "next_after": next}, nil
}

type createTenantRequest struct {
	ID    string `json:"id"`
	Alias string `json:"alias"`
}

func (s *Server) createTenant(r *http.Request) (int, any, error) {
	var req createTenantRequest
	if err := DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	nt, err := s.svc.CreateTenant(r.Context(), req.ID, req.Alias)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, nt, nil
}

// TenantInfo is a tenant with where it is served from.
type TenantInfo struct {
	*registry.Tenant
	Cluster  string `json:"cluster"`
	Database string `json:"database"`
	Primary  string `json:"primary"`
	// Limits are the tenant's own request limits at the gateway (zero
	// fields: the gateway's defaults).
	Limits registry.Limits `json:"limits"`
}

func (s *Server) getTenant(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	if err := registry.ValidateTenantID(id); err != nil {
		return 0, nil, err
	}
	snap, err := s.snapshot(r.Context())
	if err != nil {
		return 0, nil, err
	}
	t, ep, err := snap.Resolve(id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, TenantInfo{Tenant: t, Cluster: ep.Cluster, Database: ep.Database,
		Primary: fmt.Sprintf("%s:%d", ep.Host, ep.Port), Limits: snap.Limits[id]}, nil
}

func (s *Server) createCluster(r *http.Request) (int, any, error) {
	var req CreateClusterRequest
	if err := DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := s.svc.CreateCluster(r.Context(), req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, c, nil
}

func (s *Server) registerCluster(r *http.Request) (int, any, error) {
	var req RegisterClusterRequest
	if err := DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := s.svc.RegisterCluster(r.Context(), req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, c, nil
}

func (s *Server) clusterStatus(r *http.Request) (int, any, error) {
	st, err := s.svc.ClusterStatus(r.Context(), r.PathValue("name"))
	return http.StatusOK, st, err
}

func (s *Server) addStandby(r *http.Request) (int, any, error) {
	var req AddStandbyRequest
	if err := DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	m, err := s.svc.AddStandby(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, m, nil
}

func (s *Server) setSync(r *http.Request) (int, any, error) {
	var req SetSyncRequest
	if err := DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := s.svc.SetSync(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, c, nil
}

func (s *Server) removeStandby(r *http.Request) (int, any, error) {
	name, member := r.PathValue("name"), r.PathValue("member")
	if err := s.svc.RemoveStandby(r.Context(), name, member); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"cluster": name, "removed": member}, nil
}
