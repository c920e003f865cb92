package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/localpg"
	"tenantry/localproc"
	"tenantry/platform"
	"tenantry/registry"
)

// upProc is a `tenantry up` process.
type upProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *strings.Builder
}

// startUp runs `tenantry up` on dir (with env added to this process's)
// and waits until it says it is up; it is killed when the test ends.
func startUp(t *testing.T, ctx context.Context, dir string, env ...string) *upProc {
	t.Helper()
	cmd := exec.Command(tenantryBin, "up", "--data-dir", dir, "--log-level", "warn")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	u := &upProc{cmd: cmd, exited: make(chan struct{}), log: &strings.Builder{}}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // after a clean stop, a no-op
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			if !once {
				u.log.WriteString(sc.Text() + "\n")
			}
			// The banner ends with how to stop it.
			if !once && strings.HasPrefix(sc.Text(), "Ctrl-C stops") {
				once = true
				close(ready)
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(u.exited) }()
	select {
	case <-ready:
	case <-u.exited:
		t.Fatalf("tenantry up exited before it was up")
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		t.Fatalf("tenantry up: %v", ctx.Err())
	}
	return u
}

// wantDashboard checks that up's banner names the dashboard at the API's
// address and that its login form answers there.
func wantDashboard(t *testing.T, ctx context.Context, banner, apiURL string) {
	t.Helper()
	dash := apiURL + "/ui/"
	if !strings.Contains(banner, "  dashboard         "+dash+" ") {
		t.Fatalf("the banner does not name the dashboard at %s:\n%s", dash, banner)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, dash+"login", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="token"`) {
		t.Fatalf("GET %slogin = %d:\n%s", dash, resp.StatusCode, body)
	}
}

// alive says whether pid is a running process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// TestUp_Kill9 kills `tenantry up` with SIGKILL under load: the gateway and
// the OMS instances are processes of their own and keep serving (no request
// fails, none is refused a connection); a second `up` on the directory is
// refused while one runs; the restarted `up` adopts the same gateway and
// instance processes, and a clean stop ends them all.
func TestUp_Kill9(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := filepath.Join(tmpDir, "up-kill9")
	t.Cleanup(func() { stopLeftClusters(dir) })
	first := startUp(t, ctx, dir)
	st, err := platform.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}

	wantDashboard(t, ctx, first.log.String(), st.APIURL)

	// One owner per data directory.
	second := exec.CommandContext(ctx, tenantryBin, "up", "--data-dir", dir)
	msg, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(msg), fmt.Sprint(first.cmd.Process.Pid)) {
		t.Fatalf("second up on the same directory: %v\n%s", err, msg)
	}

	pids := func() []int {
		t.Helper()
		store, err := registry.OpenStore(ctx, st.ControlDSN, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		snap, err := store.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, in := range snap.Stacks[platform.SharedStack].Instances {
			out = append(out, in.PID)
		}
		return out
	}
	gatewayPID := func() int {
		t.Helper()
		rec, err := localproc.LoadRecord(filepath.Join(dir, "gateway", "gateway.record"))
		if err != nil {
			t.Fatal(err)
		}
		return rec.PID
	}
	before, gwBefore := pids(), gatewayPID()

	ld := startSampleLoad(t, ctx, st, 40, 3*time.Minute)
	ld.acks(t, 40)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	ld.acks(t, 120) // served while no `up` runs
	restarted := startUp(t, ctx, dir)
	// The restarted platform answers where the first one did, and tells
	// the user commands they can type as printed.
	st2, err := platform.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st2.APIURL != st.APIURL || st2.GatewayURL != st.GatewayURL {
		t.Errorf("addresses moved across the restart: api %s -> %s, gateway %s -> %s", st.APIURL, st2.APIURL, st.GatewayURL, st2.GatewayURL)
	}
	if !strings.Contains(restarted.log.String(), "  "+tenantryBin+" status\n") {
		t.Errorf("up does not print the command as it must be typed (%s status):\n%s", tenantryBin, restarted.log.String())
	}
	ld.acks(t, 200)
	s := ld.end(t)
	t.Logf("load: %d requests, %d acknowledged, %d failed %v, longest stall %v",
		s.Requests, s.Acknowledged, s.Failures, s.FailuresByCode, time.Duration(s.LongestStall))
	if s.Failures != 0 {
		t.Errorf("%d requests failed across the kill and restart of up: %v", s.Failures, s.FailuresByCode)
	}
	after, gwAfter := pids(), gatewayPID()
	if fmt.Sprint(after) != fmt.Sprint(before) || gwAfter != gwBefore {
		t.Errorf("restarted up did not adopt: instances %v -> %v, gateway %d -> %d", before, after, gwBefore, gwAfter)
	}

	// A clean stop ends every process the platform started.
	stopUp(t, ctx, restarted)
	for _, pid := range append(after, gwAfter) {
		if alive(pid) {
			t.Errorf("process %d outlived the platform that stopped", pid)
		}
	}
}

// stopLeftClusters stops the clusters a test's `up` left running.
func stopLeftClusters(dir string) {
	st, err := platform.ReadState(dir)
	if err != nil {
		return
	}
	dirs := []string{st.ControlDir}
	for _, ms := range st.Clusters {
		dirs = append(dirs, ms...)
	}
	for _, d := range dirs {
		if c, err := localpg.Open(d); err == nil && c.Running() {
			_ = c.Stop(context.Background())
		}
	}
}

// stopUp stops up cleanly (SIGTERM) and waits for it to exit.
func stopUp(t *testing.T, ctx context.Context, up *upProc) {
	t.Helper()
	if err := up.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up.exited:
	case <-ctx.Done():
		t.Fatal("up did not stop on SIGTERM")
	}
}

// failpoint returns a fresh file and the environment that makes `tenantry
// up` stop at the move hook's point at (TENANTRY_FAILPOINT, see
// control.MoveFailpoint), where it creates the file.
func failpoint(t *testing.T, at string) (string, []string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "failpoint")
	return file, []string{"TENANTRY_FAILPOINT=move:" + at, "TENANTRY_FAILPOINT_FILE=" + file}
}

// upAt runs `tenantry up` (with env) on a new data directory name under
// the tests' directory, whose clusters are stopped when the test ends, and
// returns it with the directory, the platform's state and a control-plane
// client.
func upAt(t *testing.T, ctx context.Context, name string, env ...string) (*upProc, string, *platform.State, *control.Client) {
	t.Helper()
	dir := filepath.Join(tmpDir, name)
	t.Cleanup(func() { stopLeftClusters(dir) })
	up := startUp(t, ctx, dir, env...)
	st, err := platform.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	return up, dir, st, &control.Client{BaseURL: st.APIURL, Token: st.AdminToken}
}
