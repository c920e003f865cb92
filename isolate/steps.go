package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"tenantry/move"
	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/stack"
	"tenantry/workflow"
)

// Steps beyond the plan's phases.
const (
	stepCutback = "cutback"
	stepAbort   = "abort"
)

func (s *Service) def() *workflow.Def {
	return &workflow.Def{
		Kind:  Kind,
		Start: PhasePreflight,
		Steps: map[string]workflow.Step{
			PhasePreflight: s.step(PhasePreflight, s.preflightStep),
			PhaseBackup:    s.step(PhaseBackup, s.backup),
			PhaseProvision: s.step(PhaseProvision, s.provision),
			PhaseDeploy:    s.step(PhaseDeploy, s.deploy),
			PhaseSmoke:     s.step(PhaseSmoke, s.smoke),
			PhaseCutover:   s.step(PhaseCutover, s.cutover),
			PhaseReplicate: s.step(PhaseReplicate, s.replicate),
			PhasePromote:   s.step(PhasePromote, s.promote),
			PhaseStandby:   s.step(PhaseStandby, s.standby),
			PhaseHypercare: s.step(PhaseHypercare, s.hypercare),
			PhaseComplete:  s.step(PhaseComplete, s.complete),
			stepCutback:    s.step(stepCutback, s.cutback),
			stepAbort:      s.step(stepAbort, s.abort),
		},
		Rollback:    stepAbort,
		MaxAttempts: 5,
		Backoff: func(attempt int) time.Duration {
			return min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)
		},
	}
}

// body is one step's work on the decoded data. It returns the next step
// (the same one with wait set: run again at wait or on a signal).
type body func(ctx context.Context, r *workflow.Run, d *Data) (next string, wait time.Time, err error)

// phaseFailed fails the phase for good (the isolation cuts back).
func phaseFailed(format string, args ...any) error {
	return workflow.Fail(fmt.Errorf("%w: %s", ErrPhase, fmt.Sprintf(format, args...)))
}

// step wraps a phase: decoding and encoding the data, the phase record,
// a pending cutback (which wins over any phase before completion), and the
// events of every transition.
func (s *Service) step(name string, f body) workflow.Step {
	return func(ctx context.Context, r *workflow.Run) (string, error) {
		var d Data
		if err := r.Decode(&d); err != nil {
			return "", workflow.Fail(err)
		}
		now := s.cfg.Now()
		if name != stepCutback && name != stepAbort && name != PhaseComplete {
			for _, sg := range r.Signals {
				if sg.Name == SignalCutback {
					r.Consume(sg)
					d.Reason = "cutback requested by the operator at " + name
					if p := d.phase(name); p.State == StateRunning || p.State == StateWaiting {
						d.end(name, StateSkipped, now)
						p.Detail = "interrupted by the cutback"
					}
					_ = r.Info(ctx, "cutback requested", map[string]string{"at": name})
					return stepCutback, r.Encode(&d)
				}
			}
		}
		if d.HeldBefore == name {
			if !s.resumed(ctx, r, &d) {
				d.Current = name
				d.phase(name).State = StateWaiting
				if err := r.Encode(&d); err != nil {
					return "", workflow.Fail(err)
				}
				return "", workflow.Wait(time.Time{})
			}
		}
		if name == stepAbort || name == stepCutback {
			if p := d.phase(d.Current); d.Current != name && d.Current != stepCutback && (p.State == StateRunning || p.State == StateWaiting) {
				state := StateSkipped
				if name == stepAbort {
					state = StateFailed
				}
				d.end(d.Current, state, now)
			}
		}
		if d.phase(name).StartedAt.IsZero() {
			_ = r.Info(ctx, "phase "+name+" started", nil)
		}
		d.begin(name, now)
		if err := s.cfg.Hook(ctx, "isolate:"+name); err != nil {
			return "", err
		}
		next, wait, err := f(ctx, r, &d)
		if err == nil && wait.IsZero() {
			err = s.cfg.Hook(ctx, "isolate:"+name+":done")
		}
		switch {
		case err != nil:
			d.Reason = fmt.Sprintf("%s: %v", name, err)
			if errors.Is(err, ErrPhase) {
				d.end(name, StateFailed, s.cfg.Now())
			}
		case !wait.IsZero():
			if d.WaitingFor != "" {
				d.phase(name).State = StateWaiting
			}
		case next == stepCutback && name != stepCutback:
			// the phase ended itself (auto-cutback): its state is set
		default:
			d.end(name, StateDone, s.cfg.Now())
			p := d.phase(name)
			msg := fmt.Sprintf("isolation %s: %s done in %.1fs", r.ID, name, p.Seconds)
			if p.Detail != "" {
				msg += ": " + p.Detail
			}
			_ = r.Info(ctx, msg, p)
			_ = s.cfg.Store.AddEvent(ctx, EventPhase, r.Subject, msg, map[string]any{"isolation": r.ID, "phase": name, "seconds": p.Seconds})
			if d.Until == name && slices.Contains(Phases, next) {
				d.HeldBefore = next
				d.WaitingFor = fmt.Sprintf("isolate resume: stopped after %s (--until)", name)
				_ = r.Info(ctx, "stopped after "+name+" (--until); waits for isolate resume", nil)
			}
		}
		if eerr := r.Encode(&d); eerr != nil {
			return "", workflow.Fail(eerr)
		}
		if err != nil {
			return "", err
		}
		if !wait.IsZero() {
			return "", workflow.Wait(wait)
		}
		return next, nil
	}
}

// resumed reports whether the isolation, held before a phase by --until,
// was resumed (consuming the signal and taking its next --until).
func (s *Service) resumed(ctx context.Context, r *workflow.Run, d *Data) bool {
	for _, sg := range r.Signals {
		if sg.Name != SignalResume {
			continue
		}
		r.Consume(sg)
		var rr ResumeRequest
		if len(sg.Payload) > 0 {
			_ = json.Unmarshal(sg.Payload, &rr)
		}
		held := d.HeldBefore
		d.Until, d.HeldBefore, d.WaitingFor = rr.Until, "", ""
		until := rr.Until
		if until == "" {
			until = "the end"
		}
		_ = r.Info(ctx, "resumed at "+held+", until "+until, rr)
		return true
	}
	return false
}

func (s *Service) save(ctx context.Context, r *workflow.Run, d *Data) error {
	if err := r.Encode(d); err != nil {
		return err
	}
	return r.Save(ctx)
}

func (s *Service) preflightStep(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	req := d.Request
	alias, from, err := s.preflight(ctx, &req, r.ID)
	if err != nil {
		if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrConflict) {
			return "", time.Time{}, phaseFailed("%v", err)
		}
		return "", time.Time{}, err
	}
	if alias != d.SourceAlias || from != d.SourceStack {
		return "", time.Time{}, phaseFailed("tenant moved since the isolation was asked for: now on %s served by %s", alias, from)
	}
	capa, err := s.capacity(ctx, &req, alias)
	if errors.Is(err, ErrCapacity) {
		return "", time.Time{}, phaseFailed("%v", err)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	d.Capacity = capa
	d.phase(PhasePreflight).Detail = fmt.Sprintf("environment %s; %s on %s, served by %s; %s", envName(d.Env), req.Tenant, alias, from, capa)
	return PhaseBackup, time.Time{}, nil
}

func (s *Service) backup(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	if d.BackupDir == "" {
		d.BackupDir = filepath.Join(s.cfg.BackupDir, "isolate-"+r.ID)
	}
	rows, err := s.cfg.Provisioner.Backup(ctx, d.Request.Tenant, d.SourceAlias, d.BackupDir)
	if err != nil {
		return "", time.Time{}, err
	}
	d.BackupRows = rows
	d.phase(PhaseBackup).Detail = fmt.Sprintf("%d rows in %s, verified", rows, d.BackupDir)
	return PhaseProvision, time.Time{}, nil
}

func (s *Service) provision(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	req := d.Request
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	made := "reused"
	if _, ok := snap.Clusters[req.ClusterName]; !ok {
		if err := s.cfg.Provisioner.CreateCluster(ctx, req.ClusterName, *req.Standbys); err != nil {
			return "", time.Time{}, err
		}
		made = "created"
	}
	if a, ok := snap.Aliases[req.Alias]; !ok || a.Standbys != *req.Standbys {
		if err := s.cfg.Provisioner.CreateAlias(ctx, req.Alias, req.ClusterName, *req.Standbys); err != nil {
			return "", time.Time{}, err
		}
	}
	d.phase(PhaseProvision).Detail = fmt.Sprintf("cluster %s (%s, %d standbys), alias %s wanting %d standbys",
		req.ClusterName, made, *req.Standbys, req.Alias, *req.Standbys)
	return PhaseDeploy, time.Time{}, nil
}

func (s *Service) deploy(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	req := d.Request
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	if st, ok := snap.Stacks[req.Stack]; ok && st.Status == registry.StackReady && slices.ContainsFunc(st.Instances, func(in registry.Instance) bool { return in.Healthy }) {
		d.phase(PhaseDeploy).Detail = fmt.Sprintf("stack %s %s reused (%d instances)", st.Name, st.Version, len(st.Instances))
		return PhaseSmoke, time.Time{}, nil
	}
	version := req.Version
	if version == "" {
		if src, ok := snap.Stacks[d.SourceStack]; ok {
			version = src.Version
		}
	}
	st, err := s.cfg.Stacks.Deploy(ctx, stack.Spec{Name: req.Stack, Version: version, Instances: req.Instances})
	if errors.Is(err, stack.ErrRunning) {
		return "", time.Time{}, fmt.Errorf("stack %s is starting: %w", req.Stack, err)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	d.phase(PhaseDeploy).Detail = fmt.Sprintf("stack %s %s deployed (%d instances), no traffic", st.Name, st.Version, len(st.Instances))
	return PhaseSmoke, time.Time{}, nil
}

func (s *Service) smoke(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	res, err := s.cfg.Rollouts.Smoke(ctx, d.Request.Stack, d.Request.Tenant, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	d.Smoke = res
	if !rollout.Passed(res) {
		return "", time.Time{}, phaseFailed("the smoke suite failed on %s", d.Request.Stack)
	}
	d.phase(PhaseSmoke).Detail = fmt.Sprintf("%d checks passed through the preview of %s", len(res), d.Request.Stack)
	return PhaseCutover, time.Time{}, nil
}

func (s *Service) cutover(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	req := d.Request
	if d.RolloutID == "" {
		if id, err := s.runningRollout(ctx, req.Tenant, req.Stack); err != nil || id != "" {
			d.RolloutID = id
			if err != nil {
				return "", time.Time{}, err
			}
		}
	}
	if d.RolloutID == "" && d.Baseline == nil {
		b, err := s.baseline(ctx, d)
		if err != nil {
			return "", time.Time{}, err
		}
		d.Baseline = b
		if err := s.save(ctx, r, d); err != nil {
			return "", time.Time{}, err
		}
	}
	if d.RolloutID == "" {
		params := req.Rollout
		if d.Baseline != nil && d.Baseline.Used && params.BaselineP99 == 0 {
			params.BaselineP99 = rollout.Duration(time.Duration(d.Baseline.P99MS * float64(time.Millisecond)))
		}
		in, err := s.cfg.Rollouts.Start(ctx, rollout.StartRequest{Route: req.Tenant, To: req.Stack, Params: params})
		if err != nil {
			if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrNotFound) {
				return "", time.Time{}, phaseFailed("start the rollout: %v", err)
			}
			return "", time.Time{}, err
		}
		d.RolloutID = in.ID
		if err := s.save(ctx, r, d); err != nil {
			return "", time.Time{}, err
		}
	}
	if err := s.cfg.Hook(ctx, "isolate:cutover:child"); err != nil {
		return "", time.Time{}, err
	}
	in, err := s.cfg.Rollouts.Get(ctx, d.RolloutID, false)
	if err != nil {
		return "", time.Time{}, err
	}
	passed := 0
	for _, v := range in.Data.Intervals {
		if v.Pass {
			passed++
		}
	}
	d.phase(PhaseCutover).Detail = fmt.Sprintf("rollout %s %s at %d%%, %d intervals passed; baseline: %s", in.ID, in.Data.Phase, in.Data.Weight, passed, d.Baseline)
	switch {
	case in.Status == workflow.StatusSucceeded || (in.Status == workflow.StatusRunning && in.Data.Phase == rollout.PhaseHolding):
		return PhaseReplicate, time.Time{}, nil
	case in.Status != workflow.StatusRunning:
		return "", time.Time{}, phaseFailed("rollout %s ended %s: %s %s", in.ID, in.Status, in.Data.Reason, in.Error)
	}
	return PhaseCutover, s.cfg.Now().Add(s.cfg.Poll), nil
}

// runningRollout finds a running rollout of the tenant's route to stack
// (one this isolation started before a crash could record its id).
func (s *Service) runningRollout(ctx context.Context, tenant, to string) (string, error) {
	list, err := s.cfg.Rollouts.List(ctx, tenant)
	if err != nil {
		return "", err
	}
	for _, in := range list {
		if in.Status == workflow.StatusRunning && in.Data.To == to {
			return in.ID, nil
		}
	}
	return "", nil
}

// runningMove finds a running move of the tenant to alias.
func (s *Service) runningMove(ctx context.Context, tenant, to string) (string, error) {
	list, err := s.cfg.Moves.List(ctx, tenant)
	if err != nil {
		return "", err
	}
	for _, in := range list {
		if in.Status == workflow.StatusRunning && in.Data.Target == to {
			return in.ID, nil
		}
	}
	return "", nil
}

func (s *Service) replicate(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	req := d.Request
	if d.MoveID == "" {
		id, err := s.runningMove(ctx, req.Tenant, req.Alias)
		if err != nil {
			return "", time.Time{}, err
		}
		d.MoveID = id
	}
	if d.MoveID == "" {
		mv, err := s.cfg.Moves.Start(ctx, move.StartRequest{Tenant: req.Tenant, To: req.Alias, Force: req.Force})
		if err != nil {
			if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrNotFound) || errors.Is(err, move.ErrPrecheck) {
				return "", time.Time{}, phaseFailed("start the move: %v", err)
			}
			return "", time.Time{}, err
		}
		d.MoveID = mv.ID
		if err := s.save(ctx, r, d); err != nil {
			return "", time.Time{}, err
		}
	}
	if err := s.cfg.Hook(ctx, "isolate:replicate:child"); err != nil {
		return "", time.Time{}, err
	}
	mv, err := s.cfg.Moves.Get(ctx, d.MoveID, false)
	if err != nil {
		return "", time.Time{}, err
	}
	md := mv.Data
	d.LagBytes = md.LagBytes
	detail := fmt.Sprintf("move %s %s, lag %d bytes", mv.ID, md.Phase, md.LagBytes)
	if md.Verify != nil {
		detail += fmt.Sprintf(", verified %d rows in %d chunks (ok %v)", md.Verify.Rows, md.Verify.Chunks, md.Verify.OK)
	}
	d.phase(PhaseReplicate).Detail = detail
	switch {
	case mv.Status != workflow.StatusRunning:
		return "", time.Time{}, phaseFailed("move %s ended %s: %s", mv.ID, mv.Status, mv.Error)
	case mv.Step == "ready":
		return PhasePromote, time.Time{}, nil
	}
	return PhaseReplicate, s.cfg.Now().Add(s.cfg.Poll), nil
}

func (s *Service) promote(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	mv, err := s.cfg.Moves.Get(ctx, d.MoveID, false)
	if err != nil {
		return "", time.Time{}, err
	}
	md := mv.Data
	if mv.Status != workflow.StatusRunning {
		return "", time.Time{}, phaseFailed("move %s ended %s: %s", mv.ID, mv.Status, mv.Error)
	}
	if md.On == md.Target && md.Flip == nil && len(md.Flips) > 0 {
		last := md.Flips[len(md.Flips)-1]
		d.PauseMS = last.PauseMS
		d.phase(PhasePromote).Detail = fmt.Sprintf("promoted to %s, pause %.1f ms", md.Target, last.PauseMS)
		return PhaseStandby, time.Time{}, nil
	}
	if md.FailedFlips >= 3 {
		return "", time.Time{}, phaseFailed("the promotion was refused or rolled back %d times: %s", md.FailedFlips, md.LastError)
	}
	w, _ := ParseWindow(d.Request.Window)
	now := s.cfg.Now()
	if !d.Request.Force && !w.Contains(now) {
		next := w.Next(now)
		d.WaitingFor = fmt.Sprintf("the window %s UTC (opens %s)", w, next.UTC().Format(time.RFC3339))
		return PhasePromote, next, nil
	}
	d.WaitingFor = ""
	if mv.Step == "ready" && d.PromoteSent != md.FailedFlips+1 {
		if _, err := s.cfg.Moves.Command(ctx, d.MoveID, move.SignalPromote, false); err != nil && !errors.Is(err, move.ErrWrongState) {
			return "", time.Time{}, err
		}
		d.PromoteSent = md.FailedFlips + 1
		if err := s.save(ctx, r, d); err != nil {
			return "", time.Time{}, err
		}
	}
	d.phase(PhasePromote).Detail = fmt.Sprintf("move %s at %s", mv.ID, mv.Step)
	return PhasePromote, now.Add(s.cfg.Poll), nil
}

func (s *Service) standby(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	mv, err := s.cfg.Moves.Get(ctx, d.MoveID, false)
	if err != nil {
		return "", time.Time{}, err
	}
	if l := mv.Data.Link; l != nil && l.From == mv.Data.Target {
		d.LinkBack = fmt.Sprintf("%s -> %s (subscription %s)", l.From, l.To, l.Subscription)
	}
	want := *d.Request.Standbys
	n, err := s.cfg.Provisioner.StandbysStreaming(ctx, d.Request.ClusterName)
	if err != nil {
		return "", time.Time{}, err
	}
	d.Streaming = n
	d.phase(PhaseStandby).Detail = fmt.Sprintf("link back %s; %d of %d standbys streaming", d.LinkBack, n, want)
	if d.LinkBack != "" && n >= want {
		return PhaseHypercare, time.Time{}, nil
	}
	if s.cfg.Now().Sub(d.phase(PhaseStandby).StartedAt) > 5*time.Minute {
		return "", time.Time{}, phaseFailed("after 5 min: %s", d.phase(PhaseStandby).Detail)
	}
	d.WaitingFor = "standbys streaming and the link back"
	return PhaseStandby, s.cfg.Now().Add(s.cfg.Poll), nil
}

func (s *Service) hypercare(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	now := s.cfg.Now()
	if d.HypercareEnds.IsZero() {
		d.HypercareEnds = now.Add(time.Duration(d.Request.Hypercare)).UTC()
	}
	for _, sg := range r.Signals {
		if sg.Name == SignalComplete {
			r.Consume(sg)
			d.phase(PhaseHypercare).Detail = "completed on command"
			return PhaseComplete, time.Time{}, nil
		}
	}
	mv, err := s.cfg.Moves.Get(ctx, d.MoveID, false)
	if err != nil {
		return "", time.Time{}, err
	}
	d.LagBytes = mv.Data.LagBytes
	if n, err := s.cfg.Provisioner.StandbysStreaming(ctx, d.Request.ClusterName); err == nil {
		d.Streaming = n
	}
	if mv.Status != workflow.StatusRunning {
		if mv.Status == workflow.StatusSucceeded {
			d.phase(PhaseHypercare).Detail = "the move completed"
			return PhaseComplete, time.Time{}, nil
		}
		return "", time.Time{}, phaseFailed("move %s ended %s during hypercare: %s", mv.ID, mv.Status, mv.Error)
	}
	if !now.Before(d.HypercareEnds) {
		d.phase(PhaseHypercare).Detail = "hypercare ended"
		return PhaseComplete, time.Time{}, nil
	}
	v, err := s.judge(ctx, d, mv)
	if err != nil {
		return "", time.Time{}, err
	}
	if v != nil && !v.Pass {
		msg := fmt.Sprintf("hypercare verdict failed (%d in a row): %s", d.FailingVerdicts, strings.Join(v.Reasons, "; "))
		_ = r.Info(ctx, msg, v)
		_ = s.cfg.Store.AddEvent(ctx, EventVerdict, r.Subject, fmt.Sprintf("isolation %s: %s", r.ID, msg), v)
		if d.Request.AutoCutback && d.FailingVerdicts >= d.limit() {
			d.phase(PhaseHypercare).Detail = msg
			d.Reason = "auto-cutback: " + msg
			d.end(PhaseHypercare, StateFailed, now)
			return stepCutback, time.Time{}, nil
		}
	}
	d.WaitingFor = "complete, cutback or the end of hypercare at " + d.HypercareEnds.Format(time.RFC3339)
	d.phase(PhaseHypercare).Detail = fmt.Sprintf("link back lag %d bytes, %d standbys streaming, %d verdicts (%d failing in a row)",
		d.LagBytes, d.Streaming, len(d.Verdicts), d.FailingVerdicts)
	return PhaseHypercare, minTime(d.HypercareEnds, now.Add(2*time.Second)), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (s *Service) complete(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	mv, err := s.cfg.Moves.Get(ctx, d.MoveID, false)
	if err != nil {
		return "", time.Time{}, err
	}
	if mv.Status == workflow.StatusRunning {
		if mv.Step == "hypercare" && !d.CompleteSent {
			if _, err := s.cfg.Moves.Command(ctx, d.MoveID, move.SignalComplete, false); err != nil {
				return "", time.Time{}, err
			}
			d.CompleteSent = true
			if err := s.save(ctx, r, d); err != nil {
				return "", time.Time{}, err
			}
		}
		return PhaseComplete, s.cfg.Now().Add(s.cfg.Poll), nil
	}
	if mv.Status != workflow.StatusSucceeded {
		return "", time.Time{}, fmt.Errorf("move %s ended %s: %s", mv.ID, mv.Status, mv.Error)
	}
	if d.RolloutID != "" {
		in, err := s.cfg.Rollouts.Get(ctx, d.RolloutID, false)
		if err != nil {
			return "", time.Time{}, err
		}
		if in.Status == workflow.StatusRunning && in.Data.Phase == rollout.PhaseHolding {
			if _, err := s.cfg.Rollouts.Command(ctx, d.RolloutID, rollout.SignalRetire); err != nil {
				return "", time.Time{}, err
			}
		}
	}
	d.Outcome = "completed"
	d.phase(PhaseComplete).Detail = fmt.Sprintf("move %s completed (%d old rows purged, link severed)", mv.ID, mv.Data.Purged)
	total := s.cfg.Now().Sub(d.phase(PhasePreflight).StartedAt).Seconds()
	if err := s.cfg.Store.AddEvent(ctx, EventSucceeded, r.Subject, fmt.Sprintf("isolation %s of %s succeeded in %s environment", r.ID, r.Subject, envName(d.Env)),
		map[string]any{"isolation": r.ID, "env": d.Env, "seconds": total, "cluster": d.Request.ClusterName, "stack": d.Request.Stack}); err != nil {
		return "", time.Time{}, err
	}
	return "", time.Time{}, nil
}

func (s *Service) cutback(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	wait, err := s.undo(ctx, r, d)
	if err != nil || !wait.IsZero() {
		return stepCutback, wait, err
	}
	d.Outcome = "cut_back"
	_ = s.cfg.Store.AddEvent(ctx, EventCutBack, r.Subject, fmt.Sprintf("isolation %s of %s cut back: %s", r.ID, r.Subject, d.Reason),
		map[string]any{"isolation": r.ID, "reason": d.Reason, "cutback_ms": d.CutbackMS})
	return "", time.Time{}, nil
}

func (s *Service) abort(ctx context.Context, r *workflow.Run, d *Data) (string, time.Time, error) {
	wait, err := s.undo(ctx, r, d)
	if err != nil || !wait.IsZero() {
		return stepAbort, wait, err
	}
	d.Outcome = "rolled_back"
	_ = s.cfg.Store.AddEvent(ctx, EventCutBack, r.Subject, fmt.Sprintf("isolation %s of %s rolled back: %s", r.ID, r.Subject, d.Reason),
		map[string]any{"isolation": r.ID, "reason": d.Reason})
	return "", time.Time{}, nil
}

// undo takes the tenant's data back (the move's cutback through the link
// back, when promoted), then its traffic (the rollout's cutback or abort,
// then the route as it was) — CutbackMS is measured there — and then
// cleans up: the move is cancelled, dropping the dedicated copy. It
// returns a non-zero wait while a child still acts.
func (s *Service) undo(ctx context.Context, r *workflow.Run, d *Data) (time.Time, error) {
	req := d.Request
	later := s.cfg.Now().Add(s.cfg.Poll)
	if d.MoveID == "" {
		id, err := s.runningMove(ctx, req.Tenant, req.Alias)
		if err != nil {
			return time.Time{}, err
		}
		d.MoveID = id
	}
	var mv *move.Info
	if d.MoveID != "" {
		var err error
		if mv, err = s.cfg.Moves.Get(ctx, d.MoveID, false); err != nil {
			return time.Time{}, err
		}
		md := mv.Data
		if mv.Status == workflow.StatusRunning {
			d.phase(PhaseCutback).Detail = fmt.Sprintf("move %s at %s, tenant on %s", mv.ID, mv.Step, md.On)
			switch {
			case md.Flip != nil || slices.Contains([]string{"promote", "cutback", "complete"}, mv.Step):
				return later, nil // a flip of the move is acting: wait for it
			case md.On == md.Target:
				if !d.CutbackSent {
					if _, err := s.cfg.Moves.Command(ctx, d.MoveID, move.SignalCutback, false); err != nil {
						return time.Time{}, err
					}
					d.CutbackSent = true
				}
				return later, s.save(ctx, r, d)
			}
		} else if mv.Status == workflow.StatusSucceeded && md.On == md.Target {
			return time.Time{}, workflow.Fail(fmt.Errorf("%w: the move %s completed: the tenant's data lives on %s only", ErrWrongState, mv.ID, md.Target))
		}
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if t, ok := snap.Tenants[req.Tenant]; ok && t.Alias != d.SourceAlias {
		return time.Time{}, workflow.Fail(fmt.Errorf("%w: tenant %s is on %s, not back on %s", ErrPhase, req.Tenant, t.Alias, d.SourceAlias))
	}
	if d.RolloutID == "" {
		id, err := s.runningRollout(ctx, req.Tenant, req.Stack)
		if err != nil {
			return time.Time{}, err
		}
		d.RolloutID = id
	}
	if d.RolloutID != "" {
		in, err := s.cfg.Rollouts.Get(ctx, d.RolloutID, false)
		if err != nil {
			return time.Time{}, err
		}
		if in.Status == workflow.StatusRunning {
			cmd := rollout.SignalAbort
			if in.Data.Phase == rollout.PhaseHolding {
				cmd = rollout.SignalCutback
			}
			if _, err := s.cfg.Rollouts.Command(ctx, d.RolloutID, cmd); err != nil {
				return time.Time{}, err
			}
			return later, nil
		}
	}
	cur, own := snap.Routes[req.Tenant]
	switch {
	case d.OwnRoute == nil && own:
		if err := s.cfg.Store.DeleteRoute(ctx, req.Tenant); err != nil && !errors.Is(err, registry.ErrNotFound) {
			return time.Time{}, err
		}
	case d.OwnRoute != nil && !sameRoute(cur, d.OwnRoute):
		rt := registry.Route{Tenant: req.Tenant}
		for _, b := range d.OwnRoute {
			rt.Backends = append(rt.Backends, registry.Backend{Stack: b.Stack, Weight: b.Weight})
		}
		if err := s.cfg.Store.SetRoute(ctx, rt, 0); err != nil {
			return time.Time{}, err
		}
	}
	if d.CutbackMS == 0 {
		d.CutbackMS = float64(s.cfg.Now().Sub(d.phase(PhaseCutback).StartedAt).Microseconds()) / 1000
	}
	d.phase(PhaseCutback).Detail = fmt.Sprintf("data back on %s, traffic back on %s in %.0f ms", d.SourceAlias, d.SourceStack, d.CutbackMS)
	if mv != nil && mv.Status == workflow.StatusRunning {
		if !d.CancelSent && !slices.Contains([]string{"cancel", "abort"}, mv.Step) {
			if _, err := s.cfg.Moves.Command(ctx, d.MoveID, move.SignalCancel, false); err != nil {
				return time.Time{}, err
			}
			d.CancelSent = true
		}
		return later, s.save(ctx, r, d)
	}
	return time.Time{}, nil
}

func sameRoute(r *registry.Route, want []RouteBackend) bool {
	if r == nil || len(r.Backends) != len(want) {
		return false
	}
	for i, b := range r.Backends {
		if b.Stack != want[i].Stack || b.Weight != want[i].Weight {
			return false
		}
	}
	return true
}
