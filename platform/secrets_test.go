package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tenantry/localpg"
	"tenantry/stack"
	"tenantry/tenantsig"
)

// procText is a process's environment and arguments, NUL-separated, as
// anyone allowed to read /proc/PID sees them.
func procText(t *testing.T, pid int) (env, args []string) {
	t.Helper()
	read := func(f string) []string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			t.Fatalf("read /proc/%d/%s: %v", pid, f, err)
		}
		return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
	}
	return read("environ"), read("cmdline")
}

// TestProcesses_NoSuperuserCredential: the gateway and the OMS instances the
// local platform starts hold no superuser password, no registry-owner
// password, no platform secret and no admin token in their environment or
// arguments; they read the registry as the reader role. A dedicated stack's
// instances hold only their tenants' passwords.
func TestProcesses_NoSuperuserCredential(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	st := plat.Local.State
	forbidden := map[string]string{"platform secret": st.Secret, "admin token": st.AdminToken,
		"registry owner password": st.RolePasswords[RegistryOwner]}
	for name, pw := range st.Passwords {
		forbidden["superuser password of cluster "+name] = pw
	}
	if len(st.Passwords) < 2 || st.RolePasswords[RegistryOwner] == "" {
		t.Fatalf("platform.json lacks the passwords this test looks for: %d cluster passwords", len(st.Passwords))
	}
	check := func(what string, pid int) (env []string) {
		t.Helper()
		env, args := procText(t, pid)
		for _, part := range [][]string{env, args} {
			for _, kv := range part {
				for name, secret := range forbidden {
					if secret != "" && strings.Contains(kv, secret) {
						t.Errorf("%s (pid %d) holds the %s: %.40s...", what, pid, name, kv)
					}
				}
			}
		}
		var dsn string
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "TENANTRY_CONTROL_DSN="); ok {
				dsn = v
			}
		}
		if !strings.Contains(dsn, "user='"+RegistryReader+"'") {
			t.Errorf("%s (pid %d) reads the registry as %q, want the reader role", what, pid, dsn[:min(len(dsn), 60)])
		}
		return env
	}
	check("gateway", plat.Gateway.PID())
	// Nor do their logs.
	logs, _ := filepath.Glob(filepath.Join(plat.Local.Dir, "stacks", "*.log"))
	gwLogs, _ := filepath.Glob(filepath.Join(plat.Local.Dir, "gateway", "*.log"))
	if len(logs) == 0 || len(gwLogs) == 0 {
		t.Fatalf("no logs found: %d stack logs, %d gateway logs", len(logs), len(gwLogs))
	}
	for _, f := range append(logs, gwLogs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for name, secret := range forbidden {
			if secret != "" && bytes.Contains(b, []byte(secret)) {
				t.Errorf("log %s holds the %s", f, name)
			}
		}
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared := snap.Stacks[SharedStack]
	if shared == nil || len(shared.Instances) == 0 {
		t.Fatal("no shared stack instances")
	}
	for _, in := range shared.Instances {
		env := check("shared OMS instance", in.PID)
		if !hasPrefix(env, "TENANTRY_TENANT_KEY=") || hasPrefix(env, "TENANTRY_TENANT_PASSWORDS=") {
			t.Errorf("shared instance %d: want the tenant-password key and no password list", in.PID)
		}
	}

	// A dedicated stack for one tenant: that tenant's password, nothing else.
	id := fmt.Sprintf("dedi-%d", time.Now().UnixNano()%1e6)
	if _, err := plat.Service.CreateTenant(ctx, id, PooledAlias); err != nil {
		t.Fatal(err)
	}
	name := "stack-" + id
	rec, err := plat.Stacks.Deploy(ctx, stack.Spec{Name: name, Version: "v1", Instances: 1, Tenants: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plat.Stacks.Stop(context.Background(), name) })
	env := check("dedicated OMS instance", rec.Instances[0].PID)
	if hasPrefix(env, "TENANTRY_TENANT_KEY=") {
		t.Error("a dedicated instance holds the tenant-password key (it opens every tenant's role)")
	}
	// It serves its tenant, and cannot open another tenant's role, which the
	// shared stack serves at the same time.
	other := fmt.Sprintf("other-%d", time.Now().UnixNano()%1e6)
	if _, err := plat.Service.CreateTenant(ctx, other, PooledAlias); err != nil {
		t.Fatal(err)
	}
	get := func(url, stack, tenant string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/orders?limit=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		tenantsig.SignRequest(req, tenantsig.StackKey(headerRoot(st), stack), tenant, stack, time.Now())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if err := poll(ctx, "the dedicated instance serving its tenant", func() (bool, error) {
		code, body := get(rec.Instances[0].URL, name, id)
		return code == http.StatusOK, fmt.Errorf("%d %s", code, body)
	}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, "the shared stack serving the other tenant", func() (bool, error) {
		code, body := get(shared.Instances[0].URL, SharedStack, other)
		return code == http.StatusOK, fmt.Errorf("%d %s", code, body)
	}); err != nil {
		t.Fatal(err)
	}
	code, body := get(rec.Instances[0].URL, name, other)
	if code == http.StatusOK || code == 0 {
		t.Fatalf("the dedicated instance served another tenant: %d %s", code, body)
	}
	t.Logf("the dedicated instance, asked for tenant %s: %d %s", other, code, strings.TrimSpace(body))
	logFile := filepath.Join(plat.Local.Dir, "stacks", name+"-0.log")
	if err := poll(ctx, "the refusal in the instance's log", func() (bool, error) {
		b, err := os.ReadFile(logFile)
		return bytes.Contains(b, []byte("t_"+other)) && bytes.Contains(b, []byte("password")), err
	}); err != nil {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("%v\n%s", err, b)
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "TENANTRY_TENANT_PASSWORDS="); ok {
			var pws map[string]string
			if err := json.Unmarshal([]byte(v), &pws); err != nil || len(pws) != 1 || pws[id] == "" {
				t.Errorf("dedicated instance passwords for %d tenants (%v), want only %s", len(pws), err, id)
			}
		}
	}
}

func hasPrefix(env []string, p string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, p) {
			return true
		}
	}
	return false
}

// TestClusters_RefuseWithoutPassword: every cluster the platform made
// refuses the superuser over TCP without its password — as another OS user
// of this machine (nobody, when the tests run as root), with psql.
func TestClusters_RefuseWithoutPassword(t *testing.T) {
	ctx := testContext(t, time.Minute)
	psql := filepath.Join(plat.Local.Control.BinDir, "psql")
	members := []*localpg.Cluster{plat.Local.Control}
	for _, name := range []string{PooledCluster} {
		members = append(members, plat.Local.Cluster(name)...)
	}
	for _, m := range members {
		args := []string{psql, "-w", "-h", m.Host, "-p", strconv.Itoa(m.Port), "-U", localpg.Superuser, "-d", "postgres", "-c", "select 1"}
		if os.Geteuid() == 0 {
			args = append([]string{"runuser", "-u", "nobody", "--"}, args...)
		}
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "password") {
			t.Errorf("psql to %s (%s:%d) without a password: %v: %s; want a password failure", m.Name, m.Host, m.Port, err, out)
		}
	}
	if len(members) < 3 {
		t.Fatalf("checked %d clusters, want the control cluster and the pooled primary and standby", len(members))
	}
}
