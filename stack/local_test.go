package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tenantry/oms"
	"tenantry/registry"
)

// The test binary doubles as the instance: with STACKTEST_INSTANCE set it
// runs a tiny HTTP server (or fails at start) instead of the tests. With
// STACKTEST_OWNER set it is a provider's owner process (see runOwner).
const (
	instanceEnv = "STACKTEST_INSTANCE"
	ownerEnv    = "STACKTEST_OWNER"
)

func TestMain(m *testing.M) {
	if os.Getenv(instanceEnv) != "" {
		os.Exit(runInstance(os.Args[1:]))
	}
	if dir := os.Getenv(ownerEnv); dir != "" {
		os.Exit(runOwner(dir, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runInstance serves /healthz on a free loopback port, writes the address
// to --addr-file, and exits 0 on SIGTERM. With --fail it exits 3 at once.
func runInstance(args []string) int {
	var addrFile string
	for i, a := range args {
		switch a {
		case "--fail":
			fmt.Fprintln(os.Stderr, "instance: refusing to start (--fail)")
			return 3
		case "--addr-file":
			addrFile = args[i+1]
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp := addrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte("http://"+ln.Addr().String()+"\n"), 0o644); err != nil || os.Rename(tmp, addrFile) != nil {
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	<-term
	return 0
}

// fakeStore records stacks in memory; it stands in for registry.Store,
// which has its own tests against PostgreSQL.
type fakeStore struct {
	mu     sync.Mutex
	stacks map[string]registry.Stack
	puts   []string // "name:status" per write
	// file, if set, gets the stacks as JSON after every write (an owner
	// process's registry, read by the test that kills it).
	file string
}

func (f *fakeStore) save() {
	if f.file == "" {
		return
	}
	b, _ := json.Marshal(f.stacks)
	_ = os.WriteFile(f.file+".tmp", b, 0o600)
	_ = os.Rename(f.file+".tmp", f.file)
}

func (f *fakeStore) PutStack(_ context.Context, st registry.Stack) error {
	if err := st.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stacks == nil {
		f.stacks = map[string]registry.Stack{}
	}
	f.stacks[st.Name] = cloneStack(st)
	f.puts = append(f.puts, st.Name+":"+st.Status)
	f.save()
	return nil
}

func (f *fakeStore) SetStackStatus(_ context.Context, name, status string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.stacks[name]
	if !ok {
		return registry.ErrNotFound
	}
	st.Status = status
	f.stacks[name] = st
	f.puts = append(f.puts, name+":"+status)
	f.save()
	return nil
}

func (f *fakeStore) get(name string) registry.Stack {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cloneStack(f.stacks[name])
}

func newProvider(t *testing.T, store StackStore, failInstance int) *LocalProvider {
	t.Helper()
	return testProvider(t.TempDir(), store, failInstance)
}

// testProvider runs the test binary as instances in dir; instance
// failInstance fails at start.
func testProvider(dir string, store StackStore, failInstance int) *LocalProvider {
	return &LocalProvider{
		Binary: os.Args[0],
		Args: func(spec Spec, i int, addrFile string) []string {
			args := []string{"--addr-file", addrFile}
			if i == failInstance {
				args = append(args, "--fail")
			}
			return args
		},
		Dir:          dir,
		Env:          []string{instanceEnv + "=1"},
		Store:        store,
		StartTimeout: 15 * time.Second,
		StopTimeout:  5 * time.Second,
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// children lists the PIDs of this process's children (reaped ones are gone).
func children(t *testing.T) []int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
			out = append(out, pid)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLocalProvider_DeployKillStop(t *testing.T) {
	store := &fakeStore{}
	p := newProvider(t, store, -1)
	ctx := context.Background()
	st, err := p.Deploy(ctx, Spec{Name: "blue", Version: "v1", Instances: 2})
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background(), "blue") })

	rec := store.get("blue")
	if rec.Status != registry.StackReady || len(rec.Instances) != 2 || rec.Version != "v1" {
		t.Fatalf("recorded %+v, want ready with 2 instances", rec)
	}
	if !slices.Equal(store.puts[:1], []string{"blue:deploying"}) {
		t.Fatalf("writes %v, want deploying first", store.puts)
	}
	for _, in := range rec.Instances {
		if !in.Healthy || in.PID == 0 || !alive(in.PID) || get(t, in.URL) != http.StatusOK {
			t.Fatalf("instance %+v not healthy and serving", in)
		}
		if _, err := os.Stat(filepath.Join(p.Dir, "blue-0.log")); err != nil {
			t.Fatalf("instance log: %v", err)
		}
	}
	if !slices.Equal(st.Instances, rec.Instances) {
		t.Fatalf("Deploy returned %+v, recorded %+v", st.Instances, rec.Instances)
	}
	if _, err := p.Deploy(ctx, Spec{Name: "blue", Version: "v2", Instances: 1}); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Deploy of blue: %v, want ErrRunning", err)
	}

	t.Run("killed instance is recorded unhealthy and not restarted", func(t *testing.T) {
		victim := rec.Instances[0]
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "instance recorded unhealthy", func() bool { return !store.get("blue").Instances[0].Healthy })
		now := store.get("blue")
		if now.Status != registry.StackReady || !now.Instances[1].Healthy || now.Instances[0].PID != victim.PID {
			t.Fatalf("after kill recorded %+v", now)
		}
		if got := children(t); !slices.Equal(got, []int{rec.Instances[1].PID}) {
			t.Fatalf("children after kill = %v, want only %d (no restart)", got, rec.Instances[1].PID)
		}
	})

	t.Run("stop", func(t *testing.T) {
		if err := p.Stop(ctx, "blue"); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		for _, in := range rec.Instances {
			if alive(in.PID) {
				t.Fatalf("pid %d still running after Stop", in.PID)
			}
		}
		if got := store.get("blue"); got.Status != registry.StackStopped {
			t.Fatalf("status after Stop = %s", got.Status)
		}
		if err := p.Stop(ctx, "blue"); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("second Stop: %v, want ErrNotRunning", err)
		}
	})
}

func TestLocalProvider_FailingInstance(t *testing.T) {
	store := &fakeStore{}
	p := newProvider(t, store, 1)
	_, err := p.Deploy(context.Background(), Spec{Name: "green", Version: "v2", Instances: 3})
	var de *DeployError
	if !errors.As(err, &de) || de.Instance != 1 || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("Deploy = %v, want a DeployError of instance 1 quoting its log", err)
	}
	if got := children(t); len(got) != 0 {
		t.Fatalf("processes left running after a failed deploy: %v", got)
	}
	rec := store.get("green")
	if rec.Status != registry.StackFailed {
		t.Fatalf("status = %s, want failed", rec.Status)
	}
	for _, in := range rec.Instances {
		if in.Healthy {
			t.Fatalf("failed stack has a healthy instance: %+v", in)
		}
	}
	// The name is free again: a fixed deploy may reuse it.
	p.Args = newProvider(t, store, -1).Args
	if _, err := p.Deploy(context.Background(), Spec{Name: "green", Version: "v2", Instances: 1}); err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	if err := p.Stop(context.Background(), "green"); err != nil {
		t.Fatal(err)
	}
}

func TestSpec_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		ok   bool
	}{
		{"valid", Spec{Name: "blue", Version: "v1", Instances: 2}, true},
		{"bad name", Spec{Name: "Blue; drop", Version: "v1", Instances: 1}, false},
		{"no version", Spec{Name: "blue", Instances: 1}, false},
		{"zero instances", Spec{Name: "blue", Version: "v1"}, false},
		{"too many", Spec{Name: "blue", Version: "v1", Instances: MaxInstances + 1}, false},
		{"test faults", Spec{Name: "red", Version: "v1", Instances: 1, Faults: oms.Faults{ErrorRate: 0.2}}, true},
		{"test faults out of range", Spec{Name: "red", Version: "v1", Instances: 1, Faults: oms.Faults{ErrorRate: 2}}, false},
		{"test faults on production", Spec{Name: "red", Version: "v1", Instances: 1, Production: true, Faults: oms.Faults{Latency: time.Second}}, false},
		{"production", Spec{Name: "red", Version: "v1", Instances: 1, Production: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, registry.ErrInvalid)) {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestExternalProvider(t *testing.T) {
	store := &fakeStore{}
	p := &ExternalProvider{Store: store}
	ctx := context.Background()
	st, err := p.Deploy(ctx, Spec{Name: "ext", Version: "v9", URLs: []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != registry.StackReady || len(st.Instances) != 2 || !st.Instances[1].Healthy {
		t.Fatalf("Deploy = %+v", st)
	}
	if _, err := p.Deploy(ctx, Spec{Name: "ext2", Version: "v1", URLs: []string{"ftp://x"}}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad URL: %v, want ErrInvalid", err)
	}
	faulty := Spec{Name: "ext3", Version: "v1", URLs: []string{"http://10.0.0.3:8080"}, Faults: oms.Faults{ErrorRate: 0.5}}
	if _, err := p.Deploy(ctx, faulty); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("faults on an external stack: %v, want ErrInvalid", err)
	}
	if err := p.Stop(ctx, "ext"); err != nil {
		t.Fatal(err)
	}
	if got := store.get("ext"); got.Status != registry.StackStopped {
		t.Fatalf("status = %s", got.Status)
	}
}

// TestLocalProvider_CanDeploy: a provider with its binary and a free port
// can deploy; one whose binary is missing cannot, and says why.
func TestLocalProvider_CanDeploy(t *testing.T) {
	p := newProvider(t, &fakeStore{}, -1)
	if err := p.CanDeploy(context.Background()); err != nil {
		t.Errorf("CanDeploy: %v", err)
	}
	p.Binary = filepath.Join(t.TempDir(), "no-such-binary")
	if err := p.CanDeploy(context.Background()); err == nil || !strings.Contains(err.Error(), "no-such-binary") {
		t.Errorf("CanDeploy with a missing binary: %v", err)
	}
}
