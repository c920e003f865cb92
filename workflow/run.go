package workflow

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Run is what a step receives: one workflow being run by one runner under
// one lease generation. It is used by one step at a time.
type Run struct {
	ID      string
	Kind    string
	Subject string
	Step    string
	// Attempt counts runs of this step, this one included.
	Attempt int
	// Data is the workflow's JSON data; Decode/Encode read and replace it,
	// Save persists it. The runner also persists it when the step returns.
	Data json.RawMessage
	// Signals are the signals sent to the workflow and not yet consumed.
	// Consume marks one as handled; it is recorded with the step's outcome.
	Signals []Signal

	r          *Runner
	generation int64
	consumed   []int64

	mu           sync.Mutex
	lastProgress time.Time
}

// Generation is the lease generation this run holds.
func (r *Run) Generation() int64 { return r.generation }

// Decode unmarshals the workflow's data into v.
func (r *Run) Decode(v any) error {
	if len(r.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("decode workflow data: %w", err)
	}
	return nil
}

// Encode replaces the workflow's data with v (not yet persisted).
func (r *Run) Encode(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode workflow data: %w", err)
	}
	r.Data = b
	return nil
}

// Save persists Data now, fenced by the lease: ErrLeaseLost if another
// runner took the workflow over.
func (r *Run) Save(ctx context.Context) error {
	return r.r.exec1(ctx, `UPDATE workflows SET data = $3, updated_at = now()
		WHERE id = $1 AND lease_generation = $2`, r.ID, r.generation, dataOrEmpty(r.Data))
}

// Consume marks signal s as handled; it is recorded when the step returns
// without error, so a step re-run after a crash sees it again.
func (r *Run) Consume(s Signal) { r.consumed = append(r.consumed, s.ID) }

// Info appends an info event to the workflow's log.
func (r *Run) Info(ctx context.Context, msg string, data any) error {
	return r.r.event(ctx, r, EventInfo, msg, data)
}

// Progress appends a progress event with data, at most one per the
// runner's ProgressInterval; calls in between are dropped (nil error).
func (r *Run) Progress(ctx context.Context, data any) error {
	r.mu.Lock()
	now := time.Now()
	if !r.lastProgress.IsZero() && now.Sub(r.lastProgress) < r.r.cfg.ProgressInterval {
		r.mu.Unlock()
		return nil
	}
	r.lastProgress = now
	r.mu.Unlock()
	return r.r.event(ctx, r, EventProgress, "", data)
}

func dataOrEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return b
}
