package control

import (
	"context"
	"net/http"
	"sort"

	"tenantry/registry"
	"tenantry/stack"
)

func init() {
	registerCode(stack.ErrRunning, http.StatusConflict, "stack_running")
	registerCode(stack.ErrNotRunning, http.StatusNotFound, "stack_not_running")
}

// RouteStore is where routes are written (*registry.Store).
type RouteStore interface {
	SetRoute(ctx context.Context, r registry.Route, ifVersion int64) error
	DeleteRoute(ctx context.Context, tenant string) error
}

// RouteRequest sets a tenant's route (or the default route).
type RouteRequest struct {
	Backends []registry.Backend `json:"backends"`
	// IfVersion, when not zero, applies the change only if the registry is
	// still at that version (compare-and-set).
	IfVersion int64 `json:"if_version,omitempty"`
}

// DefaultRouteName is the path name of the default route in the API.
const DefaultRouteName = "default"

// EnableStacks adds the stack and route endpoints.
func (s *Server) EnableStacks(p stack.Provider, routes RouteStore) {
	s.Handle("POST /v1/stacks", func(r *http.Request) (int, any, error) {
		var spec stack.Spec
		if err := DecodeJSON(r, &spec); err != nil {
			return 0, nil, err
		}
		if err := spec.Validate(); err != nil { // wraps registry.ErrInvalid
			return 0, nil, err
		}
		st, err := p.Deploy(r.Context(), spec)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, st, nil
	})
	s.Handle("GET /v1/stacks", func(r *http.Request) (int, any, error) {
		snap, err := s.snapshot(r.Context())
		if err != nil {
			return 0, nil, err
		}
		out := make([]*registry.Stack, 0, len(snap.Stacks))
		for _, st := range snap.Stacks {
			out = append(out, st)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return http.StatusOK, map[string]any{"stacks": out}, nil
	})
	s.Handle("POST /v1/stacks/{name}/stop", func(r *http.Request) (int, any, error) {
		name := r.PathValue("name")
		if err := registry.ValidateName("stack", name); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]string{"stopped": name}, p.Stop(r.Context(), name)
	})
	s.Handle("GET /v1/routes", func(r *http.Request) (int, any, error) {
		snap, err := s.snapshot(r.Context())
		if err != nil {
			return 0, nil, err
		}
		out := make([]*registry.Route, 0, len(snap.Routes))
		for _, rt := range snap.Routes {
			out = append(out, rt)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
		return http.StatusOK, map[string]any{"routes": out, "version": snap.Version}, nil
	})
	s.Handle("PUT /v1/routes/{tenant}", func(r *http.Request) (int, any, error) {
		tenant, err := routeTenant(r.PathValue("tenant"))
		if err != nil {
			return 0, nil, err
		}
		var req RouteRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		rt := registry.Route{Tenant: tenant, Backends: req.Backends}
		if err := routes.SetRoute(r.Context(), rt, req.IfVersion); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, rt, nil
	})
	s.Handle("DELETE /v1/routes/{tenant}", func(r *http.Request) (int, any, error) {
		tenant, err := routeTenant(r.PathValue("tenant"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]string{"deleted": r.PathValue("tenant")}, routes.DeleteRoute(r.Context(), tenant)
	})
}

func routeTenant(name string) (string, error) {
	if name == DefaultRouteName {
		return registry.DefaultRoute, nil
	}
	return name, registry.ValidateTenantID(name)
}
