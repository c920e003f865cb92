package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"tenantry/registry"
	"tenantry/workflow"
)

// Service starts switchovers and reports on them; the control plane's API
// calls it.
type Service struct {
	cfg    Config
	log    *slog.Logger
	runner *workflow.Runner
}

// NewService checks cfg and registers the switchover workflow with runner.
func NewService(cfg Config, runner *workflow.Runner) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	h := &Service{cfg: cfg, log: cfg.Logger.With("subsystem", "ha"), runner: runner}
	for _, d := range []*workflow.Def{h.switchoverDef(), h.upgradeDef()} {
		if err := runner.Register(d); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// SwitchoverRequest asks for a switchover of Cluster to its standby To
// (empty: the standby with the least replay lag).
type SwitchoverRequest struct {
	Cluster string `json:"cluster"`
	To      string `json:"to,omitempty"`
}

// Info is a switchover or an upgrade as the API shows it.
type Info struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Status    workflow.Status `json:"status"`
	Step      string          `json:"step"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	Data      SwitchoverData  `json:"data"`
}

// Switchover checks the request (as the workflow's pre-check does, so a
// refusal changes nothing and says why) and starts the switchover.
func (h *Service) Switchover(ctx context.Context, req SwitchoverRequest) (*Info, error) {
	if err := registry.ValidateName("cluster", req.Cluster); err != nil {
		return nil, err
	}
	if req.To != "" {
		if err := registry.ValidateName("member", req.To); err != nil {
			return nil, err
		}
	}
	d := SwitchoverData{Cluster: req.Cluster, To: req.To}
	if err := h.check(ctx, &d); err != nil {
		return nil, err
	}
	id, err := h.runner.Create(ctx, SwitchoverKind, req.Cluster, d)
	if err != nil {
		return nil, err
	}
	return h.Get(ctx, id)
}

// Get returns a switchover; workflow.ErrNotFound when id is none.
func (h *Service) Get(ctx context.Context, id string) (*Info, error) {
	w, err := h.runner.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if w.Kind != SwitchoverKind && w.Kind != UpgradeKind {
		return nil, fmt.Errorf("switchover %s: %w", id, workflow.ErrNotFound)
	}
	in := &Info{ID: w.ID, Kind: w.Kind, Status: w.Status, Step: w.Step, Error: w.Error, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
	if len(w.Data) > 0 {
		if err := json.Unmarshal(w.Data, &in.Data); err != nil {
			return nil, err
		}
	}
	return in, nil
}
