package workflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// run drives workflow id under lease generation gen: it runs steps until the
// workflow ends, parks, backs off, or the lease is lost.
func (rn *Runner) run(ctx context.Context, id string, gen int64) error {
	for {
		more, err := rn.runStep(ctx, id, gen)
		if ctx.Err() != nil {
			// Stopped or crashed mid-step: record nothing. A graceful Stop
			// hands the lease back; otherwise it expires.
			if rn.stopping.Load() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_ = rn.release(rctx, id, gen)
				cancel()
			}
			return ctx.Err()
		}
		if errors.Is(err, ErrLeaseLost) {
			rn.log.Info("workflow lease lost", "workflow", id, "generation", gen)
			return err
		}
		if err != nil || !more {
			if rerr := rn.release(ctx, id, gen); rerr != nil && err == nil {
				err = fmt.Errorf("release workflow lease: %w", rerr)
			}
			return err
		}
	}
}

// runStep runs the workflow's current step once and persists the outcome.
// It reports whether the workflow should run on at once.
func (rn *Runner) runStep(ctx context.Context, id string, gen int64) (bool, error) {
	w, due, err := rn.load(ctx, id, gen)
	if err != nil || w.Status != StatusRunning || !due {
		return false, err
	}
	def, ok := rn.def(w.Kind)
	if !ok {
		return false, fmt.Errorf("%w: %q", ErrUnknownKind, w.Kind)
	}
	r := &Run{ID: w.ID, Kind: w.Kind, Subject: w.Subject, Step: w.Step, Attempt: w.Attempt + 1, Data: w.Data,
		r: rn, generation: gen}
	// Persist the start before the step acts (and renew the lease).
	sent := time.Now()
	if err := rn.started(ctx, r); err != nil {
		return false, err
	}
	if r.Signals, err = rn.pendingSignals(ctx, id); err != nil {
		return false, fmt.Errorf("read workflow signals: %w", err)
	}

	stepCtx, cancelStep := context.WithCancelCause(ctx)
	renewed := make(chan struct{})
	go rn.renew(stepCtx, r, sent.Add(rn.cfg.LeaseTTL), cancelStep, renewed)
	next, stepErr := callStep(stepCtx, def.Steps[w.Step], r)
	cancelStep(nil)
	<-renewed
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if errors.Is(context.Cause(stepCtx), ErrLeaseLost) || errors.Is(stepErr, ErrLeaseLost) {
		return false, ErrLeaseLost
	}
	d := transition(def, cursor{Step: w.Step, State: w.State, Attempt: r.Attempt, Error: w.Error}, next, stepErr)
	if err := rn.finished(ctx, r, d, stepErr == nil); err != nil {
		return false, err
	}
	rn.log.Debug("workflow step", "workflow", id, "step", w.Step, "outcome", d.EventKind, "next", d.Step, "status", d.Status)
	return !d.ended() && !d.Park && d.Delay == 0, nil
}

func callStep(ctx context.Context, step Step, r *Run) (next string, err error) {
	defer func() {
		if p := recover(); p != nil {
			next, err = "", Fail(fmt.Errorf("step %s panicked: %v", r.Step, p))
		}
	}()
	return step(ctx, r)
}

// load reads the workflow as the holder of generation gen; due reports
// whether its run_after has passed.
func (rn *Runner) load(ctx context.Context, id string, gen int64) (w Workflow, due bool, err error) {
	rows, _ := rn.pool.Query(ctx, "SELECT "+workflowCols+", run_after <= now() FROM workflows WHERE id = $1 AND lease_generation = $2", id, gen)
	w, err = pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (Workflow, error) {
		err := row.Scan(&w.ID, &w.Kind, &w.Family, &w.Subject, &w.State, &w.Step, &w.Status, &w.Attempt,
			&w.Data, &w.Error, &w.RunAfter, &w.CreatedAt, &w.UpdatedAt, &w.LeaseOwner, &w.LeaseGeneration, &w.LeaseExpires, &due)
		return w, err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return w, false, ErrLeaseLost
	}
	if err != nil {
		return w, false, fmt.Errorf("load workflow: %w", err)
	}
	return w, due, nil
}

// started records that r's step is about to act.
func (rn *Runner) started(ctx context.Context, r *Run) error {
	return pgx.BeginFunc(ctx, rn.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE workflows SET attempt = $3, updated_at = now(), lease_expires = now() + $4::interval
			WHERE id = $1 AND lease_generation = $2`, r.ID, r.generation, r.Attempt, rn.cfg.LeaseTTL)
		if err != nil {
			return fmt.Errorf("record step start: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrLeaseLost
		}
		_, err = tx.Exec(ctx, `INSERT INTO workflow_events (workflow, step, kind, message) VALUES ($1, $2, 'started', $3)`,
			r.ID, r.Step, fmt.Sprintf("attempt %d", r.Attempt))
		return err
	})
}

// finished persists decision d for r's step, fenced by the lease, with the
// step's data and (if it succeeded) the signals it consumed.
func (rn *Runner) finished(ctx context.Context, r *Run, d decision, ok bool) error {
	var maxSeen int64
	for _, s := range r.Signals {
		maxSeen = max(maxSeen, s.ID)
	}
	var waitUntil any = "9999-12-31 00:00:00Z" // no deadline; not 'infinity', which time.Time cannot hold
	if !d.WaitUntil.IsZero() {
		waitUntil = d.WaitUntil
	}
	return pgx.BeginFunc(ctx, rn.pool, func(tx pgx.Tx) error {
		// Lock the row first: a concurrent Signal commits before the next
		// statement takes its snapshot, so parking cannot miss its wake-up.
		tag, err := tx.Exec(ctx, "SELECT 1 FROM workflows WHERE id = $1 AND lease_generation = $2 FOR UPDATE", r.ID, r.generation)
		if err != nil {
			return fmt.Errorf("record step outcome: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrLeaseLost
		}
		_, err = tx.Exec(ctx, `UPDATE workflows SET step = $2, state = $3, status = $4, attempt = $5, error = $6, data = $7,
			run_after = CASE
				WHEN NOT $9 THEN now() + $8::interval
				WHEN EXISTS (SELECT 1 FROM workflow_signals s WHERE s.workflow = $1 AND s.consumed_at IS NULL AND s.id > $10) THEN now()
				ELSE $11::timestamptz END,
			updated_at = now()
			WHERE id = $1`,
			r.ID, d.Step, d.State, d.Status, d.Attempt, d.Error, dataOrEmpty(r.Data), d.Delay, d.Park, maxSeen, waitUntil)
		if err != nil {
			return fmt.Errorf("record step outcome: %w", err)
		}
		if d.EventKind != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO workflow_events (workflow, step, kind, message) VALUES ($1, $2, $3, $4)`,
				r.ID, r.Step, d.EventKind, d.Message); err != nil {
				return fmt.Errorf("record step event: %w", err)
			}
		}
		if ok && len(r.consumed) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE workflow_signals SET consumed_at = now() WHERE workflow = $1 AND id = ANY($2)`,
				r.ID, r.consumed); err != nil {
				return fmt.Errorf("consume signals: %w", err)
			}
		}
		return nil
	})
}

// renew extends r's lease every LeaseTTL/3 until ctx ends. When the lease
// is taken over, cannot be renewed before it would expire, or the runner's
// liveness session is lost, it cancels the step with ErrLeaseLost.
func (rn *Runner) renew(ctx context.Context, r *Run, deadline time.Time, cancel context.CancelCauseFunc, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(rn.cfg.LeaseTTL / 3)
	defer t.Stop()
	lost := rn.livenessLost()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lost:
			// Others may already take this lease over: stop acting.
			cancel(ErrLeaseLost)
			return
		case <-t.C:
		}
		sent := time.Now()
		err := rn.exec1(ctx, `UPDATE workflows SET lease_expires = now() + $3::interval
			WHERE id = $1 AND lease_generation = $2`, r.ID, r.generation, rn.cfg.LeaseTTL)
		switch {
		case err == nil:
			deadline = sent.Add(rn.cfg.LeaseTTL)
		case errors.Is(err, ErrLeaseLost) || time.Now().After(deadline):
			cancel(ErrLeaseLost)
			return
		}
	}
}
