// Package rollout is the blue/green rollout workflow of tenantry (issue
// 13): it moves one route's traffic from the stack that serves it to a new
// stack, judging the new stack while it takes traffic, and moves the traffic
// back on its own when the new stack misbehaves.
//
// A rollout pre-checks the new stack (ready, healthy instances), runs the
// smoke suite through the gateway's preview, and measures the old stack's
// p99 through the preview as a baseline; then it shifts traffic in weighted
// steps (10, 50, 100 or all at once). During each step's grace period it
// judges every interval from the per-stack figures every gateway publishes
// (registry.Store.StackStats): the new stack's 5xx rate against
// MaxErrorRate and its p99 against MaxP99Ratio × the old stack's. An interval
// with fewer than MinRequests requests is topped up with probes through the
// preview; no data never passes. FailureLimit consecutive failing intervals
// roll back: the route goes back to the old stack at once, with the reason
// and the figures recorded. After the last step the old stack is held
// (Hold, default 72 h) so that a cutback is a weight change; retire (or the
// end of the hold) stops it.
//
// The workflow runs on the control plane's durable runner (package
// workflow); Service is what the control API calls.
package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"tenantry/registry"
)

// Kind is the workflow kind (and family: one active rollout per route).
const Kind = "rollout"

// Signals (operator commands) a rollout takes.
const (
	SignalPromote = "promote" // all traffic to the new stack now, then the hold
	SignalAbort   = "abort"   // roll back now
	SignalCutback = "cutback" // during the hold: traffic back to the old stack
	SignalRetire  = "retire"  // during the hold: stop the old stack now
)

// Errors callers branch on.
var (
	// ErrWrongState: the command does not apply in the rollout's phase.
	ErrWrongState = errors.New("rollout is not in a state for this command")
	// ErrFailed: the analysis failed the new stack; the rollout rolled back.
	ErrFailed = errors.New("analysis failed the new stack")
	// ErrSmoke: the pre-check or the smoke suite failed; no traffic moved.
	ErrSmoke = errors.New("pre-check failed")
	// ErrAborted: an operator aborted (or cut back) the rollout.
	ErrAborted = errors.New("rolled back by the operator")
)

// MaxVerdicts bounds the verdicts a rollout keeps (a day's grace at a 1 s
// interval would otherwise make its record grow without end).
const MaxVerdicts = 1000

// Event kinds of the registry's event log (subject: the route).
const (
	EventStarted    = "rollout.started"
	EventPromoted   = "rollout.promoted"
	EventRolledBack = "rollout.rolled_back"
)

// DefaultRouteName is how the default route is named on the API and CLI.
const DefaultRouteName = "default"

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Params are a rollout's steps and thresholds. Zero values mean the
// defaults (DefaultParams).
type Params struct {
	// Steps are the new stack's successive weights in percent, increasing,
	// the last 100. Default [100] (all at once).
	Steps []int `json:"steps,omitempty"`
	// Interval is how often the new stack is judged. Default 10s.
	Interval Duration `json:"interval,omitempty"`
	// Grace is how long each step is judged before the next. Default 6 ×
	// Interval.
	Grace Duration `json:"grace,omitempty"`
	// FailureLimit consecutive failing intervals roll back. Default 3.
	FailureLimit int `json:"failure_limit,omitempty"`
	// MaxErrorRate is the largest share of 5xx answers that passes.
	// Default 0.01.
	MaxErrorRate float64 `json:"max_error_rate,omitempty"`
	// MaxP99Ratio: the new stack's p99 fails above this many times the old
	// stack's (and above the old one plus MinP99Delta). Default 1.5.
	MaxP99Ratio float64 `json:"max_p99_ratio,omitempty"`
	// MinP99Delta keeps the latency check from failing on noise at small
	// latencies: a p99 within this of the old one passes. Default 25ms.
	MinP99Delta Duration `json:"min_p99_delta,omitempty"`
	// BaselineP99 fixes the p99 the new stack is held to (with MaxP99Ratio
	// and MinP99Delta); 0: the old stack's, measured through the preview
	// and then over each interval. An isolation's cutover gives the
	// tenant's own p99 on the old stack: the old stack's mixes every
	// tenant it serves.
	BaselineP99 Duration `json:"baseline_p99,omitempty"`
	// MinRequests is the fewest requests an interval is judged on; probes
	// through the preview make up the difference. Default 20.
	MinRequests int `json:"min_requests,omitempty"`
	// Hold is how long the old stack is kept after success. Default 72h.
	Hold Duration `json:"hold,omitempty"`
}

// DefaultParams are the defaults of Params.
var DefaultParams = Params{
	Steps: []int{100}, Interval: Duration(10 * time.Second), FailureLimit: 3, MaxErrorRate: 0.01,
	MaxP99Ratio: 1.5, MinP99Delta: Duration(25 * time.Millisecond), MinRequests: 20, Hold: Duration(72 * time.Hour),
}

// withDefaults fills zero values.
func (p Params) withDefaults() Params {
	d := DefaultParams
	if len(p.Steps) == 0 {
		p.Steps = d.Steps
	}
	if p.Interval == 0 {
		p.Interval = d.Interval
	}
	if p.Grace == 0 {
		p.Grace = 6 * p.Interval
	}
	if p.FailureLimit == 0 {
		p.FailureLimit = d.FailureLimit
	}
	if p.MaxErrorRate == 0 {
		p.MaxErrorRate = d.MaxErrorRate
	}
	if p.MaxP99Ratio == 0 {
		p.MaxP99Ratio = d.MaxP99Ratio
	}
	if p.MinP99Delta == 0 {
		p.MinP99Delta = d.MinP99Delta
	}
	if p.MinRequests == 0 {
		p.MinRequests = d.MinRequests
	}
	if p.Hold == 0 {
		p.Hold = d.Hold
	}
	return p
}

// Validate checks the ranges of filled-in params.
func (p Params) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", registry.ErrInvalid, fmt.Sprintf(format, a...))
	}
	for i, w := range p.Steps {
		if w < 1 || w > 100 || (i > 0 && w <= p.Steps[i-1]) {
			return bad("steps %v must increase, each 1 to 100", p.Steps)
		}
	}
	if p.Steps[len(p.Steps)-1] != 100 {
		return bad("steps %v must end at 100", p.Steps)
	}
	iv := time.Duration(p.Interval)
	switch {
	case iv < 200*time.Millisecond || iv > time.Hour:
		return bad("interval %v must be between 200ms and 1h", iv)
	case p.Grace < p.Interval || time.Duration(p.Grace) > 24*time.Hour:
		return bad("grace %v must be at least the interval and at most 24h", time.Duration(p.Grace))
	case p.FailureLimit < 1 || p.FailureLimit > 100:
		return bad("failure limit %d must be 1 to 100", p.FailureLimit)
	case p.MaxErrorRate < 0 || p.MaxErrorRate >= 1:
		return bad("max error rate %v must be at least 0 and below 1", p.MaxErrorRate)
	case p.MaxP99Ratio < 1 || p.MaxP99Ratio > 100:
		return bad("max p99 ratio %v must be 1 to 100", p.MaxP99Ratio)
	case p.MinP99Delta < 0 || time.Duration(p.MinP99Delta) > time.Minute:
		return bad("min p99 delta %v must be 0 to 1m", time.Duration(p.MinP99Delta))
	case p.BaselineP99 < 0 || time.Duration(p.BaselineP99) > time.Minute:
		return bad("baseline p99 %v must be 0 to 1m", time.Duration(p.BaselineP99))
	case p.MinRequests < 1 || p.MinRequests > 10000:
		return bad("min requests %d must be 1 to 10000", p.MinRequests)
	case p.Hold < 0 || time.Duration(p.Hold) > 90*24*time.Hour:
		return bad("hold %v must be 0 to 90 days", time.Duration(p.Hold))
	}
	return nil
}

// Phases of a rollout, in Data.Phase.
const (
	PhasePrecheck   = "precheck"
	PhaseAnalysing  = "analysing"
	PhaseHolding    = "holding"
	PhaseRetired    = "retired"
	PhaseRolledBack = "rolled_back"
)

// Entry is one line of a rollout's timeline.
type Entry struct {
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	Detail string    `json:"detail,omitempty"`
}

// Data is the persisted state of a rollout.
type Data struct {
	// Route is a tenant id or DefaultRouteName.
	Route  string `json:"route"`
	From   string `json:"from"`
	To     string `json:"to"`
	Params Params `json:"params"`
	// Checks are the operator's smoke checks, run after the built-in ones.
	Checks []HTTPCheck `json:"checks,omitempty"`
	// ProbeTenant is the tenant whose (temporary) API key the smoke suite
	// and the probes use; KeyID is that key's id (its secret is never
	// stored).
	ProbeTenant string `json:"probe_tenant"`
	KeyID       string `json:"key_id,omitempty"`

	Phase string `json:"phase"`
	// Step is the index in Params.Steps; Weight the new stack's weight now.
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// StepStarted is when the current step's traffic shift took effect.
	StepStarted time.Time `json:"step_started,omitzero"`
	// WindowAfter is the control database time the figures were last read
	// up to; WindowEnd is when the current interval ends.
	WindowAfter time.Time `json:"window_after,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
	// Failures counts consecutive failing intervals.
	Failures int `json:"failures"`
	// BaselineP99Ms is the old stack's last known p99.
	BaselineP99Ms float64       `json:"baseline_p99_ms"`
	Smoke         []CheckResult `json:"smoke,omitempty"`
	// Intervals are the verdicts, oldest first: the last MaxVerdicts of
	// the Judged intervals.
	Intervals []Verdict `json:"intervals,omitempty"`
	Judged    int       `json:"judged"`
	Timeline  []Entry   `json:"timeline,omitempty"`
	HoldUntil time.Time `json:"hold_until,omitzero"`
	// FirstBadAt is when the first failing interval of the last run of
	// failures began; RolledBackAt when the weights went back.
	FirstBadAt   time.Time `json:"first_bad_at,omitzero"`
	RolledBackAt time.Time `json:"rolled_back_at,omitzero"`
	// Reason says why the rollout rolled back.
	Reason string `json:"reason,omitempty"`
}

func (d *Data) note(event, detail string) {
	d.Timeline = append(d.Timeline, Entry{At: time.Now().UTC(), Event: event, Detail: detail})
}

// routeTenant is the registry's Route.Tenant of a route name.
func routeTenant(route string) string {
	if route == DefaultRouteName {
		return registry.DefaultRoute
	}
	return route
}

// backends are the route's backends with the new stack at weight w.
func backends(from, to string, w int) []registry.Backend {
	var bs []registry.Backend
	if w < 100 {
		bs = append(bs, registry.Backend{Stack: from, Weight: 100 - w})
	}
	if w > 0 {
		bs = append(bs, registry.Backend{Stack: to, Weight: w})
	}
	return slices.Clip(bs)
}
