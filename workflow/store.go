package workflow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const workflowCols = `id, kind, family, subject, state, step, status, attempt, data, error, run_after,
	created_at, updated_at, coalesce(lease_owner, ''), lease_generation, lease_expires`

func scanWorkflow(row pgx.CollectableRow) (Workflow, error) {
	var w Workflow
	err := row.Scan(&w.ID, &w.Kind, &w.Family, &w.Subject, &w.State, &w.Step, &w.Status, &w.Attempt,
		&w.Data, &w.Error, &w.RunAfter, &w.CreatedAt, &w.UpdatedAt, &w.LeaseOwner, &w.LeaseGeneration, &w.LeaseExpires)
	return w, err
}

// Create inserts a workflow of a registered kind for subject, with data
// (marshalled to JSON; nil = {}), ready to run from the Def's start step.
// If the subject has an active workflow of the same family it returns an
// *ActiveError (errors.Is ErrActive) carrying that workflow's id.
func (rn *Runner) Create(ctx context.Context, kind, subject string, data any) (string, error) {
	def, ok := rn.def(kind)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownKind, kind)
	}
	if subject == "" || len(subject) > 200 {
		return "", fmt.Errorf("%w: subject must be 1 to 200 bytes", ErrInvalid)
	}
	raw := json.RawMessage("{}")
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return "", fmt.Errorf("encode workflow data: %w", err)
		}
		raw = b
	}
	id := newID()
	for range 3 { // the active one may end between the insert and the lookup
		_, err := rn.pool.Exec(ctx, `INSERT INTO workflows (id, kind, family, subject, state, step, status, data)
			VALUES ($1, $2, $3, $4, 'forward', $5, 'running', $6)`, id, kind, def.family(), subject, def.Start, raw)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.ConstraintName != "workflows_one_active" {
			if err != nil {
				return "", fmt.Errorf("create workflow: %w", err)
			}
			rn.wake()
			return id, nil
		}
		var existing string
		err = rn.pool.QueryRow(ctx, `SELECT id FROM workflows WHERE family = $1 AND subject = $2 AND status = 'running'`,
			def.family(), subject).Scan(&existing)
		if err == nil {
			return "", &ActiveError{Family: def.family(), Subject: subject, ExistingID: existing}
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return "", fmt.Errorf("find active workflow: %w", err)
		}
	}
	return "", fmt.Errorf("create workflow: %w", ErrActive)
}

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "wf_" + hex.EncodeToString(b[:])
}

// Get returns the workflow with id, or ErrNotFound.
func (rn *Runner) Get(ctx context.Context, id string) (*Workflow, error) {
	rows, _ := rn.pool.Query(ctx, "SELECT "+workflowCols+" FROM workflows WHERE id = $1", id)
	w, err := pgx.CollectExactlyOneRow(rows, scanWorkflow)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get workflow: %w", err)
	}
	return &w, nil
}

// List returns the workflows matching f, newest first.
func (rn *Runner) List(ctx context.Context, f Filter) ([]Workflow, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	rows, _ := rn.pool.Query(ctx, "SELECT "+workflowCols+` FROM workflows
		WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR subject = $2) AND ($3 = '' OR status = $3) AND ($5 = '' OR family = $5)
		ORDER BY created_at DESC, id LIMIT $4`, f.Kind, f.Subject, string(f.Status), limit, f.Family)
	ws, err := pgx.CollectRows(rows, scanWorkflow)
	if err != nil {
		return nil, fmt.Errorf("list workflows: %w", err)
	}
	return ws, nil
}

// Events returns the workflow's events with id > afterID, oldest first
// (at most 1000; page with the last id).
func (rn *Runner) Events(ctx context.Context, id string, afterID int64) ([]Event, error) {
	rows, _ := rn.pool.Query(ctx, `SELECT id, workflow, at, step, kind, message, data FROM workflow_events
		WHERE workflow = $1 AND id > $2 ORDER BY id LIMIT 1000`, id, afterID)
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		err := r.Scan(&e.ID, &e.Workflow, &e.At, &e.Step, &e.Kind, &e.Message, &e.Data)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list workflow events: %w", err)
	}
	return evs, nil
}

// Signal sends a named command with payload (JSON; may be nil) to a running
// workflow and wakes it if it waits. The step finds it in Run.Signals.
// ErrNotFound or ErrNotRunning if the workflow cannot take it.
func (rn *Runner) Signal(ctx context.Context, id, name string, payload any) error {
	if !kindRe.MatchString(name) {
		return fmt.Errorf("%w: signal name %q must match %s", ErrInvalid, name, kindRe)
	}
	var raw []byte
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("encode signal payload: %w", err)
		}
		raw = b
	}
	err := pgx.BeginFunc(ctx, rn.pool, func(tx pgx.Tx) error {
		var status Status
		err := tx.QueryRow(ctx, "SELECT status FROM workflows WHERE id = $1 FOR UPDATE", id).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if status != StatusRunning {
			return fmt.Errorf("%w: %s is %s", ErrNotRunning, id, status)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO workflow_signals (workflow, name, payload) VALUES ($1, $2, $3)", id, name, raw); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE workflows SET run_after = least(run_after, now()) WHERE id = $1", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("signal workflow: %w", err)
	}
	rn.wake()
	return nil
}

func (rn *Runner) pendingSignals(ctx context.Context, id string) ([]Signal, error) {
	rows, _ := rn.pool.Query(ctx, `SELECT id, name, payload, created_at FROM workflow_signals
		WHERE workflow = $1 AND consumed_at IS NULL ORDER BY id`, id)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Signal, error) {
		var s Signal
		err := r.Scan(&s.ID, &s.Name, &s.Payload, &s.At)
		return s, err
	})
}
