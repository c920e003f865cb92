package workflow

import (
	"errors"
	"fmt"
	"time"
)

// cursor is the part of a workflow's record the transition reads.
type cursor struct {
	Step    string
	State   State
	Attempt int // runs of Step so far, counting the one that just returned
	Error   string
}

// decision is what the runner persists after a step returns.
type decision struct {
	Step   string
	State  State
	Status Status
	// Attempt is the new attempt count (0 when the step changes).
	Attempt int
	Error   string
	// Delay before the workflow may run again (retry backoff); Park means
	// it waits for a signal until WaitUntil (zero: no deadline).
	Delay     time.Duration
	Park      bool
	WaitUntil time.Time
	// EventKind and Message describe the outcome in the event log.
	EventKind string
	Message   string
}

// ended reports whether the decision ends the workflow.
func (d decision) ended() bool { return d.Status != StatusRunning }

// transition is the workflow state machine: given where a workflow is and
// what its step returned, it decides the next record. It does no I/O.
func transition(def *Def, cur cursor, next string, err error) decision {
	if err == nil && next != "" && def.Steps[next] == nil {
		err = Fail(fmt.Errorf("step %s returned unknown step %q", cur.Step, next))
	}
	if err == nil {
		return advance(cur, next)
	}
	var se *stepError
	act := actionRetry
	if errors.As(err, &se) {
		act = se.action
	}
	if act == actionRetry && cur.Attempt >= def.maxAttempts() {
		act = actionFail
	}
	switch act {
	case actionWait:
		// Waiting is a run that went well: the retries of the step's next
		// run count from zero. Counting every wake-up as an attempt failed
		// a step that parks once per interval (a rollout's analysis, a
		// move's hypercare) on its first transient error after MaxAttempts
		// wake-ups.
		d := same(cur, StateWaiting)
		d.Attempt = 0
		d.Park, d.WaitUntil = true, se.until
		// Parking again in the step it woke in records no event: a step
		// that parks once per interval (a move's link check, a rollout's
		// analysis) would otherwise log one every interval for days.
		if cur.State != StateWaiting {
			d.EventKind, d.Message = EventInfo, "waiting for a signal"
		}
		if cur.State == StateRollback {
			d.State = StateRollback
		}
		return d
	case actionRetry:
		d := same(cur, cur.State)
		d.Delay = def.backoff(cur.Attempt)
		d.EventKind, d.Message = EventFailed, "retrying: "+err.Error()
		return d
	case actionCancel:
		return decision{Step: cur.Step, State: cur.State, Status: StatusCancelled, Attempt: cur.Attempt,
			Error: err.Error(), EventKind: EventFailed, Message: err.Error()}
	}
	// actionFail
	if cur.State != StateRollback && def.Rollback != "" {
		return decision{Step: def.Rollback, State: StateRollback, Status: StatusRunning,
			Error: err.Error(), EventKind: EventFailed, Message: err.Error()}
	}
	msg := err.Error()
	if cur.State == StateRollback && cur.Error != "" {
		msg = cur.Error + "; rollback: " + msg
	}
	return decision{Step: cur.Step, State: cur.State, Status: StatusFailed, Attempt: cur.Attempt,
		Error: msg, EventKind: EventFailed, Message: err.Error()}
}

// advance moves to the next step, or ends the workflow when next is "".
func advance(cur cursor, next string) decision {
	state := StateForward
	if cur.State == StateRollback {
		state = StateRollback
	}
	d := decision{Step: next, State: state, Status: StatusRunning, Error: cur.Error, EventKind: EventFinished}
	switch {
	case next == "" && state == StateRollback:
		d.Step, d.Status = cur.Step, StatusRolledBack
	case next == "":
		d.Step, d.Status = cur.Step, StatusSucceeded
	}
	if d.Status == StatusRunning {
		d.Message = "next: " + next
	}
	return d
}

// same stays in the current step.
func same(cur cursor, state State) decision {
	return decision{Step: cur.Step, State: state, Status: StatusRunning, Attempt: cur.Attempt, Error: cur.Error}
}
