package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/workflow"
)

// TestPrintRollout: status shows the live weights, every interval's verdict
// with its figures (probes named), the reason of a rollback, the smoke
// checks and the timeline.
func TestPrintRollout(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	in := &rollout.Info{ID: "wf_1", Status: workflow.StatusRolledBack, Step: "rollback",
		Weights: []registry.Backend{{Stack: "blue", Weight: 100}},
		Data: rollout.Data{Route: "acme", From: "blue", To: "green", Phase: rollout.PhaseRolledBack,
			Params: rollout.Params{Steps: []int{50, 100}}, Reason: "analysis failed the new stack: 3 consecutive failing intervals",
			Smoke: []rollout.CheckResult{{Name: "create product", Pass: true}, {Name: "list orders", Error: "status 500, want 200"}},
			Intervals: []rollout.Verdict{
				{At: at, Weight: 50, Pass: true, Detail: "48 requests, 5xx rate 0.0000"},
				{At: at, Weight: 50, Reasons: []string{rollout.ReasonErrorRate}, Probes: 4, Detail: "50 requests, 5xx rate 0.2600"},
			},
			Timeline: []rollout.Entry{{At: at, Event: "shift", Detail: "green 50%, blue 50%"}}}}
	var b bytes.Buffer
	printRollout(&b, in)
	out := b.String()
	for _, want := range []string{
		"route acme from blue to green", "status rolled_back", "weights now: blue=100",
		"reason: analysis failed the new stack", "smoke create product", "FAIL status 500, want 200",
		"at  50%: pass", "FAIL error_rate", "5xx rate 0.2600 (4 probes)", "shift", "green 50%, blue 50%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
