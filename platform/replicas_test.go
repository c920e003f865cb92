package platform

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/localpg"
	"tenantry/move"
)

// replica is a `tenantry control` process against the platform's registry.
type replica struct {
	cmd    *exec.Cmd
	url    string
	out    *bytes.Buffer
	exited chan struct{} // closed when the process has exited
}

// startReplica runs `tenantry control` with the platform's registry and
// secrets in its environment (never its arguments), as an operator would
// start a second replica from platform.json, plus env.
func startReplica(t *testing.T, ctx context.Context, env ...string) *replica {
	t.Helper()
	st := plat.Local.State
	addr := filepath.Join(t.TempDir(), "control.addr")
	cmd := exec.Command(tenantryBin, "control", "--listen", "127.0.0.1:0", "--addr-file", addr,
		"--backup-dir", t.TempDir(), "--lease-ttl", "30s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "TENANTRY_CONTROL_DSN="+st.ControlDSN, "TENANTRY_SECRET="+st.Secret,
		"TENANTRY_ADMIN_TOKEN="+st.AdminToken)
	cmd.Env = append(cmd.Env, env...)
	rp := &replica{cmd: cmd, out: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = rp.out, rp.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(rp.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-rp.exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-rp.exited
		}
	})
	err := poll(ctx, "control replica listening", func() (bool, error) {
		b, err := os.ReadFile(addr)
		rp.url = strings.TrimSpace(string(b))
		return err == nil && rp.url != "", err
	})
	if err != nil {
		t.Fatalf("%v\nreplica output:\n%s", err, rp.out)
	}
	return rp
}

func (rp *replica) client() *control.Client {
	return &control.Client{BaseURL: rp.url, Token: plat.Local.State.AdminToken}
}

// killLeaseHolder kills (SIGKILL) whichever replica holds the move's lease
// and returns it and when it died.
func killLeaseHolder(t *testing.T, ctx context.Context, id string, rs ...*replica) (*replica, time.Time) {
	t.Helper()
	var owner string
	if err := plat.Store.Pool().QueryRow(ctx, "SELECT coalesce(lease_owner, '') FROM workflows WHERE id = $1", id).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	for _, rp := range rs {
		// Runner owners are host-PID-random.
		if strings.Contains(owner, "-"+strconv.Itoa(rp.cmd.Process.Pid)+"-") {
			if err := rp.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			when := time.Now()
			<-rp.exited
			return rp, when
		}
	}
	t.Fatalf("no replica holds the lease of %s (owner %q)", id, owner)
	return nil, time.Time{}
}

// registerCluster starts a PostgreSQL cluster tenantry did not create and
// registers it through replica rp with the CLI, as an operator would
// (`cluster register`, its superuser's credential in the environment, then
// `alias create`); it returns the alias, named like the cluster.
func registerCluster(t *testing.T, ctx context.Context, rp *replica, name string) string {
	t.Helper()
	// The platform's parent directory is reachable by the PostgreSQL user.
	c, err := localpg.Create(ctx, localpg.Config{Dir: filepath.Join(filepath.Dir(plat.Local.Dir), name), Name: name})
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		t.Fatalf("start cluster %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Destroy(context.Background()) })
	cli := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, tenantryBin, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = append(append(os.Environ(), "TENANTRY_API="+rp.url, "TENANTRY_TOKEN="+plat.Local.State.AdminToken), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tenantry %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cred := []string{"TENANTRY_CLUSTER_USER=" + c.Credential().User, "TENANTRY_CLUSTER_PASSWORD=" + c.Password}
	cli(cred, "cluster", "register", name, "--member", fmt.Sprintf("%s-0=%s:%d", name, c.Host, c.Port))
	cli(nil, "alias", "create", name, "--cluster", name, "--database", name)
	return name
}

// TestControlReplicas runs two `tenantry control` processes against the
// platform's registry (this process's runner stays off) while load runs,
// and kills the one that holds a move's lease: once in replicate, once
// inside the promotion pause (held there by a failpoint). The other replica
// finishes the move each time: no request fails, the checker and parity
// pass, and the pause the kill left behind is resolved within seconds,
// long before the 30 s lease the replicas run with would expire.
func TestControlReplicas(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	fx := newTenant(t, ctx, "replicas", 2000)
	tenant := fx.target.Tenant
	lr := startLoad(t, ctx, 20, fx)

	// Kill in replicate.
	a, b := startReplica(t, ctx), startReplica(t, ctx)
	target := registerCluster(t, ctx, a, "registered")
	mv, err := a.client().StartMove(ctx, move.StartRequest{Tenant: tenant, To: target, Auto: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plat.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "replicate" }); err != nil {
		t.Fatal(err)
	}
	dead, killed := killLeaseHolder(t, ctx, mv.ID, a, b)
	survivor := a
	if dead == a {
		survivor = b
	}
	st := waitFlipped(t, ctx, mv.ID, 1, target, PooledAlias, killed)
	if v := st.Data.Verify; v == nil || !v.OK {
		t.Errorf("parity: %+v", v)
	}
	if _, err := survivor.client().MoveCommand(ctx, mv.ID, move.SignalCutback); err != nil {
		t.Fatalf("cutback through the surviving replica: %v", err)
	}
	waitFlipped(t, ctx, mv.ID, 2, PooledAlias, target, killed)

	// Kill inside the promotion pause. The survivor steps down; two new
	// replicas both carry a failpoint that holds the flip after the fence,
	// once: whichever runs the flip stops there and is killed, the other
	// finds the failpoint spent and resolves the flip.
	stopReplica(t, survivor)
	marker := filepath.Join(t.TempDir(), "failpoint")
	fp := []string{"TENANTRY_FAILPOINT=move:fenced", "TENANTRY_FAILPOINT_FILE=" + marker}
	c, d := startReplica(t, ctx, fp...), startReplica(t, ctx, fp...)
	promoted := make(chan error, 1)
	go func() {
		_, err := plat.Moves.Command(ctx, mv.ID, move.SignalPromote, true)
		promoted <- err
	}()
	var holder int
	err = poll(ctx, "a replica held at the failpoint", func() (bool, error) {
		b, err := os.ReadFile(marker)
		if err != nil {
			return false, err
		}
		holder, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := placement(t, ctx, tenant); p.State != "paused" {
		t.Fatalf("at the failpoint the tenant is %s, want paused", p.State)
	}
	var other *replica
	for _, rp := range []*replica{c, d} {
		if rp.cmd.Process.Pid == holder {
			if err := rp.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = time.Now()
			<-rp.exited
		} else {
			other = rp
		}
	}
	if other == nil || killed.IsZero() {
		t.Fatalf("failpoint held by pid %d, not a replica of this test", holder)
	}
	err = <-promoted // rolled back by the other replica, or finished by it
	st, gerr := plat.Moves.Get(ctx, mv.ID, false)
	if gerr != nil {
		t.Fatal(gerr)
	}
	t.Logf("promote held and killed: %v; resolved %v after the kill, move at %s with %d flips",
		err, time.Since(killed).Round(time.Millisecond), st.Step, len(st.Data.Flips))
	if len(st.Data.Flips) == 2 { // rolled back: serving from the pool, unfenced; promote again
		wantServing(t, ctx, tenant, PooledAlias, "")
		if _, err := other.client().MoveCommand(ctx, mv.ID, move.SignalPromote); err != nil {
			t.Fatalf("promote again through the surviving replica: %v", err)
		}
	}
	waitFlipped(t, ctx, mv.ID, 3, target, PooledAlias, killed)

	stats := lr.finish(t)
	if stall := time.Duration(stats.LongestStall); stall >= 3*time.Second {
		t.Errorf("longest stall a client saw: %v, want under 3 s (the replicas' lease is 30 s)", stall)
	}
	lr.check(t, ctx)
	st = finishMove(t, ctx, mv.ID, move.SignalComplete)
	if v := st.Data.Verify; v == nil || !v.OK {
		t.Errorf("parity: %+v", v)
	}
}

// stopReplica stops a replica gracefully (SIGTERM): it hands its leases back.
func stopReplica(t *testing.T, rp *replica) {
	t.Helper()
	if err := rp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rp.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("replica did not stop on SIGTERM\n%s", rp.out)
	}
}
