package control

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"tenantry/registry"
	"tenantry/stack"
)

// Traffic is what a stack or the default route carries now: the routes
// that send requests through it and the tenants those routes serve. It is
// what stopping the stack or deleting the route would break.
type Traffic struct {
	Routes  []string `json:"routes"`  // route names; DefaultRouteName for the default route
	Tenants []string `json:"tenants"` // tenants whose requests it serves
}

// StackTraffic returns the routes that give stack a weight above zero and the
// tenants they serve (a tenant without a route of its own is served by the
// default route).
func StackTraffic(snap *registry.Snapshot, name string) Traffic {
	var t Traffic
	for _, r := range sortedRoutes(snap) {
		if weightOf(r, name) > 0 {
			t.Routes = append(t.Routes, routeName(r.Tenant))
		}
	}
	for _, id := range sortedTenants(snap) {
		if r := snap.RouteFor(id); r != nil && weightOf(r, name) > 0 {
			t.Tenants = append(t.Tenants, id)
		}
	}
	return t
}

// DefaultRouteTraffic returns the tenants the default route serves: those
// without a route of their own.
func DefaultRouteTraffic(snap *registry.Snapshot) Traffic {
	t := Traffic{Routes: []string{DefaultRouteName}}
	for _, id := range sortedTenants(snap) {
		if _, own := snap.Routes[id]; !own {
			t.Tenants = append(t.Tenants, id)
		}
	}
	return t
}

// inUse is the refusal of an operation that would cut traffic off; force
// overrides it.
func inUse(what string, t Traffic) error {
	tenants := "no tenant yet (tenants created later would have no route)"
	if n := len(t.Tenants); n > 0 {
		shown := t.Tenants[:min(n, 10)]
		tenants = "tenants " + strings.Join(shown, ", ")
		if n > len(shown) {
			tenants += fmt.Sprintf(" and %d more", n-len(shown))
		}
	}
	return &detailedError{
		err: fmt.Errorf("%s: %w by route %s serving %s, whose requests would fail; --force (API: force=true) does it anyway",
			what, ErrInUse, strings.Join(t.Routes, ", "), tenants),
		details: map[string]any{"routes": t.Routes, "tenants": t.Tenants},
	}
}

func weightOf(r *registry.Route, stack string) int {
	for _, b := range r.Backends {
		if b.Stack == stack {
			return b.Weight
		}
	}
	return 0
}

func routeName(tenant string) string {
	if tenant == registry.DefaultRoute {
		return DefaultRouteName
	}
	return tenant
}

func sortedRoutes(snap *registry.Snapshot) []*registry.Route {
	out := make([]*registry.Route, 0, len(snap.Routes))
	for _, r := range snap.Routes {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out
}

func sortedTenants(snap *registry.Snapshot) []string {
	out := make([]string, 0, len(snap.Tenants))
	for id := range snap.Tenants {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// forced reads the force query parameter ("true", "1", ...; absent is false).
func forced(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("force")
	if v == "" {
		return false, nil
	}
	f, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: force=%q is not a boolean", registry.ErrInvalid, v)
	}
	return f, nil
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
		force, err := forced(r)
		if err != nil {
			return 0, nil, err
		}
		// Routes read from the snapshot: a route set between this check and
		// the stop is not seen (the check is a guard rail, not a lock).
		snap, err := s.snapshot(r.Context())
		if err != nil {
			return 0, nil, err
		}
		if t := StackTraffic(snap, name); len(t.Routes) > 0 && !force {
			return 0, nil, inUse("stop stack "+name, t)
		}
		return http.StatusOK, map[string]string{"stopped": name}, p.Stop(r.Context(), name)
	})
	s.Handle("GET /v1/routes", func(r *http.Request) (int, any, error) {
		snap, err := s.snapshot(r.Context())
		if err != nil {
			return 0, nil, err
		}
		out := sortedRoutes(snap)
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
		force, err := forced(r)
		if err != nil {
			return 0, nil, err
		}
		if tenant == registry.DefaultRoute && !force {
			snap, err := s.snapshot(r.Context())
			if err != nil {
				return 0, nil, err
			}
			if _, ok := snap.Routes[registry.DefaultRoute]; ok {
				return 0, nil, inUse("delete the default route", DefaultRouteTraffic(snap))
			}
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
