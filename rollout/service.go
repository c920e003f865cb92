package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"tenantry/registry"
	"tenantry/stack"
	"tenantry/workflow"
)

// ErrNoGateway: the control plane knows no gateway to send previews
// through (PlaneConfig.GatewayURL).
var ErrNoGateway = errors.New("no gateway URL configured for previews")

// Config configures a Service. Zero values mean the documented defaults.
type Config struct {
	// Store is the registry: routes, stacks, temporary API keys, stats.
	// Required.
	Store *registry.Store
	// Stacks stops a retired old stack; nil leaves it running.
	Stacks stack.Provider
	// Gateway returns the gateway's base URL for previews ("" = none yet).
	// Required.
	Gateway func() string
	// HTTP sends previews; nil means a client with a 30 s timeout.
	HTTP   *http.Client
	Logger *slog.Logger
}

// Service starts rollouts and reports on them; the control API calls it.
// It runs the rollout workflow's steps on the runner it registered with.
type Service struct {
	cfg    Config
	runner *workflow.Runner
	log    *slog.Logger

	mu   sync.Mutex
	keys map[string]string // temporary API key id -> secret (never persisted)
}

// NewService registers the rollout workflow with runner.
func NewService(cfg Config, runner *workflow.Runner) (*Service, error) {
	if cfg.Store == nil || cfg.Gateway == nil {
		return nil, errors.New("rollout: Store and Gateway are required")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, runner: runner, log: cfg.Logger.With("subsystem", "rollout"), keys: map[string]string{}}
	if err := runner.Register(s.def()); err != nil {
		return nil, err
	}
	return s, nil
}

// StartRequest asks for a rollout of Route (a tenant id or "default") to
// stack To.
type StartRequest struct {
	Route string `json:"route"`
	To    string `json:"to"`
	// Tenant is the tenant the smoke suite and the probes act as; for a
	// tenant's route it is that tenant (and may be left empty), for the
	// default route one it serves (default: the first by id).
	Tenant string `json:"tenant,omitempty"`
	// Checks extend the smoke suite of the pre-check.
	Checks []HTTPCheck `json:"checks,omitempty"`
	Params
}

// Info is a rollout as the API shows it.
type Info struct {
	ID        string          `json:"id"`
	Status    workflow.Status `json:"status"`
	Step      string          `json:"step"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// Weights are the route's backends in the registry now.
	Weights []registry.Backend `json:"weights"`
	Data    Data               `json:"data"`
	Events  []workflow.Event   `json:"events,omitempty"`
}

// Start validates the request and creates the rollout. Nothing is changed
// when it is refused: unknown route or stack (ErrNotFound), thresholds out of
// range, a route that already splits traffic, a stack that is not ready
// (ErrInvalid), a rollout running on the route (*workflow.ActiveError).
func (s *Service) Start(ctx context.Context, req StartRequest) (*Info, error) {
	if req.Route != DefaultRouteName {
		if err := registry.ValidateTenantID(req.Route); err != nil {
			return nil, err
		}
	}
	if err := registry.ValidateName("stack", req.To); err != nil {
		return nil, err
	}
	p := req.Params.withDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateChecks(req.Checks); err != nil {
		return nil, err
	}
	if s.cfg.Gateway() == "" {
		return nil, ErrNoGateway
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	from, err := currentStack(snap, req.Route)
	if err != nil {
		return nil, err
	}
	if from == req.To {
		return nil, fmt.Errorf("%w: route %s already sends all its traffic to %s", registry.ErrInvalid, req.Route, req.To)
	}
	if err := ready(snap, req.To); err != nil {
		return nil, err
	}
	tenant, err := probeTenant(snap, req.Route, req.Tenant)
	if err != nil {
		return nil, err
	}
	if existing, err := s.runner.List(ctx, workflow.Filter{Kind: Kind, Subject: req.Route, Status: workflow.StatusRunning}); err == nil && len(existing) > 0 {
		return nil, &workflow.ActiveError{Family: Kind, Subject: req.Route, ExistingID: existing[0].ID}
	}
	d := Data{Route: req.Route, From: from, To: req.To, Params: p, Checks: req.Checks, ProbeTenant: tenant, Phase: PhasePrecheck}
	d.note("started", fmt.Sprintf("route %s from %s to %s, steps %v", req.Route, from, req.To, p.Steps))
	id, err := s.runner.Create(ctx, Kind, req.Route, d)
	if err != nil {
		return nil, err
	}
	_ = s.cfg.Store.AddEvent(ctx, EventStarted, req.Route, fmt.Sprintf("rollout %s from %s to %s", id, from, req.To), nil)
	return s.Get(ctx, id, false)
}

// currentStack is the one stack the route sends traffic to; a route (or
// the default route a tenant falls back to) that splits traffic is refused.
func currentStack(snap *registry.Snapshot, route string) (string, error) {
	if route != DefaultRouteName {
		if _, ok := snap.Tenants[route]; !ok {
			return "", fmt.Errorf("tenant %q: %w", route, registry.ErrNotFound)
		}
	}
	r := snap.RouteFor(routeTenant(route))
	if r == nil {
		return "", fmt.Errorf("route %s: %w", route, registry.ErrNotFound)
	}
	var live []string
	for _, b := range r.Backends {
		if b.Weight > 0 {
			live = append(live, b.Stack)
		}
	}
	if len(live) != 1 {
		return "", fmt.Errorf("%w: route %s sends traffic to %d stacks (%v); a rollout starts from one", registry.ErrInvalid, route, len(live), live)
	}
	return live[0], nil
}

// ready checks that the stack exists, is ready and has a healthy instance.
func ready(snap *registry.Snapshot, name string) error {
	st, ok := snap.Stacks[name]
	if !ok {
		return fmt.Errorf("stack %q: %w", name, registry.ErrNotFound)
	}
	if st.Status != registry.StackReady {
		return fmt.Errorf("%w: stack %s is %s, not ready", registry.ErrInvalid, name, st.Status)
	}
	if !slices.ContainsFunc(st.Instances, func(in registry.Instance) bool { return in.Healthy }) {
		return fmt.Errorf("%w: stack %s has no healthy instance", registry.ErrInvalid, name)
	}
	return nil
}

// probeTenant is the tenant the previews act as.
func probeTenant(snap *registry.Snapshot, route, tenant string) (string, error) {
	if route != DefaultRouteName {
		if tenant != "" && tenant != route {
			return "", fmt.Errorf("%w: a tenant's route is probed as that tenant, not %s", registry.ErrInvalid, tenant)
		}
		return route, nil
	}
	if tenant != "" {
		if err := registry.ValidateTenantID(tenant); err != nil {
			return "", err
		}
		if _, ok := snap.Tenants[tenant]; !ok {
			return "", fmt.Errorf("tenant %q: %w", tenant, registry.ErrNotFound)
		}
		if _, own := snap.Routes[tenant]; own {
			return "", fmt.Errorf("%w: tenant %s has a route of its own; the default route's previews need a tenant it serves", registry.ErrInvalid, tenant)
		}
		return tenant, nil
	}
	ids := make([]string, 0, len(snap.Tenants))
	for id := range snap.Tenants {
		if _, own := snap.Routes[id]; !own {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("%w: the default route serves no tenant to run previews as", registry.ErrInvalid)
	}
	sort.Strings(ids)
	return ids[0], nil
}

// Get returns a rollout, with its events when events is true.
func (s *Service) Get(ctx context.Context, id string, events bool) (*Info, error) {
	w, err := s.runner.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if w.Kind != Kind {
		return nil, fmt.Errorf("rollout %s: %w", id, workflow.ErrNotFound)
	}
	in, err := s.info(ctx, *w)
	if err != nil {
		return nil, err
	}
	if events {
		if in.Events, err = s.runner.Events(ctx, id, 0); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func (s *Service) info(ctx context.Context, w workflow.Workflow) (*Info, error) {
	in := &Info{ID: w.ID, Status: w.Status, Step: w.Step, Error: w.Error, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
	if len(w.Data) > 0 {
		if err := json.Unmarshal(w.Data, &in.Data); err != nil {
			return nil, fmt.Errorf("decode rollout %s: %w", w.ID, err)
		}
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if r := snap.RouteFor(routeTenant(in.Data.Route)); r != nil {
		in.Weights = r.Backends
	}
	return in, nil
}

// List returns rollouts, newest first, optionally of one route.
func (s *Service) List(ctx context.Context, route string) ([]*Info, error) {
	ws, err := s.runner.List(ctx, workflow.Filter{Kind: Kind, Subject: route})
	if err != nil {
		return nil, err
	}
	out := make([]*Info, 0, len(ws))
	for _, w := range ws {
		in, err := s.info(ctx, w)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Command sends an operator command (SignalPromote, SignalAbort,
// SignalCutback, SignalRetire) and waits (bounded by ctx) until the rollout
// has acted on it.
func (s *Service) Command(ctx context.Context, id, name string) (*Info, error) {
	before, err := s.Get(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if before.Status != workflow.StatusRunning {
		return nil, fmt.Errorf("rollout %s is %s: %w", id, before.Status, workflow.ErrNotRunning)
	}
	phase := before.Data.Phase
	switch name {
	case SignalPromote:
		if phase != PhaseAnalysing {
			return nil, fmt.Errorf("%w: promote: rollout is %s, not analysing", ErrWrongState, phase)
		}
	case SignalAbort:
		if phase != PhasePrecheck && phase != PhaseAnalysing {
			return nil, fmt.Errorf("%w: abort: rollout is %s; during the hold, cut back", ErrWrongState, phase)
		}
	case SignalCutback, SignalRetire:
		if phase != PhaseHolding {
			return nil, fmt.Errorf("%w: %s: rollout is %s, not holding the old stack", ErrWrongState, name, phase)
		}
	default:
		return nil, fmt.Errorf("%w: unknown command %q (promote, abort, cutback, retire)", registry.ErrInvalid, name)
	}
	if err := s.runner.Signal(ctx, id, name, nil); err != nil {
		return nil, err
	}
	for {
		in, err := s.Get(ctx, id, false)
		if err != nil {
			return nil, err
		}
		done := in.Status != workflow.StatusRunning
		if name == SignalPromote {
			done = done || in.Data.Phase == PhaseHolding
		}
		if done {
			return in, nil
		}
		select {
		case <-ctx.Done():
			return in, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Smoke runs the smoke suite (and the operator's checks) on stack through
// the gateway's preview, as tenant (with a temporary API key, revoked
// afterwards).
func (s *Service) Smoke(ctx context.Context, stackName, tenant string, checks []HTTPCheck) ([]CheckResult, error) {
	if err := registry.ValidateName("stack", stackName); err != nil {
		return nil, err
	}
	if err := ValidateChecks(checks); err != nil {
		return nil, err
	}
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := snap.Tenants[tenant]; !ok {
		return nil, fmt.Errorf("tenant %q: %w", tenant, registry.ErrNotFound)
	}
	if err := ready(snap, stackName); err != nil {
		return nil, err
	}
	if s.cfg.Gateway() == "" {
		return nil, ErrNoGateway
	}
	secret, k, err := s.cfg.Store.CreateAPIKey(ctx, tenant)
	if err != nil {
		return nil, err
	}
	defer func() { _ = s.cfg.Store.RevokeAPIKey(context.WithoutCancel(ctx), tenant, k.ID) }()
	p := s.preview(secret, stackName)
	if err := waitKey(ctx, p); err != nil {
		return nil, err
	}
	return p.Smoke(ctx, checks), nil
}

func (s *Service) preview(key, stackName string) Preview {
	return Preview{GatewayURL: s.cfg.Gateway(), APIKey: key, Stack: stackName, HTTP: s.cfg.HTTP}
}

// waitKey waits until the gateway knows a new API key (its snapshot
// follows the registry within milliseconds, at worst its poll period).
func waitKey(ctx context.Context, p Preview) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		r, err := p.Do(ctx, http.MethodGet, probePath, nil)
		if err == nil && r.Status != http.StatusUnauthorized {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the gateway to know the preview key: %w (last: %v, status %d)", ctx.Err(), err, r.Status)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
