package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tenantry/registry"
	"tenantry/stack"
	"tenantry/workflow"
)

// Steps of the workflow.
const (
	stepPrecheck = "precheck"
	stepShift    = "shift"
	stepAnalyse  = "analyse"
	stepHold     = "hold"
	stepRetire   = "retire"
	stepRollback = "rollback"
)

func (s *Service) def() *workflow.Def {
	return &workflow.Def{
		Kind: Kind,
		Steps: map[string]workflow.Step{
			stepPrecheck: s.precheck,
			stepShift:    s.shift,
			stepAnalyse:  s.analyse,
			stepHold:     s.hold,
			stepRetire:   s.retire,
			stepRollback: s.rollback,
		},
		Start:    stepPrecheck,
		Rollback: stepRollback,
		// A step's transient errors (the control database, the gateway)
		// are retried quickly: the analysis must not stall for minutes.
		Backoff: func(attempt int) time.Duration { return min(200*time.Millisecond<<min(attempt-1, 4), 3*time.Second) },
	}
}

// step decodes the run's data, calls fn and encodes the data back, whatever
// fn returns.
func step(r *workflow.Run, fn func(d *Data) (string, error)) (string, error) {
	var d Data
	if err := r.Decode(&d); err != nil {
		return "", workflow.Fail(err)
	}
	next, err := fn(&d)
	if eerr := r.Encode(d); eerr != nil {
		return "", eerr
	}
	return next, err
}

// fail records reason and fails the run: the runner then rolls back.
func fail(d *Data, err error) error {
	d.Reason = err.Error()
	return workflow.Fail(err)
}

// precheck: the new stack is ready and passes the smoke suite through the
// preview; the old stack's p99 through the preview is the first baseline.
func (s *Service) precheck(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *Data) (string, error) {
		if sig, ok := signal(r, SignalAbort); ok {
			r.Consume(sig)
			return "", fail(d, fmt.Errorf("%w: aborted before traffic moved", ErrAborted))
		}
		snap, err := s.cfg.Store.Snapshot(ctx)
		if err != nil {
			return "", err
		}
		if err := ready(snap, d.To); err != nil {
			return "", fail(d, fmt.Errorf("%w: %v", ErrSmoke, err))
		}
		key, err := s.key(ctx, r, d)
		if err != nil {
			return "", err
		}
		d.Smoke = s.preview(key, d.To).Smoke(ctx, d.Checks)
		if !Passed(d.Smoke) {
			var failed []string
			for _, c := range d.Smoke {
				if !c.Pass && !strings.HasPrefix(c.Error, "skipped") {
					failed = append(failed, c.Name+": "+c.Error)
				}
			}
			d.note("smoke failed", strings.Join(failed, "; "))
			return "", fail(d, fmt.Errorf("%w: smoke suite through the preview: %s", ErrSmoke, strings.Join(failed, "; ")))
		}
		d.note("smoke passed", fmt.Sprintf("%d checks", len(d.Smoke)))
		if fixed := d.Params.BaselineP99; fixed > 0 {
			d.BaselineP99Ms = ms(time.Duration(fixed))
			d.note("baseline", fmt.Sprintf("fixed by the request: p99 %.1fms", d.BaselineP99Ms))
			return stepShift, nil
		}
		base := figuresOf(s.preview(key, d.From).Probe(ctx, d.Params.MinRequests))
		d.BaselineP99Ms = base.P99Ms
		d.note("baseline", fmt.Sprintf("old stack %s through the preview: p99 %.1fms over %d probes", d.From, base.P99Ms, base.Requests))
		return stepShift, nil
	})
}

// shift sets the route to the current step's weights and starts its grace
// period.
func (s *Service) shift(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *Data) (string, error) {
		w := d.Params.Steps[d.Step]
		if err := s.cfg.Store.SetRoute(ctx, registry.Route{Tenant: routeTenant(d.Route), Backends: backends(d.From, d.To, w)}, 0); err != nil {
			return "", err
		}
		_, dbNow, err := s.cfg.Store.StackStats(ctx, nil, time.Now())
		if err != nil {
			return "", err
		}
		now := time.Now()
		d.Weight, d.Phase, d.StepStarted = w, PhaseAnalysing, now
		d.WindowAfter, d.WindowEnd = dbNow, now.Add(time.Duration(d.Params.Interval))
		d.note("shift", fmt.Sprintf("%s %d%%, %s %d%%", d.To, w, d.From, 100-w))
		return stepAnalyse, nil
	})
}

// analyse judges every interval of the current step's grace period; it
// parks between intervals, so that promote and abort wake it.
func (s *Service) analyse(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *Data) (string, error) {
		if sig, ok := signal(r, SignalAbort); ok {
			r.Consume(sig)
			return "", fail(d, fmt.Errorf("%w: aborted at %d%%", ErrAborted, d.Weight))
		}
		if sig, ok := signal(r, SignalPromote); ok {
			// All traffic to the new stack now, and the hold: the remaining
			// steps and their analysis are skipped.
			r.Consume(sig)
			if err := s.cfg.Store.SetRoute(ctx, registry.Route{Tenant: routeTenant(d.Route), Backends: backends(d.From, d.To, 100)}, 0); err != nil {
				return "", err
			}
			d.Step, d.Weight = len(d.Params.Steps)-1, 100
			d.note("promote", fmt.Sprintf("by the operator: %s 100%%, remaining steps skipped", d.To))
			return stepHold, nil
		}
		now := time.Now()
		if now.Before(d.WindowEnd) {
			return "", workflow.Wait(d.WindowEnd)
		}
		v, err := s.judgeInterval(ctx, r, d)
		if err != nil {
			return "", err
		}
		iv := time.Duration(d.Params.Interval)
		start := d.WindowEnd.Add(-iv)
		d.Judged++
		if d.Intervals = append(d.Intervals, v); len(d.Intervals) > MaxVerdicts {
			d.Intervals = slices.Delete(d.Intervals, 0, len(d.Intervals)-MaxVerdicts)
		}
		if v.Pass {
			d.Failures = 0
		} else {
			if d.Failures == 0 {
				d.FirstBadAt = start
			}
			d.Failures++
		}
		d.WindowEnd = d.WindowEnd.Add(iv)
		if d.WindowEnd.Before(now) { // resumed after a pause: judge from now on
			d.WindowEnd = now.Add(iv)
		}
		if d.Failures >= d.Params.FailureLimit {
			return "", fail(d, fmt.Errorf("%w: %d consecutive failing intervals at %d%%; last: %s", ErrFailed, d.Failures, d.Weight, v.Detail))
		}
		if now.Sub(d.StepStarted) >= time.Duration(d.Params.Grace) && d.Failures == 0 {
			if d.Step == len(d.Params.Steps)-1 {
				return stepHold, nil
			}
			d.Step++
			return stepShift, nil
		}
		if err := r.Encode(d); err != nil {
			return "", err
		}
		if err := r.Save(ctx); err != nil {
			return "", err
		}
		return "", workflow.Wait(d.WindowEnd)
	})
}

// judgeInterval reads both stacks' figures since the last read, tops the
// new stack's up with probes when it had too few requests, and judges.
func (s *Service) judgeInterval(ctx context.Context, r *workflow.Run, d *Data) (Verdict, error) {
	stats, upto, err := s.cfg.Store.StackStats(ctx, []string{d.From, d.To}, d.WindowAfter)
	if err != nil {
		return Verdict{}, err
	}
	d.WindowAfter = upto
	nw, old := stats[d.To], stats[d.From]
	v := Verdict{At: time.Now().UTC(), Step: d.Step, Weight: d.Weight}
	if short := int64(d.Params.MinRequests) - nw.Requests; short > 0 {
		key, err := s.key(ctx, r, d)
		if err != nil {
			return Verdict{}, err
		}
		nw = nw.Add(s.preview(key, d.To).Probe(ctx, int(short)))
		v.Probes = int(short)
	}
	v.New, v.Old = figuresOf(nw), figuresOf(old)
	if old.Requests >= int64(d.Params.MinRequests) && d.Params.BaselineP99 == 0 {
		d.BaselineP99Ms = v.Old.P99Ms
	}
	v.BaselineP99Ms = d.BaselineP99Ms
	v.Pass, v.Reasons, v.Detail = judge(d.Params, v.New, d.BaselineP99Ms)
	return v, nil
}

// hold keeps the old stack deployed, with no traffic, until the hold ends
// (then retire), or a command: cutback rolls back, retire retires now.
func (s *Service) hold(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *Data) (string, error) {
		if d.Phase != PhaseHolding {
			d.Phase = PhaseHolding
			d.HoldUntil = time.Now().Add(time.Duration(d.Params.Hold))
			d.note("promoted", fmt.Sprintf("all traffic on %s; %s held until %s", d.To, d.From, d.HoldUntil.UTC().Format(time.RFC3339)))
			s.releaseKey(ctx, d)
			_ = s.cfg.Store.AddEvent(ctx, EventPromoted, d.Route, fmt.Sprintf("rollout %s: all traffic on %s", r.ID, d.To), nil)
		}
		if sig, ok := signal(r, SignalCutback); ok {
			r.Consume(sig)
			return "", fail(d, fmt.Errorf("%w: cut back to %s during the hold", ErrAborted, d.From))
		}
		if sig, ok := signal(r, SignalRetire); ok {
			r.Consume(sig)
			return stepRetire, nil
		}
		if time.Now().Before(d.HoldUntil) {
			return "", workflow.Wait(d.HoldUntil)
		}
		return stepRetire, nil
	})
}

// retire stops the old stack, unless a route still sends it traffic.
func (s *Service) retire(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *Data) (string, error) {
		snap, err := s.cfg.Store.Snapshot(ctx)
		if err != nil {
			return "", err
		}
		var users []string
		for _, rt := range snap.Routes {
			for _, b := range rt.Backends {
				if b.Stack == d.From && b.Weight > 0 {
					name := rt.Tenant
					if name == registry.DefaultRoute {
						name = DefaultRouteName
					}
					users = append(users, name)
				}
			}
		}
		switch {
		case len(users) > 0:
			d.note("retired", fmt.Sprintf("%s left running: routes %v still send it traffic", d.From, users))
		case s.cfg.Stacks == nil:
			d.note("retired", fmt.Sprintf("%s left running: no stack provider", d.From))
		default:
			if err := s.cfg.Stacks.Stop(ctx, d.From); err != nil && !errors.Is(err, stack.ErrNotRunning) {
				return "", err
			}
			d.note("retired", d.From+" stopped")
		}
		d.Phase = PhaseRetired
		return "", nil
	})
}

// rollback sends the route's traffic back to the old stack.
func (s *Service) rollback(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *Data) (string, error) {
		if err := s.cfg.Store.SetRoute(ctx, registry.Route{Tenant: routeTenant(d.Route), Backends: backends(d.From, d.To, 0)}, 0); err != nil {
			return "", err
		}
		if d.RolledBackAt.IsZero() {
			d.RolledBackAt = time.Now()
		}
		d.Weight, d.Phase = 0, PhaseRolledBack
		d.note("rolled back", fmt.Sprintf("all traffic on %s: %s", d.From, d.Reason))
		s.releaseKey(ctx, d)
		_ = s.cfg.Store.AddEvent(ctx, EventRolledBack, d.Route, fmt.Sprintf("rollout %s: %s", r.ID, d.Reason), nil)
		return "", nil
	})
}

func signal(r *workflow.Run, name string) (workflow.Signal, bool) {
	for _, s := range r.Signals {
		if s.Name == name {
			return s, true
		}
	}
	return workflow.Signal{}, false
}

// key returns the rollout's temporary API key for previews. Its secret
// lives only in this process: a run resumed elsewhere (or after a restart)
// revokes the recorded key and makes a new one.
func (s *Service) key(ctx context.Context, r *workflow.Run, d *Data) (string, error) {
	s.mu.Lock()
	secret, ok := s.keys[d.KeyID]
	s.mu.Unlock()
	if ok {
		return secret, nil
	}
	s.releaseKey(ctx, d)
	secret, k, err := s.cfg.Store.CreateAPIKey(ctx, d.ProbeTenant)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.keys[k.ID] = secret
	s.mu.Unlock()
	d.KeyID = k.ID
	if err := r.Encode(d); err != nil {
		return "", err
	}
	if err := r.Save(ctx); err != nil {
		return "", err
	}
	if err := waitKey(ctx, s.preview(secret, d.To)); err != nil {
		return "", err
	}
	return secret, nil
}

// releaseKey revokes the rollout's temporary key, if any.
func (s *Service) releaseKey(ctx context.Context, d *Data) {
	if d.KeyID == "" {
		return
	}
	if err := s.cfg.Store.RevokeAPIKey(ctx, d.ProbeTenant, d.KeyID); err != nil && !errors.Is(err, registry.ErrNotFound) {
		s.log.Warn("revoke the preview key", "key", d.KeyID, "err", err)
		return
	}
	s.mu.Lock()
	delete(s.keys, d.KeyID)
	s.mu.Unlock()
	d.KeyID = ""
}
