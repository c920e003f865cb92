package workflow

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTransition(t *testing.T) {
	noop := func(context.Context, *Run) (string, error) { return "", nil }
	def := &Def{Kind: "k", Start: "a", Rollback: "rb", MaxAttempts: 3,
		Steps:   map[string]Step{"a": noop, "b": noop, "rb": noop},
		Backoff: func(n int) time.Duration { return time.Duration(n) * time.Second }}
	plain := &Def{Kind: "p", Start: "a", Steps: map[string]Step{"a": noop}}
	boom := errors.New("boom")
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		def  *Def
		cur  cursor
		next string
		err  error
		want decision
	}{
		{"advance", def, cursor{Step: "a", State: StateForward, Attempt: 1}, "b", nil,
			decision{Step: "b", State: StateForward, Status: StatusRunning, EventKind: EventFinished, Message: "next: b"}},
		{"done", def, cursor{Step: "b", State: StateForward, Attempt: 2}, "", nil,
			decision{Step: "b", State: StateForward, Status: StatusSucceeded, EventKind: EventFinished}},
		{"wake from wait", def, cursor{Step: "a", State: StateWaiting, Attempt: 4}, "b", nil,
			decision{Step: "b", State: StateForward, Status: StatusRunning, EventKind: EventFinished, Message: "next: b"}},
		{"transient retried", def, cursor{Step: "a", State: StateForward, Attempt: 2}, "", boom,
			decision{Step: "a", State: StateForward, Status: StatusRunning, Attempt: 2, Delay: 2 * time.Second, EventKind: EventFailed, Message: "retrying: boom"}},
		{"transient exhausted rolls back", def, cursor{Step: "a", State: StateForward, Attempt: 3}, "", boom,
			decision{Step: "rb", State: StateRollback, Status: StatusRunning, Error: "boom", EventKind: EventFailed, Message: "boom"}},
		{"fail rolls back", def, cursor{Step: "b", State: StateForward, Attempt: 1}, "", Fail(boom),
			decision{Step: "rb", State: StateRollback, Status: StatusRunning, Error: "boom", EventKind: EventFailed, Message: "boom"}},
		{"rollback done", def, cursor{Step: "rb", State: StateRollback, Attempt: 1, Error: "boom"}, "", nil,
			decision{Step: "rb", State: StateRollback, Status: StatusRolledBack, Error: "boom", EventKind: EventFinished}},
		{"rollback fails", def, cursor{Step: "rb", State: StateRollback, Attempt: 1, Error: "boom"}, "", Fail(errors.New("bang")),
			decision{Step: "rb", State: StateRollback, Status: StatusFailed, Attempt: 1, Error: "boom; rollback: bang", EventKind: EventFailed, Message: "bang"}},
		{"fail without rollback", plain, cursor{Step: "a", State: StateForward, Attempt: 1}, "", Fail(boom),
			decision{Step: "a", State: StateForward, Status: StatusFailed, Attempt: 1, Error: "boom", EventKind: EventFailed, Message: "boom"}},
		{"cancel", def, cursor{Step: "a", State: StateForward, Attempt: 1}, "", Cancel(boom),
			decision{Step: "a", State: StateForward, Status: StatusCancelled, Attempt: 1, Error: "cancel: boom", EventKind: EventFailed, Message: "cancel: boom"}},
		{"wait", def, cursor{Step: "a", State: StateForward, Attempt: 1}, "", Wait(until),
			decision{Step: "a", State: StateWaiting, Status: StatusRunning, Park: true, WaitUntil: until, EventKind: EventInfo, Message: "waiting for a signal"}},
		{"wait after many wake-ups starts retries afresh, and logs no event again", def, cursor{Step: "a", State: StateWaiting, Attempt: 7}, "", Wait(until),
			decision{Step: "a", State: StateWaiting, Status: StatusRunning, Park: true, WaitUntil: until}},
		{"unknown next step fails", plain, cursor{Step: "a", State: StateForward, Attempt: 1}, "zz", nil,
			decision{Step: "a", State: StateForward, Status: StatusFailed, Attempt: 1, Error: `step a returned unknown step "zz"`, EventKind: EventFailed, Message: `step a returned unknown step "zz"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := transition(tc.def, tc.cur, tc.next, tc.err); got != tc.want {
				t.Fatalf("transition =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
