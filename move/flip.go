package move

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"tenantry/logrepl"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/workflow"
)

func (m *Mover) promote(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		return m.flipStep(ctx, r, d, "promote", d.Source, d.Target)
	})
}

func (m *Mover) cutback(ctx context.Context, r *workflow.Run) (string, error) {
	return m.step(ctx, r, func(d *Data) (string, error) {
		return m.flipStep(ctx, r, d, "cutback", d.Target, d.Source)
	})
}

// flipStep runs a flip and decides where the move goes next: hypercare
// when it flipped, back to where it waited when it was refused or rolled
// back.
func (m *Mover) flipStep(ctx context.Context, r *workflow.Run, d *Data, kind, from, to string) (string, error) {
	back := "ready"
	if len(d.Flips) > 0 {
		back = "hypercare"
	}
	if d.On == to && d.Flip == nil {
		return "hypercare", nil // already flipped (step re-run after a crash)
	}
	d.Phase = PhaseFlipping
	rec, err := m.flip(ctx, r, d, kind, from, to)
	if err == nil {
		d.Flips = append(d.Flips, *rec)
		d.VerifyPending = !rec.Counted
		d.Phase = PhaseHypercare
		d.LastError = ""
		d.HypercareEnds = m.cfg.Now().Add(m.cfg.Hypercare)
		_ = r.Info(ctx, fmt.Sprintf("%s: tenant %s now on %s; pause %.1f ms", kind, d.Tenant, to, rec.PauseMS), rec)
		return "hypercare", nil
	}
	if errors.Is(err, ErrPrecheck) || errors.Is(err, ErrAborted) {
		d.LastError = err.Error()
		d.FailedFlips++
		d.Phase = PhaseReady
		if back == "hypercare" {
			d.Phase = PhaseHypercare
		}
		_ = r.Info(ctx, kind+" refused or rolled back", map[string]string{"error": err.Error()})
		return back, nil
	}
	return "", err
}

// flip moves where the tenant is served from, from -> to, with the link
// from -> to in sync: the promotion (and, the other way, the cutback) of
// DESIGN.md's move protocol. Everything that can happen before the pause
// does (checks, sequences with their gap, the link back); inside the pause
// only: pause and acks, fence, wait for the last change to be applied, row
// counts, a never-backwards setval, the flip. A failure before the flip
// rolls back to serving from `from`, unfenced (ErrAborted). After the flip
// the old link is replaced by the link to -> from, started at the flip's LSN.
func (m *Mover) flip(ctx context.Context, r *workflow.Run, d *Data, kind, from, to string) (*FlipRecord, error) {
	if d.Flip != nil {
		// A flip was under way when the previous runner stopped.
		if err := m.resolveFlip(ctx, r, d); err != nil {
			return nil, err
		}
		if d.On == to && d.Flip == nil && len(d.Flips) > 0 {
			rec := d.Flips[len(d.Flips)-1]
			d.Flips = d.Flips[:len(d.Flips)-1]
			return &rec, nil
		}
		if d.On == to {
			return nil, fmt.Errorf("flip resolved to %s without a record", to)
		}
		// Rolled back: start over with fresh checks.
	}
	snap, sides, err := m.open(ctx, from, to)
	if err != nil {
		return nil, err
	}
	defer closeSides(sides)
	x, y := sides[0], sides[1]
	t, ok := snap.Tenants[d.Tenant]
	if !ok {
		return nil, workflow.Fail(fmt.Errorf("tenant %q: %w", d.Tenant, registry.ErrNotFound))
	}
	if t.Alias != from || t.State != registry.StateActive {
		return nil, fmt.Errorf("%w: tenant %s is %s on %s, expected active on %s", ErrPrecheck, d.Tenant, t.State, t.Alias, from)
	}
	cur, err := linkFor(r.ID, d, from, to)
	if err != nil {
		return nil, workflow.Fail(err)
	}
	back, err := linkFor(r.ID, d, to, from)
	if err != nil {
		return nil, workflow.Fail(err)
	}

	bumps, err := m.beforePause(ctx, d, x, y, cur, back)
	if err != nil {
		return nil, err
	}
	d.Flip = &FlipState{From: from, To: to, Kind: kind, Phase: flipPausing, StartEpoch: t.Epoch}
	if err := save(ctx, r, d); err != nil {
		return nil, err
	}

	rec := &FlipRecord{Kind: kind, From: from, To: to, Phases: map[string]int{}, Sequences: bumps,
		Counted: m.countInPause(d)}
	sw := &stopwatch{phases: rec.Phases, mark: time.Now()}
	start := time.Now()
	paused, err := m.cfg.Registry.SetPlacement(ctx, d.Tenant, t.Epoch, from, registry.StatePaused)
	if err != nil {
		d.Flip = nil
		return nil, fmt.Errorf("%w: pause: %v", ErrPrecheck, err)
	}
	d.Flip.Epoch, d.Flip.PausedAt = paused.Epoch, start
	if err := m.inPause(ctx, r, d, x, y, cur, rec.Counted, sw); err != nil {
		if errors.Is(err, workflow.ErrLeaseLost) || ctx.Err() != nil {
			return nil, err // another runner owns the move now; it resolves the flip
		}
		if rerr := m.rollbackFlip(ctx, r, d, x); rerr != nil {
			return nil, fmt.Errorf("%v; and rolling back: %w", err, rerr)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrAborted, kind, err)
	}
	flipped, err := m.cfg.Registry.SetPlacement(ctx, d.Tenant, paused.Epoch, to, registry.StateActive)
	if err != nil {
		// Did it commit? resolveFlip reads the registry and decides.
		return nil, fmt.Errorf("flip placement: %w", err)
	}
	rec.PauseMS = float64(time.Since(start).Microseconds()) / 1000
	sw.lap("flip")
	rec.At, rec.Epoch = m.cfg.Now(), flipped.Epoch
	d.On = to
	d.Flip.Phase = flipFlipped
	d.Flips = append(d.Flips, *rec) // kept in Data so a resumed run finds it
	if err := save(ctx, r, d); err != nil {
		return nil, err
	}
	if err := m.cfg.hook(ctx, "flipped"); err != nil {
		return nil, err
	}
	if err := m.swapLinks(ctx, r, d); err != nil {
		return nil, err
	}
	d.Flips = d.Flips[:len(d.Flips)-1]
	return rec, nil
}

// beforePause does what a flip from x to y can do before its pause: the
// pre-checks, y's sequences lifted past x's with the gap, the link back
// prepared on y (publication and slot), and connections opened (opened
// inside the pause, they would add their start-up to it). It returns the
// sequence bumps for the flip's record.
func (m *Mover) beforePause(ctx context.Context, d *Data, x, y *side, cur, back Link) ([]logrepl.SequenceBump, error) {
	if err := m.precheck(ctx, d, x, cur); err != nil {
		return nil, err
	}
	bumps, err := logrepl.BumpSequences(ctx, x.pool, y.pool, d.Tables, m.cfg.SequenceGap)
	if err != nil {
		return nil, fmt.Errorf("bump sequences with gap: %w", err)
	}
	if _, err := logrepl.PrepareReverse(ctx, y.pool, back.Link, d.Tenant, d.Tables); err != nil {
		return nil, err
	}
	if err := warm(ctx, x, y); err != nil {
		return nil, err
	}
	return bumps, nil
}

// inPause is the pause of a flip from x to y over link cur, the placement
// paused at d.Flip.Epoch: the routers' acknowledgements, the tenant fenced
// on x, proof that y applied everything x committed, the row counts (when
// counted), y's sequences above x's, the tenant unfenced on y and the
// flip's LSN read there. The caller rolls back on an error (and a rollback
// unfences x whatever the phase, so a phase may start before it is saved).
// sw times the parts.
//
// The fence overlaps the drain, in two halves. Its first half, NOLOGIN on
// x, runs while the routers drain: it refuses new sessions only, and a
// router that applied the pause opens none for an old epoch's transaction
// but for one admitted before the pause that needs a connection, which the
// router admits again when the refusal comes (route: a transaction that
// never started is re-run once its epoch moved on). Its second half, ending
// every session of the tenant on x, waits for the acknowledgements: until
// then live routers may have read-write transactions in flight there. A
// router that missed the pause (partitioned from the registry, or not yet
// counted as live) is stopped all the same: its sessions are ended by the
// second half and it cannot open new ones since the first, so after the
// fence nothing of the tenant commits on x and the marker that follows
// proves y has everything.
func (m *Mover) inPause(ctx context.Context, r *workflow.Run, d *Data, x, y *side, cur Link, counted bool, sw *stopwatch) error {
	d.Flip.Phase = flipFenced
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := provision.DenyLogin(gctx, x.pool, d.Tenant); err != nil {
			return fmt.Errorf("fence on %s: %w", x.alias, err)
		}
		return nil
	})
	g.Go(func() error { return save(gctx, r, d) })
	g.Go(func() error {
		actx, cancel := context.WithTimeout(gctx, m.cfg.AckTimeout)
		defer cancel()
		return m.cfg.Registry.WaitAcks(actx, d.Tenant, d.Flip.Epoch, m.cfg.RouterLive)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	sw.lap("acks")
	if err := m.cfg.hook(ctx, "paused"); err != nil {
		return err
	}
	if _, err := provision.EndSessions(ctx, x.pool, d.Tenant); err != nil {
		return fmt.Errorf("fence on %s: %w", x.alias, err)
	}
	sw.lap("fence")
	if err := m.cfg.hook(ctx, "fenced"); err != nil {
		return err
	}
	if err := m.catchUp(ctx, d, x, y, cur, m.cfg.ApplyTimeout); err != nil {
		return err
	}
	sw.lap("apply")
	if err := m.cfg.hook(ctx, "applied"); err != nil {
		return err
	}
	if counted {
		diff, err := logrepl.CountBothParallel(ctx, x.pool, y.pool, d.Tenant, d.Tables)
		if err != nil {
			return err
		}
		if len(diff) > 0 {
			return fmt.Errorf("row counts differ after catch-up: %v", diff)
		}
		sw.lap("counts")
	}
	// After the catch-up, three independent statements on y: nothing of the
	// tenant writes there before the flip, so the LSN read alongside the
	// others is still the flip's. It is the insert position, not the written
	// one: the link applied the last changes (the marker) without waiting
	// for the WAL flush, and the link back must start past them, or it
	// would replay them onto x. (Read after the unfence's commit, which
	// flushes, the written position was past them too; read alongside it,
	// it need not be.)
	var flipLSN logrepl.LSN
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := logrepl.EnsureSequencesAbove(gctx, x.pool, y.pool, d.Tables)
		return err
	})
	g.Go(func() error {
		if err := provision.Unfence(gctx, y.pool, d.Tenant); err != nil {
			return fmt.Errorf("unfence on %s: %w", y.alias, err)
		}
		return nil
	})
	g.Go(func() error {
		var err error
		flipLSN, err = logrepl.InsertLSN(gctx, y.pool)
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	sw.lap("sequences")
	d.Flip.FlipLSN = flipLSN.String()
	d.Flip.Phase = flipFlipping
	if err := save(ctx, r, d); err != nil {
		return err
	}
	return m.cfg.hook(ctx, "before-flip")
}

// stopwatch records, under a name, the milliseconds since its last lap.
type stopwatch struct {
	phases map[string]int
	mark   time.Time
}

func (s *stopwatch) lap(name string) {
	now := time.Now()
	s.phases[name] = int(now.Sub(s.mark).Milliseconds())
	s.mark = now
}

// precheck refuses a flip that would take a pause and then fail.
func (m *Mover) precheck(ctx context.Context, d *Data, x *side, cur Link) error {
	if m.cfg.Window != nil && !d.Force && !m.cfg.Window.Contains(m.cfg.Now()) {
		return fmt.Errorf("%w: outside the maintenance window (use --force)", ErrPrecheck)
	}
	lag, err := logrepl.Lag(ctx, x.pool, cur.Slot)
	if err != nil {
		return fmt.Errorf("%w: replication link %s: %v", ErrPrecheck, cur.Slot, err)
	}
	d.LagBytes = lag
	if lag > m.cfg.LagBound {
		return fmt.Errorf("%w: replication lag %d bytes is above the bound of %d", ErrPrecheck, lag, m.cfg.LagBound)
	}
	routers, err := m.cfg.Registry.Routers(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	var silent []string
	for _, rt := range routers {
		age := now.Sub(rt.Heartbeat)
		if age > m.cfg.RouterLive && age < m.cfg.RouterDead {
			silent = append(silent, fmt.Sprintf("%s (last heartbeat %s ago)", rt.ID, age.Round(time.Millisecond)))
		}
	}
	if len(silent) > 0 && !d.Force {
		return fmt.Errorf("%w: routers not heartbeating: %s", ErrPrecheck, strings.Join(silent, ", "))
	}
	return nil
}

func (m *Mover) countInPause(d *Data) bool {
	if m.cfg.SkipCountInPause {
		return false
	}
	if m.cfg.CountInPauseMaxRows < 0 {
		return true
	}
	var rows int64
	for _, n := range d.SourceRows {
		rows += n
	}
	return rows <= m.cfg.CountInPauseMaxRows
}

// rollbackFlip undoes a flip that did not reach the placement change:
// unfence the tenant where it is, and resume it there.
func (m *Mover) rollbackFlip(ctx context.Context, r *workflow.Run, d *Data, x *side) error {
	f := d.Flip
	if err := provision.Unfence(ctx, x.pool, d.Tenant); err != nil {
		return fmt.Errorf("unfence on %s: %w", f.From, err)
	}
	snap, err := m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	t, ok := snap.Tenants[d.Tenant]
	if !ok {
		return fmt.Errorf("tenant %q: %w", d.Tenant, registry.ErrNotFound)
	}
	if t.Alias == f.From && t.State != registry.StateActive {
		if _, err := m.cfg.Registry.SetPlacement(ctx, d.Tenant, t.Epoch, f.From, registry.StateActive); err != nil {
			return fmt.Errorf("resume on %s: %w", f.From, err)
		}
	}
	d.Flip = nil
	d.On = f.From
	return save(ctx, r, d)
}

// resolveFlip finishes or rolls back a flip found in progress (after a
// crash): if the registry already points the tenant at the flip's target,
// the flip happened and only the link swap remains; otherwise it is rolled
// back.
func (m *Mover) resolveFlip(ctx context.Context, r *workflow.Run, d *Data) error {
	f := d.Flip
	snap, err := m.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	t, ok := snap.Tenants[d.Tenant]
	if !ok {
		return fmt.Errorf("tenant %q: %w", d.Tenant, registry.ErrNotFound)
	}
	if t.Alias == f.To {
		_ = r.Info(ctx, "resuming a flip that had happened: swapping links", nil)
		if d.On != f.To {
			d.On = f.To
			d.Flips = append(d.Flips, FlipRecord{Kind: f.Kind, From: f.From, To: f.To, At: m.cfg.Now(),
				PauseMS: float64(time.Since(f.PausedAt).Microseconds()) / 1000, Epoch: t.Epoch})
		}
		f.Phase = flipFlipped
		if err := save(ctx, r, d); err != nil {
			return err
		}
		return m.swapLinks(ctx, r, d)
	}
	_ = r.Info(ctx, "rolling back a flip interrupted before the placement changed", map[string]string{"phase": f.Phase})
	_, sides, err := m.open(ctx, f.From)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	return m.rollbackFlip(ctx, r, d, sides[0])
}
