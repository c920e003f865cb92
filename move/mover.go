// Package move provides tenant moves between database aliases: the durable
// move workflow of DESIGN.md's move protocol (prepare, replicate, verify,
// ready, promote and cutback with the link back, hypercare, complete,
// cancel, and abort as the rollback), run by a workflow.Runner, and Service,
// which the control plane's API calls to start, inspect and signal moves.
//
// The replication mechanics are package logrepl; which tables a tenant's
// rows live in is package tenanttable; backups and parity are injected
// (Config.Backup, VerifyBackup, Parity) so the move knows no local cluster.
// A file per concern: config.go (Config and its defaults), data.go (the
// persisted state), errors.go (the sentinels), sides.go (connections to both
// aliases), one file per step (prepare.go, replicate.go, verify.go,
// ready.go, flip.go for promote and cutback, reverse.go for the link swap
// after a flip, hypercare.go, complete.go, cancel.go with abort), failover.go
// (the link across a failover or switchover of either cluster: checked,
// rebuilt, relink step) and service.go.
package move

import (
	"context"
	"time"

	"tenantry/logrepl"
	"tenantry/workflow"
)

// Mover runs moves: it defines the move workflow and carries out its steps.
type Mover struct {
	cfg Config
}

// NewMover checks cfg and returns a Mover.
func NewMover(cfg Config) (*Mover, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &Mover{cfg: cfg}, nil
}

// Def is the move workflow definition to register with a workflow.Runner.
func (m *Mover) Def() *workflow.Def {
	return &workflow.Def{
		Kind:  Kind,
		Start: "prepare",
		Steps: map[string]workflow.Step{
			"prepare":   m.prepare,
			"replicate": m.watchLink(m.replicate),
			"verify":    m.watchLink(m.verify),
			"ready":     m.watchLink(m.ready),
			"promote":   m.promote,
			"hypercare": m.watchLink(m.hypercare),
			stepRelink:  m.relink,
			"cutback":   m.cutback,
			"complete":  m.complete,
			"cancel":    m.cancel,
			"abort":     m.abort,
		},
		Rollback:    "abort",
		MaxAttempts: 5,
		Backoff: func(attempt int) time.Duration {
			return min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)
		},
	}
}

// step wraps a step body with decoding and saving of Data.
func (m *Mover) step(ctx context.Context, r *workflow.Run, f func(*Data) (string, error)) (string, error) {
	var d Data
	if err := r.Decode(&d); err != nil {
		return "", workflow.Fail(err)
	}
	next, err := f(&d)
	if eerr := r.Encode(&d); eerr != nil {
		return "", workflow.Fail(eerr)
	}
	return next, err
}

// save persists d now (progress and phase changes inside a step).
func save(ctx context.Context, r *workflow.Run, d *Data) error {
	if err := r.Encode(d); err != nil {
		return err
	}
	return r.Save(ctx)
}

// linkFor names the replication link from -> to of move id: the forward
// names when it leaves the move's source, the reverse names otherwise.
func linkFor(id string, d *Data, from, to string) (Link, error) {
	n, err := logrepl.NamesFor(id)
	if err != nil {
		return Link{}, err
	}
	if from == d.Source {
		return Link{From: from, To: to, Link: n.Forward}, nil
	}
	return Link{From: from, To: to, Link: n.Reverse}, nil
}
