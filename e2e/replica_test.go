package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSecondControlReplica starts a second control-plane replica next to
// the local platform's, as the README tells an operator to (the registry DSN
// and secrets from platform.json, in the environment), and drives it with
// the CLI through $TENANTRY_API and $TENANTRY_TOKEN: `status` answers, and
// `tenant create` through it lands in the registry the platform serves from.
func TestSecondControlReplica(t *testing.T) {
	ctx := testContext(t)
	st := plat.Local.State
	addr := filepath.Join(t.TempDir(), "control.addr")
	ctl := exec.Command(tenantryBin, "control", "--listen", "127.0.0.1:0", "--addr-file", addr,
		"--backup-dir", t.TempDir())
	ctl.Env = append(os.Environ(), "TENANTRY_CONTROL_DSN="+st.ControlDSN, "TENANTRY_SECRET="+st.Secret,
		"TENANTRY_ADMIN_TOKEN="+st.AdminToken)
	var out bytes.Buffer
	ctl.Stdout, ctl.Stderr = &out, &out
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctl.Process.Signal(syscall.SIGTERM); _ = ctl.Wait() })
	var api string
	if err := poll(ctx, "second replica listening", func() (bool, error) {
		b, err := os.ReadFile(addr)
		api = strings.TrimSpace(string(b))
		return err == nil && api != "", err
	}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if api == plat.APIURL {
		t.Fatalf("the second replica answers on the platform's own address %s", api)
	}

	cli := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, tenantryBin, args...)
		cmd.Dir = t.TempDir() // no platform.json to fall back on
		cmd.Env = append(os.Environ(), "TENANTRY_API="+api, "TENANTRY_TOKEN="+st.AdminToken)
		b, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("tenantry %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return b
	}
	var status struct {
		Version  int64 `json:"registry_version"`
		Clusters int   `json:"clusters"`
	}
	if err := json.Unmarshal(cli("status", "--output", "json"), &status); err != nil {
		t.Fatalf("status --output json: %v", err)
	}
	if status.Clusters == 0 || status.Version == 0 {
		t.Fatalf("status through the second replica: %+v", status)
	}
	cli("tenant", "create", "e2e-replica", "--alias", "pool-1", "--output", "json")
	snap, err := plat.Store.Snapshot(context.WithoutCancel(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if tn, ok := snap.Tenants["e2e-replica"]; !ok || tn.Alias != "pool-1" {
		t.Fatalf("tenant created through the second replica: %+v", tn)
	}
}
