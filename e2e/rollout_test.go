package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"tenantry/control"
	"tenantry/platform"
	"tenantry/rollout"
	"tenantry/workflow"
)

// TestRolloutThroughCLI: an operator's rollout with the tenantry binary:
// the smoke suite through the preview (with a check of their own, and one
// that fails: exit 1), a rollout that reaches its hold, its status, a
// cutback; bad input exits 2 (usage) or 1 (refused) and changes nothing.
func TestRolloutThroughCLI(t *testing.T) {
	ctx := testContext(t)
	tg := newTenant(t, "e2e-rollout")
	deployStack(t, "e2e-rollout-green", 1)
	t.Cleanup(func() { // before the stack stops, whatever happened
		if err := setRoute(context.Background(), tg.Tenant, platform.SharedStack); err != nil {
			t.Errorf("route back: %v", err)
		}
	})
	if err := syncGateway(ctx); err != nil {
		t.Fatal(err)
	}
	checks := filepath.Join(t.TempDir(), "checks.json")
	write := func(body string) {
		if err := os.WriteFile(checks, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`[{"name": "list orders", "method": "GET", "path": "/v1/orders?limit=1"}]`)
	out, err := cli(ctx, "--output", "json", "stack", "smoke", "e2e-rollout-green", "--tenant", tg.Tenant, "--checks", checks)
	if err != nil {
		t.Fatal(err)
	}
	var res control.SmokeResult
	if err := json.Unmarshal(out, &res); err != nil || !res.Pass || len(res.Checks) != 9 {
		t.Fatalf("smoke: %v %s", err, out)
	}
	write(`[{"name": "missing product", "method": "GET", "path": "/v1/products/999999999"}]`)
	if _, err := cli(ctx, "stack", "smoke", "e2e-rollout-green", "--tenant", tg.Tenant, "--checks", checks); exitCode(err) != 1 {
		t.Errorf("a failing check: %v, want exit 1", err)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"rollout", "start", "--route", tg.Tenant, "--to", "e2e-rollout-green", "--steps", "ten"}, 2},
		{[]string{"rollout", "start", "--route", tg.Tenant, "--to", "e2e-rollout-green", "--max-error-rate", "3"}, 2},
		{[]string{"rollout", "start", "--route", tg.Tenant, "--to", "nope"}, 1},
		{[]string{"rollout", "start", "--to", "e2e-rollout-green"}, 2},
	} {
		if _, err := cli(ctx, tc.args...); exitCode(err) != tc.code {
			t.Errorf("tenantry %v: %v, want exit %d", tc.args, err, tc.code)
		}
	}
	if out, err := cli(ctx, "--output", "json", "rollout", "list", "--route", tg.Tenant); err != nil || string(out) != "{\n  \"rollouts\": []\n}\n" {
		t.Fatalf("rollouts after refused starts: %v %s", err, out)
	}

	out, err = cli(ctx, "--output", "json", "rollout", "start", "--route", tg.Tenant, "--to", "e2e-rollout-green",
		"--steps", "100", "--interval", "500ms", "--grace", "1s", "--min-requests", "10", "--hold", "1h", "--wait")
	if err != nil {
		t.Fatal(err)
	}
	var in rollout.Info
	if err := json.Unmarshal(out, &in); err != nil || in.Status != workflow.StatusRunning || in.Data.Phase != rollout.PhaseHolding {
		t.Fatalf("rollout start --wait: %v %s", err, out)
	}
	if len(in.Weights) != 1 || in.Weights[0].Stack != "e2e-rollout-green" {
		t.Errorf("weights while holding: %+v", in.Weights)
	}
	if out, err = cli(ctx, "rollout", "status", in.ID); err != nil || len(out) == 0 {
		t.Errorf("rollout status: %v %s", err, out)
	}
	out, err = cli(ctx, "--output", "json", "rollout", "cutback", in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &in); err != nil || in.Status != workflow.StatusRolledBack || len(in.Weights) != 1 || in.Weights[0].Stack != platform.SharedStack {
		t.Fatalf("cutback: %v %s", err, out)
	}
	if _, err := cli(ctx, "rollout", "promote", in.ID); exitCode(err) != 1 {
		t.Errorf("promote of an ended rollout: %v, want exit 1", err)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}
