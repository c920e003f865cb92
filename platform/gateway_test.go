package platform

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	unlock, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, LockFile)); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this pid", b)
	}

	t.Run("second holder is refused and told who holds it", func(t *testing.T) {
		_, err := LockDir(dir)
		var le *LockedError
		if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.PID != os.Getpid() ||
			!strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
			t.Fatalf("LockDir = %v, want a LockedError naming pid %d", err, os.Getpid())
		}
	})
	unlock()

	t.Run("free again after unlock", func(t *testing.T) {
		unlock, err := LockDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		unlock()
	})
	t.Run("a holder killed with SIGKILL leaves no stale lock", func(t *testing.T) {
		holder := exec.Command("flock", "--exclusive", filepath.Join(dir, LockFile), "sleep", "600")
		holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(-holder.Process.Pid, syscall.SIGKILL)
		ctx := testContext(t, 30*time.Second)
		err := poll(ctx, "the other process holds the lock", func() (bool, error) {
			unlock, err := LockDir(dir)
			if err == nil {
				unlock() // flock(1) has not got it yet
			}
			return errors.Is(err, ErrLocked), err
		})
		if err != nil {
			t.Fatal(err)
		}
		// flock(1)'s child, sleep, holds the lock too: kill the group.
		if err := syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = holder.Wait()
		err = poll(ctx, "the lock is free", func() (bool, error) {
			unlock, err := LockDir(dir)
			if err == nil {
				unlock()
			}
			return err == nil, err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestStartGateway runs the real gateway binary against the test platform's
// registry: started, adopted by a second StartGateway (same process, same
// URL), stopped, started again on the same port, and replaced when its
// configuration changes or it died. Each StartGateway stands for a new
// owner; as they all live in this process, each gets its own exit channel
// (an earlier owner's handle still hears of exits a later one caused).
func TestStartGateway(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	st := plat.Local.State
	var exits chan error
	opts := GatewayOptions{
		Dir:    t.TempDir(),
		Binary: tenantryBin,
		Env:    []string{"TENANTRY_CONTROL_DSN=" + st.ControlDSN, "TENANTRY_SECRET=" + st.Secret},
	}
	// owner gives opts a fresh exit channel, as a new owner would have.
	owner := func(opts GatewayOptions) GatewayOptions {
		ch := make(chan error, 1)
		exits = ch
		opts.Exited = func(err error) { ch <- err }
		return opts
	}
	g, err := StartGateway(ctx, owner(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background()) })
	if g.Adopted() || healthStatus(g.URL()) != http.StatusOK {
		t.Fatalf("new gateway: adopted=%v, health %d", g.Adopted(), healthStatus(g.URL()))
	}
	if code := getStatus(g.AdminURL() + "/metrics"); code != http.StatusOK {
		t.Fatalf("admin listener %s/metrics: %d", g.AdminURL(), code)
	}
	if fi, err := os.Stat(filepath.Join(opts.Dir, "gateway.log")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("gateway log: %v %v, want mode 0600", err, fi)
	}
	if b, _ := os.ReadFile("/proc/" + strconv.Itoa(g.PID()) + "/cmdline"); strings.Contains(string(b), st.Secret) {
		t.Fatal("the secret is on the gateway's command line")
	}
	first := g

	t.Run("a restarted owner adopts it", func(t *testing.T) {
		g, err = StartGateway(ctx, owner(opts))
		if err != nil {
			t.Fatal(err)
		}
		if !g.Adopted() || g.PID() != first.PID() || g.URL() != first.URL() {
			t.Fatalf("got pid %d at %s (adopted %v), want pid %d at %s adopted", g.PID(), g.URL(), g.Adopted(), first.PID(), first.URL())
		}
	})
	t.Run("stopped, then started again on the same port", func(t *testing.T) {
		if err := g.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if healthStatus(first.URL()) != 0 {
			t.Fatal("gateway answers after Stop")
		}
		if g, err = StartGateway(ctx, owner(opts)); err != nil {
			t.Fatal(err)
		}
		if g.Adopted() || g.PID() == first.PID() || g.URL() != first.URL() || g.AdminURL() != first.AdminURL() {
			t.Fatalf("got pid %d at %s, admin %s (adopted %v), want a new process at %s, admin %s",
				g.PID(), g.URL(), g.AdminURL(), g.Adopted(), first.URL(), first.AdminURL())
		}
	})
	t.Run("an unasked exit is reported and the next start replaces it", func(t *testing.T) {
		dead := g.PID()
		if err := syscall.Kill(dead, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exits:
		case <-ctx.Done():
			t.Fatal("gateway exit not reported")
		}
		if g, err = StartGateway(ctx, owner(opts)); err != nil {
			t.Fatal(err)
		}
		if g.Adopted() || g.PID() == dead || g.URL() != first.URL() {
			t.Fatalf("got pid %d at %s (adopted %v), want a new process at %s", g.PID(), g.URL(), g.Adopted(), first.URL())
		}
	})
	t.Run("a changed configuration replaces it", func(t *testing.T) {
		old := g.PID()
		changed := opts
		changed.Env = append(append([]string(nil), opts.Env...), "TENANTRY_TEST_SETTING=1")
		if g, err = StartGateway(ctx, owner(changed)); err != nil {
			t.Fatal(err)
		}
		if g.Adopted() || g.PID() == old || healthStatus(g.URL()) != http.StatusOK {
			t.Fatalf("got pid %d (adopted %v), want a new process", g.PID(), g.Adopted())
		}
		select {
		case err := <-exits:
			t.Fatalf("the replaced gateway's stop was reported as an exit: %v", err)
		default:
		}
	})
	t.Run("its old port taken, another one", func(t *testing.T) {
		if err := g.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		taken, err := net.Listen("tcp", strings.TrimPrefix(first.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		if g, err = StartGateway(ctx, owner(opts)); err != nil {
			t.Fatal(err)
		}
		if g.URL() == first.URL() || healthStatus(g.URL()) != http.StatusOK {
			t.Fatalf("got %s (health %d), want another port than %s, serving", g.URL(), healthStatus(g.URL()), first.URL())
		}
	})
}

func TestReuseAddr(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	for _, tc := range []struct{ name, prev, want string }{
		{"nothing recorded", "", "127.0.0.1:0"},
		{"port free", "http://" + freeAddr, freeAddr},
		{"port taken", "http://" + held.Addr().String(), "127.0.0.1:0"},
		{"no port", "http://127.0.0.1", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reuseAddr(tc.prev); got != tc.want {
				t.Fatalf("reuseAddr(%q) = %q, want %q", tc.prev, got, tc.want)
			}
		})
	}
}

func healthStatus(base string) int { return getStatus(base + "/healthz") }

func getStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
