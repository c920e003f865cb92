// Package workflow is tenantry's durable step runner. A workflow kind is a
// state machine of named steps (Def); each workflow instance is a row of the
// control database with its current step, status and JSON data, plus an
// append-only event log. The move, rollout and isolation workflows are
// built on it.
//
// Durability: a step's start is persisted before it acts and the next step
// after it returns, so a crash (kill -9) at any point resumes by re-running
// the current step; steps must therefore be idempotent.
//
// Ownership: a Runner claims a workflow with a lease that carries a
// generation; every state write is fenced by that generation, and a runner
// whose lease was taken over gets ErrLeaseLost and its step's context is
// cancelled. Several runners (control plane replicas) may share one control
// database; exactly one acts on a workflow at a time.
package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Errors callers branch on.
var (
	// ErrNotFound: no workflow with that id.
	ErrNotFound = errors.New("workflow not found")
	// ErrActive: an active workflow of the same family already exists for the
	// subject. Create returns it wrapped in *ActiveError.
	ErrActive = errors.New("an active workflow exists for this subject")
	// ErrLeaseLost: another runner took the workflow over; the write was not
	// applied. A step seeing it must stop.
	ErrLeaseLost = errors.New("workflow lease lost")
	// ErrLeaseHeld: Claim found the lease held by another runner.
	ErrLeaseHeld = errors.New("workflow lease held by another runner")
	// ErrNotRunning: the workflow has ended; it takes no signals.
	ErrNotRunning = errors.New("workflow is not running")
	// ErrUnknownKind: no Def of that kind is registered with the runner.
	ErrUnknownKind = errors.New("unknown workflow kind")
	// ErrInvalid: a kind, subject or definition failed validation.
	ErrInvalid = errors.New("invalid workflow")
)

// ActiveError is returned by Create when the subject already has an active
// workflow of the same family. It unwraps to ErrActive.
type ActiveError struct {
	Family, Subject string
	ExistingID      string
}

func (e *ActiveError) Error() string {
	return fmt.Sprintf("%s workflow %s is active for %s", e.Family, e.ExistingID, e.Subject)
}

func (e *ActiveError) Unwrap() error { return ErrActive }

// Status of a workflow.
type Status string

const (
	StatusRunning    Status = "running"
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
	StatusCancelled  Status = "cancelled"
	StatusRolledBack Status = "rolled_back"
)

// State says which part of the machine a running workflow is in.
type State string

const (
	// StateForward: running the steps from Def.Start.
	StateForward State = "forward"
	// StateWaiting: parked in its current step until a signal or a deadline.
	StateWaiting State = "waiting"
	// StateRollback: a step failed; running the steps from Def.Rollback.
	StateRollback State = "rollback"
)

// Step does the idempotent work of one state and returns the name of the
// next step ("" = done). Its error tells the runner what to do: a plain
// error is transient (retried with backoff, up to Def.MaxAttempts, then
// treated as Fail); Fail(err) fails at once; Cancel(err) cancels; Wait(t)
// parks the step until a signal arrives or t passes, then re-runs it.
type Step func(ctx context.Context, r *Run) (next string, err error)

// Def defines a workflow kind.
type Def struct {
	// Kind names the workflow kind ("move"); ^[a-z][a-z0-9_-]{0,62}$.
	Kind string
	// Family groups kinds that may not be active together for one subject
	// (a move and a cutback of one tenant). Default: Kind.
	Family string
	// Steps by name; Start and Rollback must name one.
	Steps map[string]Step
	Start string
	// Rollback, if set, is the step run after a step fails; its chain ends
	// the workflow rolled_back (or failed if a rollback step fails).
	Rollback string
	// MaxAttempts bounds the runs of one step on transient errors. Default 5.
	MaxAttempts int
	// Backoff is the delay before retry attempt n (1-based). Default
	// exponential from 1 s, at most 1 min.
	Backoff func(attempt int) time.Duration
}

var kindRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// Validate checks the definition.
func (d *Def) Validate() error {
	if !kindRe.MatchString(d.Kind) {
		return fmt.Errorf("%w: kind %q must match %s", ErrInvalid, d.Kind, kindRe)
	}
	if d.Family != "" && !kindRe.MatchString(d.Family) {
		return fmt.Errorf("%w: family %q must match %s", ErrInvalid, d.Family, kindRe)
	}
	if d.Steps[d.Start] == nil {
		return fmt.Errorf("%w: %s: start step %q is not defined", ErrInvalid, d.Kind, d.Start)
	}
	if d.Rollback != "" && d.Steps[d.Rollback] == nil {
		return fmt.Errorf("%w: %s: rollback step %q is not defined", ErrInvalid, d.Kind, d.Rollback)
	}
	return nil
}

func (d *Def) family() string {
	if d.Family != "" {
		return d.Family
	}
	return d.Kind
}

func (d *Def) maxAttempts() int {
	if d.MaxAttempts > 0 {
		return d.MaxAttempts
	}
	return 5
}

func (d *Def) backoff(attempt int) time.Duration {
	if d.Backoff != nil {
		return d.Backoff(attempt)
	}
	b := time.Second << min(attempt-1, 6)
	return min(b, time.Minute)
}

// stepError carries a step's instruction to the runner.
type stepError struct {
	action action
	until  time.Time // for actionWait; zero = no deadline
	err    error
}

type action int

const (
	actionRetry action = iota
	actionFail
	actionCancel
	actionWait
)

func (e *stepError) Error() string {
	switch e.action {
	case actionWait:
		return "wait"
	case actionCancel:
		return "cancel: " + errText(e.err)
	}
	return errText(e.err)
}

func (e *stepError) Unwrap() error { return e.err }

func errText(err error) string {
	if err == nil {
		return "no reason given"
	}
	return err.Error()
}

// Fail tells the runner the step failed for good: no retry; the workflow
// runs its rollback (if any) and records err.
func Fail(err error) error { return &stepError{action: actionFail, err: err} }

// Cancel tells the runner to end the workflow cancelled, recording err.
func Cancel(err error) error { return &stepError{action: actionCancel, err: err} }

// Wait parks the workflow in the current step until a signal arrives or
// until passes (zero: only a signal wakes it); the step then runs again and
// finds the signal in Run.Signals.
func Wait(until time.Time) error { return &stepError{action: actionWait, until: until} }

// Retryable reports whether err, returned by a step, is one the runner
// retries with backoff: an error, not an instruction (Wait, Fail, Cancel).
// A step wrapper uses it to look into the failures of the step it wraps.
func Retryable(err error) bool {
	var se *stepError
	return err != nil && !errors.As(err, &se)
}

// Workflow is the persisted record of one workflow.
type Workflow struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Family    string          `json:"family"`
	Subject   string          `json:"subject"`
	State     State           `json:"state"`
	Step      string          `json:"step"`
	Status    Status          `json:"status"`
	Attempt   int             `json:"attempt"`
	Data      json.RawMessage `json:"data"`
	Error     string          `json:"error,omitempty"`
	RunAfter  time.Time       `json:"run_after"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// LeaseOwner is the runner holding the lease ("" = none).
	LeaseOwner      string     `json:"lease_owner,omitempty"`
	LeaseGeneration int64      `json:"lease_generation"`
	LeaseExpires    *time.Time `json:"lease_expires,omitempty"`
}

// Event kinds.
const (
	EventStarted  = "started"
	EventFinished = "finished"
	EventFailed   = "failed"
	EventInfo     = "info"
	EventProgress = "progress"
)

// Event is one entry of a workflow's log.
type Event struct {
	ID       int64           `json:"id"`
	Workflow string          `json:"workflow"`
	At       time.Time       `json:"at"`
	Step     string          `json:"step"`
	Kind     string          `json:"kind"`
	Message  string          `json:"message,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Signal is an operator's command to a workflow ("cutback", "complete").
type Signal struct {
	ID      int64           `json:"id"`
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
	At      time.Time       `json:"at"`
}

// Filter selects workflows for List; zero fields match everything.
type Filter struct {
	Kind string
	// Family selects workflows of every kind in a family (Def.Family).
	Family  string
	Subject string
	Status  Status
	// Limit defaults to 100.
	Limit int
}
