// Package isolate is tenantry's main job (issue 14): the whole move of one
// tenant from the pooled environment to its own — a dedicated application
// stack and a dedicated database cluster with a streaming standby — as one
// durable, resumable, reversible plan.
//
// The plan's phases run in order, each checked before the next:
//
//	preflight  tenant active, no move/rollout/isolation running, names free, gate
//	backup     the tenant's logical backup, verified
//	provision  dedicated cluster (primary + standbys) and its alias (schema, roles)
//	deploy     dedicated stack, no traffic (it serves the tenant from its current alias)
//	smoke      the smoke suite through the gateway's preview of the new stack
//	cutover    the tenant's route to the dedicated stack, as a rollout with analysis
//	replicate  a move to the dedicated alias: replicate and verify
//	promote    the move's promotion, inside the window unless forced
//	standby    the link back is kept; a standby streams on the dedicated cluster
//	hypercare  cutback stays possible; the move's link back and the rollout's hold
//	complete   on command or at the end of hypercare: the move completes (old copy
//	           purged, link severed), the rollout retires
//
// It drives the move and rollout services (child workflows) rather than
// doing their work again. A cutback (command, or a failed phase) takes the
// data back through the move's link back, then the route, with nothing
// lost.
//
// Gates: an environment is marked sandbox or production (registry events
// of kind EventEnvSet). In production an isolation is refused unless a
// succeeded isolation of the same tenant was recorded while the registry
// was a sandbox, or it is forced with a reason, recorded with who asked.
package isolate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"tenantry/rollout"
)

// Kind is the workflow kind (and family: one active isolation per tenant).
const Kind = "isolate"

// Signals (operator commands) an isolation takes.
const (
	SignalCutback  = "cutback"  // data and traffic back to the pooled environment
	SignalComplete = "complete" // end hypercare now: purge the old copy, sever the link
	SignalResume   = "resume"   // go on after the phase --until stopped at (payload: ResumeRequest)
)

// ResumeRequest is the payload of SignalResume: the phase to stop after
// next ("" runs to the end).
type ResumeRequest struct {
	Until string `json:"until,omitempty"`
}

// Errors callers branch on.
var (
	// ErrWrongState: the command does not apply in the isolation's phase.
	ErrWrongState = errors.New("isolation is not in a state for this command")
	// ErrGate: the production gate refused the isolation (no sandbox record,
	// no --force).
	ErrGate = errors.New("refused by the production gate")
	// ErrPhase: a phase failed its check; the isolation cuts back.
	ErrPhase = errors.New("isolation phase failed")
	// ErrCapacity: preflight found too little room for the dedicated
	// environment (disk for the new cluster, a stack that cannot deploy).
	ErrCapacity = errors.New("not enough capacity for the isolation")
)

// Environment kinds (EnvSet).
const (
	EnvSandbox    = "sandbox"
	EnvProduction = "production"
)

// Registry event kinds recorded by isolations and the environment marker.
const (
	EventEnvSet    = "env.set"
	EventStarted   = "isolation.started"
	EventOverride  = "isolation.override"
	EventTwin      = "tenant.sandbox_twin"
	EventRefused   = "isolation.refused"
	EventSucceeded = "isolation.succeeded"
	EventCutBack   = "isolation.cut_back"
	EventPhase     = "isolation.phase"
	EventVerdict   = "isolation.verdict"
)

// Phase names, in plan order.
const (
	PhasePreflight = "preflight"
	PhaseBackup    = "backup"
	PhaseProvision = "provision"
	PhaseDeploy    = "deploy"
	PhaseSmoke     = "smoke"
	PhaseCutover   = "cutover"
	PhaseReplicate = "replicate"
	PhasePromote   = "promote"
	PhaseStandby   = "standby"
	PhaseHypercare = "hypercare"
	PhaseComplete  = "complete"
	PhaseCutback   = "cutback"
)

// Phases is the plan's order (cutback is not part of it).
var Phases = []string{PhasePreflight, PhaseBackup, PhaseProvision, PhaseDeploy, PhaseSmoke, PhaseCutover,
	PhaseReplicate, PhasePromote, PhaseStandby, PhaseHypercare, PhaseComplete}

// Phase states.
const (
	StatePending = "pending"
	StateRunning = "running"
	StateWaiting = "waiting"
	StateDone    = "done"
	StateFailed  = "failed"
	StateSkipped = "skipped"
)

// Duration is a time.Duration written as a Go duration string ("72h").
type Duration = rollout.Duration

// Window is a daily window in UTC, "HH:MM-HH:MM"; End before Start wraps
// past midnight. The zero Window means any time.
type Window struct {
	Start, End time.Duration
}

// ParseWindow parses "HH:MM-HH:MM" ("" is any time).
func ParseWindow(s string) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	start, err := clock(a)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	end, err := clock(b)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	if start == end {
		return Window{}, fmt.Errorf("window %q is empty", s)
	}
	return Window{Start: start, End: end}, nil
}

func clock(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// Any reports whether the window is "any time".
func (w Window) Any() bool { return w.Start == 0 && w.End == 0 }

// String is "HH:MM-HH:MM", or "any time".
func (w Window) String() string {
	if w.Any() {
		return "any time"
	}
	f := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return f(w.Start) + "-" + f(w.End)
}

// Contains reports whether t (in UTC) falls in the window.
func (w Window) Contains(t time.Time) bool {
	if w.Any() {
		return true
	}
	t = t.UTC()
	d := t.Sub(t.Truncate(24 * time.Hour))
	if w.Start <= w.End {
		return d >= w.Start && d < w.End
	}
	return d >= w.Start || d < w.End
}

// Next is the first instant at or after t inside the window.
func (w Window) Next(t time.Time) time.Time {
	if w.Contains(t) {
		return t
	}
	day := t.UTC().Truncate(24 * time.Hour)
	start := day.Add(w.Start)
	if start.Before(t) {
		start = start.Add(24 * time.Hour)
	}
	return start
}

// Request asks for the isolation of Tenant. Zero values mean the defaults
// shown; names default from the tenant id.
type Request struct {
	Tenant string `json:"tenant"`
	// ClusterName of the dedicated cluster; default TENANT-db.
	ClusterName string `json:"cluster_name,omitempty"`
	// Alias on it; default TENANT-ded (database of the same name).
	Alias string `json:"alias,omitempty"`
	// Stack is the dedicated stack; default TENANT-app.
	Stack string `json:"stack,omitempty"`
	// Version of the dedicated stack; default the version of the stack that
	// serves the tenant now.
	Version string `json:"version,omitempty"`
	// Instances of the dedicated stack; default 1.
	Instances int `json:"instances,omitempty"`
	// Standbys on the dedicated cluster; default 1 (0 is allowed, then no
	// standby is waited for).
	Standbys *int `json:"standbys,omitempty"`
	// Window for the promotion, "HH:MM-HH:MM" UTC; "" any time; "auto"
	// the tenant's quietest hour at the gateways (QuietestHour).
	Window string `json:"window,omitempty"`
	// Hypercare after the promotion; default 72h.
	Hypercare Duration `json:"hypercare,omitempty"`
	// Rollout are the application cutover's steps and thresholds (its
	// Hold is the hypercare).
	Rollout rollout.Params `json:"rollout,omitzero"`
	// Force promotes outside the window and, in production, overrides the
	// sandbox gate; Reason (required with Force) and By are recorded.
	Force  bool   `json:"force,omitempty"`
	Reason string `json:"reason,omitempty"`
	By     string `json:"by,omitempty"`
	// AutoCutback cuts back by itself after Rollout.FailureLimit
	// consecutive failing hypercare verdicts.
	AutoCutback bool `json:"auto_cutback,omitempty"`
	// Until stops the plan after this phase (its checks run, the phase is
	// done): the isolation waits there until resumed, so that phases run
	// one at a time (`isolate resume TENANT --until NEXT`). "" runs them
	// all. Not hypercare nor complete (hypercare waits already).
	Until string `json:"until,omitempty"`
	// SpaceFactor is the free disk preflight wants where the dedicated
	// cluster's data goes, per member, as a multiple of the tenant's size
	// (plus 64 MiB for an empty cluster); default 3 (the copy, its WAL,
	// room to grow).
	SpaceFactor float64 `json:"space_factor,omitempty"`
	// DryRun returns the plan and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// PhaseRecord is one phase of an isolation as it ran.
type PhaseRecord struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	Seconds   float64   `json:"seconds"`
	Detail    string    `json:"detail,omitempty"`
}

// Override is a forced production isolation: who and why.
type Override struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Data is the persisted state of an isolation.
type Data struct {
	Request Request `json:"request"`
	// Env is the environment kind when the isolation started ("" unmarked).
	Env      string    `json:"env"`
	Override *Override `json:"override,omitempty"`
	// WindowChoice says which hour --window auto picked, from what figures.
	WindowChoice string `json:"window_choice,omitempty"`
	// Twin is the sandbox twin whose sandbox isolation passed the gate
	// ("" the tenant's own, or no gate).
	Twin string `json:"twin,omitempty"`
	// Capacity is what preflight weighed.
	Capacity *Capacity `json:"capacity,omitempty"`
	// Baseline is the tenant's own figures on the source stack before the
	// app cutover: the p99 the cutover's analysis and hypercare hold the
	// dedicated stack to. Captured once, before the rollout starts.
	Baseline *Baseline `json:"baseline,omitempty"`
	// Until is the phase the plan stops after now (Request.Until, then
	// each resume's); HeldBefore the phase that waits for a resume.
	Until      string `json:"until,omitempty"`
	HeldBefore string `json:"held_before,omitempty"`
	// SourceAlias and SourceStack serve the tenant before; OwnRoute is the
	// tenant's own route before (nil: it followed the default route).
	SourceAlias string                `json:"source_alias"`
	SourceStack string                `json:"source_stack"`
	OwnRoute    []RouteBackend        `json:"own_route,omitempty"`
	Phases      []PhaseRecord         `json:"phases"`
	Current     string                `json:"current"`
	BackupDir   string                `json:"backup_dir,omitempty"`
	BackupRows  int64                 `json:"backup_rows,omitempty"`
	Smoke       []rollout.CheckResult `json:"smoke,omitempty"`
	RolloutID   string                `json:"rollout_id,omitempty"`
	MoveID      string                `json:"move_id,omitempty"`
	// Pause is the promotion's pause (ms); LinkBack names the reverse link
	// kept during hypercare.
	PauseMS   float64 `json:"pause_ms,omitempty"`
	LinkBack  string  `json:"link_back,omitempty"`
	LagBytes  int64   `json:"lag_bytes"`
	Streaming int     `json:"standbys_streaming"`
	// WaitingFor says what the current phase waits for (the window, an
	// operator's complete, the end of hypercare).
	WaitingFor    string    `json:"waiting_for,omitempty"`
	HypercareEnds time.Time `json:"hypercare_ends,omitzero"`
	// Verdicts are hypercare's last judgements; FailingVerdicts counts the
	// consecutive failing ones; StatsAfter is where the next one's figures
	// start (the control database's clock).
	Verdicts        []Verdict `json:"verdicts,omitempty"`
	FailingVerdicts int       `json:"failing_verdicts,omitempty"`
	StatsAfter      time.Time `json:"stats_after,omitzero"`
	// Outcome: "" while running, "completed", "cut_back".
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// CutbackMS is how long a cutback took to have the tenant's data and
	// traffic back (before the dedicated copy is dropped).
	CutbackMS float64 `json:"cutback_ms,omitempty"`
	// Commands sent to the move, so that a re-run step does not repeat
	// them: PromoteSent is 1 + the move's failed flips when promote was sent.
	PromoteSent  int  `json:"promote_sent,omitempty"`
	CompleteSent bool `json:"complete_sent,omitempty"`
	CutbackSent  bool `json:"cutback_sent,omitempty"`
	CancelSent   bool `json:"cancel_sent,omitempty"`
}

// Capacity is what preflight weighs before an isolation: the tenant's size,
// the free disk where the dedicated cluster's data goes, and whether the
// stack provider can deploy.
type Capacity struct {
	// TenantBytes is the size of the tenant's rows on its alias.
	TenantBytes int64 `json:"tenant_bytes"`
	// Dir is where new clusters' data goes ("": clusters are provisioned
	// elsewhere, disk not checked); FreeBytes is free there for this
	// process's user, NeedBytes what the isolation wants.
	Dir       string `json:"dir,omitempty"`
	FreeBytes int64  `json:"free_bytes,omitempty"`
	NeedBytes int64  `json:"need_bytes,omitempty"`
	// Stacks is why the stack provider cannot deploy ("" it can).
	Stacks string `json:"stacks,omitempty"`
}

// Baseline is the tenant's own request outcomes on one stack over a
// period, as the gateways recorded them.
type Baseline struct {
	Stack    string    `json:"stack"`
	Since    time.Time `json:"since"`
	Requests int64     `json:"requests"`
	Errors   int64     `json:"errors_5xx"`
	P99MS    float64   `json:"p99_ms"`
	// Used is false when too few requests were recorded to judge by:
	// the cutover then holds the new stack to the old stack's p99.
	Used   bool   `json:"used"`
	Detail string `json:"detail"`
}

// String is the baseline in words ("none" when nil).
func (b *Baseline) String() string {
	if b == nil {
		return "none"
	}
	return b.Detail
}

// RouteBackend is one backend of a route (registry.Backend's fields).
type RouteBackend struct {
	Stack  string `json:"stack"`
	Weight int    `json:"weight"`
}

// phase returns the record of name, adding it when missing.
func (d *Data) phase(name string) *PhaseRecord {
	for i := range d.Phases {
		if d.Phases[i].Name == name {
			return &d.Phases[i]
		}
	}
	d.Phases = append(d.Phases, PhaseRecord{Name: name, State: StatePending})
	return &d.Phases[len(d.Phases)-1]
}

// begin marks name running (once) and current.
func (d *Data) begin(name string, now time.Time) *PhaseRecord {
	p := d.phase(name)
	if p.StartedAt.IsZero() {
		p.StartedAt = now.UTC()
	}
	if p.State == StatePending || p.State == StateWaiting {
		p.State = StateRunning
	}
	d.Current = name
	return p
}

// end marks name done (or failed, or skipped).
func (d *Data) end(name, state string, now time.Time) {
	p := d.phase(name)
	if p.StartedAt.IsZero() {
		p.StartedAt = now.UTC()
	}
	p.State, p.EndedAt = state, now.UTC()
	p.Seconds = p.EndedAt.Sub(p.StartedAt).Seconds()
	d.WaitingFor = ""
}

// Info is an isolation as the API shows it.
type Info struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Status    string    `json:"status"`
	Step      string    `json:"step"`
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Data      Data      `json:"data"`
}

// PlanStep is one phase of a dry run: what it creates and checks.
type PlanStep struct {
	Phase   string   `json:"phase"`
	Creates []string `json:"creates,omitempty"`
	Checks  []string `json:"checks,omitempty"`
}

// Plan is what an isolation would do (a dry run).
type Plan struct {
	Tenant string `json:"tenant"`
	Env    string `json:"env"`
	Gate   string `json:"gate"`
	// WindowChoice says which hour --window auto picked, from what figures.
	WindowChoice string     `json:"window_choice,omitempty"`
	Steps        []PlanStep `json:"steps"`
	Request      Request    `json:"request"`
}

func decodeData(b json.RawMessage, d *Data) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, d)
}

// PhaseState is the current phase's state (for status lines).
func (d *Data) PhaseState() string { return d.phase(d.Current).State }

// CurrentDetail is the current phase's detail.
func (d *Data) CurrentDetail() string { return d.phase(d.Current).Detail }

// limit is the consecutive failing verdicts that cut back (--auto-cutback):
// the cutover rollout's failure limit, default 3.
func (d *Data) limit() int {
	if n := d.Request.Rollout.FailureLimit; n > 0 {
		return n
	}
	return 3
}
