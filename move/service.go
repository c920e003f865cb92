package move

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"tenantry/registry"
	"tenantry/workflow"
)

// Service starts moves and reports on them; the control plane API calls it.
type Service struct {
	m      *Mover
	runner *workflow.Runner
}

// NewService registers the move workflow with runner.
func NewService(m *Mover, runner *workflow.Runner) (*Service, error) {
	if err := runner.Register(m.Def()); err != nil {
		return nil, err
	}
	return &Service{m: m, runner: runner}, nil
}

// StartRequest asks for a move of Tenant to alias To.
type StartRequest struct {
	Tenant string `json:"tenant"`
	To     string `json:"to"`
	// Auto promotes as soon as the copy verifies.
	Auto bool `json:"auto"`
	// Force promotes outside the maintenance window and despite routers
	// whose heartbeat is late.
	Force bool `json:"force"`
}

// Info is a move as the API shows it.
type Info struct {
	ID        string           `json:"id"`
	Status    workflow.Status  `json:"status"`
	Step      string           `json:"step"`
	Error     string           `json:"error,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	Data      Data             `json:"data"`
	Events    []workflow.Event `json:"events,omitempty"`
}

// Start validates the request (tenant and alias exist, aliases differ and
// sit on different clusters, same schema version, no other active move) and
// creates the move. Nothing is changed when it is refused.
func (s *Service) Start(ctx context.Context, req StartRequest) (*Info, error) {
	if err := registry.ValidateTenantID(req.Tenant); err != nil {
		return nil, err
	}
	if err := registry.ValidateName("alias", req.To); err != nil {
		return nil, err
	}
	snap, err := s.m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	t, ok := snap.Tenants[req.Tenant]
	if !ok {
		return nil, fmt.Errorf("tenant %q: %w", req.Tenant, registry.ErrNotFound)
	}
	if _, ok := snap.Aliases[req.To]; !ok {
		return nil, fmt.Errorf("alias %q: %w", req.To, registry.ErrNotFound)
	}
	if existing, err := s.runner.List(ctx, workflow.Filter{Kind: Kind, Subject: req.Tenant, Status: workflow.StatusRunning}); err == nil && len(existing) > 0 {
		return nil, &workflow.ActiveError{Family: Kind, Subject: req.Tenant, ExistingID: existing[0].ID}
	}
	_, sides, err := s.m.open(ctx, t.Alias, req.To)
	if err != nil {
		return nil, err
	}
	err = s.m.checkMove(ctx, snap, req.Tenant, t.Alias, req.To, sides[0], sides[1])
	closeSides(sides)
	if err != nil {
		return nil, err
	}
	d := Data{Tenant: req.Tenant, Source: t.Alias, Target: req.To, On: t.Alias, Auto: req.Auto, Force: req.Force, Phase: PhasePreparing}
	id, err := s.runner.Create(ctx, Kind, req.Tenant, d)
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, id, false)
}

// Get returns a move, with its events when events is true.
func (s *Service) Get(ctx context.Context, id string, events bool) (*Info, error) {
	w, err := s.runner.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if w.Kind != Kind {
		return nil, fmt.Errorf("move %s: %w", id, workflow.ErrNotFound)
	}
	st := &Info{ID: w.ID, Status: w.Status, Step: w.Step, Error: w.Error, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
	if err := jsonDecode(w.Data, &st.Data); err != nil {
		return nil, err
	}
	if events {
		if st.Events, err = s.runner.Events(ctx, id, 0); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// List returns moves, newest first, optionally of one tenant.
func (s *Service) List(ctx context.Context, tenant string) ([]*Info, error) {
	ws, err := s.runner.List(ctx, workflow.Filter{Kind: Kind, Subject: tenant})
	if err != nil {
		return nil, err
	}
	out := make([]*Info, 0, len(ws))
	for _, w := range ws {
		st := &Info{ID: w.ID, Status: w.Status, Step: w.Step, Error: w.Error, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
		if err := jsonDecode(w.Data, &st.Data); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Command sends an operator command (SignalPromote, SignalCutback,
// SignalComplete, SignalCancel) and, when wait is true, waits until the move
// has acted on it: for a promotion or cutback, until the flip is recorded
// or refused (its error returned, wrapping ErrPrecheck or ErrAborted).
func (s *Service) Command(ctx context.Context, id, name string, wait bool) (*Info, error) {
	before, err := s.Get(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if before.Status != workflow.StatusRunning {
		return nil, fmt.Errorf("move %s is %s: %w", id, before.Status, workflow.ErrNotRunning)
	}
	d := before.Data
	switch name {
	case SignalPromote:
		// Not while a flip, the end of the move or its rollback runs.
		if d.On == d.Target || slices.Contains([]string{"promote", "cutback", "complete", "cancel", "abort"}, before.Step) {
			return nil, fmt.Errorf("%w: promote: tenant is on %s, move at step %s", ErrWrongState, d.On, before.Step)
		}
		if err := s.m.linkInSync(ctx, before); err != nil {
			return nil, fmt.Errorf("promote: %w", err)
		}
	case SignalCutback:
		if d.On != d.Target || len(d.Flips) == 0 {
			return nil, fmt.Errorf("%w: cutback: tenant is on %s (not promoted)", ErrWrongState, d.On)
		}
		if err := s.m.linkInSync(ctx, before); err != nil {
			return nil, fmt.Errorf("cutback: %w", err)
		}
	case SignalCancel:
		if d.On == d.Target {
			return nil, fmt.Errorf("%w: cancel: tenant is served from the target; cut back first", ErrWrongState)
		}
	case SignalComplete:
		if len(d.Flips) == 0 {
			return nil, fmt.Errorf("%w: complete: the move was never promoted; cancel it instead", ErrWrongState)
		}
	default:
		return nil, fmt.Errorf("%w: unknown command %q", registry.ErrInvalid, name)
	}
	if err := s.runner.Signal(ctx, id, name, nil); err != nil {
		return nil, err
	}
	if !wait {
		return s.Get(ctx, id, false)
	}
	return s.waitActed(ctx, id, name, before)
}

func (s *Service) waitActed(ctx context.Context, id, name string, before *Info) (*Info, error) {
	for {
		st, err := s.Get(ctx, id, false)
		if err != nil {
			return nil, err
		}
		d := st.Data
		switch {
		case st.Status != workflow.StatusRunning:
			if st.Status == workflow.StatusSucceeded || (name == SignalCancel && st.Status == workflow.StatusCancelled) {
				return st, nil
			}
			return st, fmt.Errorf("move %s ended %s: %s", id, st.Status, st.Error)
		case (name == SignalPromote || name == SignalCutback) && len(d.Flips) > len(before.Data.Flips) && d.Flip == nil && st.Step == "hypercare":
			return st, nil
		case (name == SignalPromote || name == SignalCutback) && d.FailedFlips > before.Data.FailedFlips:
			return st, flipError(name, d.LastError)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// flipError rebuilds the error of a refused or rolled-back flip from its
// recorded text (flipStep records only those two, and failover.go a flip
// refused while the link is rebuilt), wrapping ErrPrecheck, ErrAborted or
// ErrLinkNotInSync so that callers (and the API's error table) can branch on it.
func flipError(name, last string) error {
	for _, sentinel := range []error{ErrPrecheck, ErrAborted, ErrLinkNotInSync} {
		if rest, ok := strings.CutPrefix(last, sentinel.Error()); ok {
			return fmt.Errorf("%s: %w%s", name, sentinel, rest)
		}
	}
	return fmt.Errorf("%s: %s", name, last)
}

// Wait waits until the move reaches step (or ends) and returns it.
func (s *Service) Wait(ctx context.Context, id string, cond func(*Info) bool) (*Info, error) {
	for {
		st, err := s.Get(ctx, id, false)
		if err != nil {
			return nil, err
		}
		if cond(st) {
			return st, nil
		}
		if st.Status != workflow.StatusRunning {
			return st, fmt.Errorf("move %s ended %s: %s", id, st.Status, st.Error)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func jsonDecode(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}
