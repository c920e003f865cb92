// Package stack deploys and stops stacks — named sets of application (OMS)
// instances with a version label — and records them in the registry, where
// the gateway picks them up. Provider is the one interface a deployment
// target implements: LocalProvider runs instances as processes on this
// machine, ExternalProvider records instances deployed elsewhere. A
// Kubernetes provider (a Deployment and a Service per stack) would be a third
// implementation of the same two methods.
//
// The control plane uses a Provider for `tenantry stack deploy/stop` and for
// rollouts and isolations, which deploy a new stack before moving traffic.
package stack

import (
	"context"
	"errors"
	"fmt"

	"tenantry/oms"
	"tenantry/registry"
)

// MaxInstances bounds Spec.Instances.
const MaxInstances = 64

// Spec describes a stack to deploy.
type Spec struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Instances is how many instances to run (LocalProvider); 1 to
	// MaxInstances.
	Instances int `json:"instances"`
	// URLs are the instances of a stack deployed elsewhere
	// (ExternalProvider); LocalProvider ignores them.
	URLs []string `json:"urls,omitempty"`
	// Production marks a production stack: its instances refuse test-only
	// faults (LocalProvider passes oms.EnvProduction).
	Production bool `json:"production,omitempty"`
	// Faults are test-only misbehaviour of the instances (a share of 500s,
	// added latency), to show a rollout's rollback; LocalProvider passes
	// them in the instances' environment. Refused with Production.
	Faults oms.Faults `json:"faults,omitzero"`
	// Tenants, when set, makes a dedicated stack: its instances receive the
	// database credentials of these tenants only (LocalProvider.StackEnv
	// decides how), so nothing in them opens another tenant's data.
	Tenants []string `json:"tenants,omitempty"`
}

// Provider deploys and stops stacks.
//
// Deploy starts the stack's instances, waits until every one answers its
// health check, and records the stack in the registry as ready (as deploying
// while it waits). On failure it stops whatever it started, records the
// stack as failed, and returns an error; nothing is left running. Stop stops
// the instances and records the stack as stopped; ErrNotRunning when the
// provider does not run a stack of that name. Both are safe for concurrent
// use.
type Provider interface {
	Deploy(ctx context.Context, spec Spec) (registry.Stack, error)
	Stop(ctx context.Context, name string) error
}

// StackStore is where providers record stacks; *registry.Store is one.
// PutStack creates or replaces a stack; SetStackStatus changes the status of
// an existing one (registry.ErrNotFound otherwise).
type StackStore interface {
	PutStack(ctx context.Context, st registry.Stack) error
	SetStackStatus(ctx context.Context, name, status string) error
}

// Errors callers branch on.
var (
	// ErrNotRunning: the provider does not run a stack of that name.
	ErrNotRunning = errors.New("stack not running")
	// ErrRunning: the provider already runs a stack of that name.
	ErrRunning = errors.New("stack already running")
)

// DeployError is returned by Deploy when an instance did not come up. The
// stack is recorded as failed and nothing of it is left running.
type DeployError struct {
	Stack    string
	Instance int // -1 when the failure is not one instance's
	Err      error
}

func (e *DeployError) Error() string {
	if e.Instance < 0 {
		return fmt.Sprintf("deploy stack %s: %v", e.Stack, e.Err)
	}
	return fmt.Sprintf("deploy stack %s: instance %d: %v", e.Stack, e.Instance, e.Err)
}

func (e *DeployError) Unwrap() error { return e.Err }

// Validate checks the name, the version label and the instance count.
func (s *Spec) Validate() error {
	if err := registry.ValidateName("stack", s.Name); err != nil {
		return err
	}
	if s.Version == "" || len(s.Version) > 200 {
		return fmt.Errorf("%w: stack %s version label must be 1 to 200 bytes", registry.ErrInvalid, s.Name)
	}
	if s.Instances < 1 || s.Instances > MaxInstances {
		return fmt.Errorf("%w: stack %s instances %d (want 1 to %d)", registry.ErrInvalid, s.Name, s.Instances, MaxInstances)
	}
	if err := s.Faults.Validate(); err != nil {
		return fmt.Errorf("%w: stack %s: %v", registry.ErrInvalid, s.Name, err)
	}
	if s.Production && s.Faults.Enabled() {
		return fmt.Errorf("%w: stack %s: %v", registry.ErrInvalid, s.Name, oms.ErrFaultsInProduction)
	}
	for _, t := range s.Tenants {
		if err := registry.ValidateTenantID(t); err != nil {
			return fmt.Errorf("stack %s: %w", s.Name, err)
		}
	}
	return nil
}

// ExternalProvider records stacks whose instances run elsewhere (another
// scheduler, another host): Deploy records Spec.URLs as healthy instances,
// Stop records the stack as stopped. It starts and stops nothing.
type ExternalProvider struct {
	Store StackStore
}

var (
	_ Provider = (*ExternalProvider)(nil)
	_ Provider = (*LocalProvider)(nil)
)

// Deploy records the stack as ready with Spec.URLs as its instances.
// Spec.Instances is ignored.
func (p *ExternalProvider) Deploy(ctx context.Context, spec Spec) (registry.Stack, error) {
	spec.Instances = max(len(spec.URLs), 1)
	if err := spec.Validate(); err != nil {
		return registry.Stack{}, err
	}
	if len(spec.URLs) == 0 {
		return registry.Stack{}, fmt.Errorf("%w: stack %s: external stack needs instance URLs", registry.ErrInvalid, spec.Name)
	}
	if spec.Faults.Enabled() {
		return registry.Stack{}, fmt.Errorf("%w: stack %s: test-only faults need instances this provider starts", registry.ErrInvalid, spec.Name)
	}
	st := registry.Stack{Name: spec.Name, Version: spec.Version, Status: registry.StackReady}
	for _, u := range spec.URLs {
		st.Instances = append(st.Instances, registry.Instance{URL: u, Healthy: true})
	}
	if err := st.Validate(); err != nil {
		return registry.Stack{}, err
	}
	if err := p.Store.PutStack(ctx, st); err != nil {
		return registry.Stack{}, fmt.Errorf("record stack %s: %w", spec.Name, err)
	}
	return st, nil
}

// Stop records the stack as stopped.
func (p *ExternalProvider) Stop(ctx context.Context, name string) error {
	if err := registry.ValidateName("stack", name); err != nil {
		return err
	}
	if err := p.Store.SetStackStatus(ctx, name, registry.StackStopped); err != nil {
		return fmt.Errorf("record stack %s stopped: %w", name, err)
	}
	return nil
}
