package control

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"tenantry/registry"
	"tenantry/rollout"
)

// SmokeRequest asks for the smoke suite on a stack, as a tenant.
type SmokeRequest struct {
	Tenant string `json:"tenant"`
	// Checks extend the built-in suite.
	Checks []rollout.HTTPCheck `json:"checks,omitempty"`
}

// SmokeResult is the smoke suite's outcome.
type SmokeResult struct {
	Stack  string                `json:"stack"`
	Tenant string                `json:"tenant"`
	Pass   bool                  `json:"pass"`
	Checks []rollout.CheckResult `json:"checks"`
}

// EnableRollouts adds the rollout endpoints and POST
// /v1/stacks/{name}/smoke, served by rs.
func (s *Server) EnableRollouts(rs *rollout.Service) {
	s.Handle("POST /v1/rollouts", func(r *http.Request) (int, any, error) {
		var req rollout.StartRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		in, err := rs.Start(r.Context(), req)
		if err != nil {
			return 0, nil, withActive(err)
		}
		return http.StatusCreated, in, nil
	})
	s.Handle("GET /v1/rollouts", func(r *http.Request) (int, any, error) {
		route := r.URL.Query().Get("route")
		if route != "" && route != rollout.DefaultRouteName {
			if err := registry.ValidateTenantID(route); err != nil {
				return 0, nil, err
			}
		}
		list, err := rs.List(r.Context(), route)
		return http.StatusOK, map[string]any{"rollouts": list}, err
	})
	s.Handle("GET /v1/rollouts/{id}", func(r *http.Request) (int, any, error) {
		events, _ := strconv.ParseBool(r.URL.Query().Get("events"))
		in, err := rs.Get(r.Context(), r.PathValue("id"), events)
		return http.StatusOK, in, err
	})
	s.Handle("POST /v1/rollouts/{id}/{command}", func(r *http.Request) (int, any, error) {
		in, err := rs.Command(r.Context(), r.PathValue("id"), r.PathValue("command"))
		return http.StatusOK, in, err
	})
	s.Handle("POST /v1/stacks/{name}/smoke", func(r *http.Request) (int, any, error) {
		var req SmokeRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		name := r.PathValue("name")
		checks, err := rs.Smoke(r.Context(), name, req.Tenant, req.Checks)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, SmokeResult{Stack: name, Tenant: req.Tenant, Pass: rollout.Passed(checks), Checks: checks}, nil
	})
}

// StartRollout starts a rollout.
func (c *Client) StartRollout(ctx context.Context, req rollout.StartRequest) (*rollout.Info, error) {
	var out rollout.Info
	return &out, c.Do(ctx, http.MethodPost, "/v1/rollouts", req, &out)
}

// Rollout returns one rollout, with its events when events is true.
func (c *Client) Rollout(ctx context.Context, id string, events bool) (*rollout.Info, error) {
	var out rollout.Info
	return &out, c.Do(ctx, http.MethodGet, "/v1/rollouts/"+url.PathEscape(id)+"?events="+strconv.FormatBool(events), nil, &out)
}

// Rollouts lists rollouts, of one route when route is not empty.
func (c *Client) Rollouts(ctx context.Context, route string) ([]*rollout.Info, error) {
	var out struct {
		Rollouts []*rollout.Info `json:"rollouts"`
	}
	return out.Rollouts, c.Do(ctx, http.MethodGet, "/v1/rollouts?route="+url.QueryEscape(route), nil, &out)
}

// RolloutCommand sends promote, abort, cutback or retire to a rollout and
// waits until it has acted on it.
func (c *Client) RolloutCommand(ctx context.Context, id, command string) (*rollout.Info, error) {
	var out rollout.Info
	return &out, c.Do(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(id)+"/"+url.PathEscape(command), nil, &out)
}

// Smoke runs the smoke suite on a stack through the gateway's preview.
func (c *Client) Smoke(ctx context.Context, stack string, req SmokeRequest) (*SmokeResult, error) {
	var out SmokeResult
	return &out, c.Do(ctx, http.MethodPost, "/v1/stacks/"+url.PathEscape(stack)+"/smoke", req, &out)
}
