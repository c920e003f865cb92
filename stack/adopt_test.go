package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"tenantry/registry"
)

// runOwner is a provider's owner process: it deploys one stack per
// argument NAME=INSTANCES with a provider on dir, keeps its registry in
// dir/registry.json, and blocks until it is killed.
func runOwner(dir string, stacks []string) int {
	store := &fakeStore{file: filepath.Join(dir, "registry.json")}
	p := testProvider(filepath.Join(dir, "stacks"), store, -1)
	for _, a := range stacks {
		name, n, _ := strings.Cut(a, "=")
		count, _ := strconv.Atoi(n)
		if _, err := p.Deploy(context.Background(), Spec{Name: name, Version: "v1", Instances: count}); err != nil {
			fmt.Fprintln(os.Stderr, "owner:", err)
			return 1
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "deployed"), nil, 0o600); err != nil {
		return 1
	}
	select {}
}

// running reports whether pid is a live process: not gone, not a zombie
// (a killed orphan may wait a while to be reaped by init).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// TestLocalProvider_AdoptAfterOwnerKilled: the owner of a provider is
// killed with SIGKILL; its instances keep serving; a new provider on the
// same Dir adopts the ones still healthy, records the dead ones, stops the
// processes of stacks the registry no longer runs, and from then on owns
// what it adopted.
func TestLocalProvider_AdoptAfterOwnerKilled(t *testing.T) {
	dir := t.TempDir()
	owner := exec.Command(os.Args[0], "blue=2", "white=1", "gray=1")
	owner.Env = append(os.Environ(), ownerEnv+"="+dir)
	owner.Stderr = os.Stderr
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the owner's deploys", func() bool {
		_, err := os.Stat(filepath.Join(dir, "deployed"))
		return err == nil
	})
	b, err := os.ReadFile(filepath.Join(dir, "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stacks map[string]registry.Stack
	if err := json.Unmarshal(b, &stacks); err != nil {
		t.Fatal(err)
	}
	blue, white, gray := stacks["blue"], stacks["white"], stacks["gray"]
	var all []int
	for _, st := range []registry.Stack{blue, white, gray} {
		for _, in := range st.Instances {
			all = append(all, in.PID)
		}
	}
	t.Cleanup(func() {
		for _, pid := range all {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	for _, pid := range all {
		if !running(pid) {
			t.Fatalf("instance pid %d died with its owner", pid)
		}
	}
	// While no one owned them: one instance of blue and white's only one
	// die; the registry stops routing to gray.
	for _, pid := range []int{blue.Instances[1].PID, white.Instances[0].PID} {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	gray.Status = registry.StackStopped
	snap := &registry.Snapshot{Stacks: map[string]*registry.Stack{
		"blue": &blue, "white": &white, "gray": &gray,
		"red": {Name: "red", Version: "v1", Status: registry.StackDeploying},
		"ext": {Name: "ext", Version: "v1", Status: registry.StackReady, Instances: []registry.Instance{{URL: "http://10.0.0.1:80", Healthy: true}}},
	}}
	store := &fakeStore{stacks: map[string]registry.Stack{"red": *snap.Stacks["red"]}}

	p := testProvider(filepath.Join(dir, "stacks"), store, -1)
	adopted, err := p.Adopt(context.Background(), snap)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if !slices.Equal(adopted, []string{"blue"}) {
		t.Fatalf("adopted %v, want [blue]", adopted)
	}
	got := store.get("blue")
	if got.Status != registry.StackReady || !got.Instances[0].Healthy || got.Instances[1].Healthy ||
		got.Instances[0].PID != blue.Instances[0].PID || get(t, got.Instances[0].URL) != http.StatusOK {
		t.Fatalf("blue recorded %+v, want ready, instance 0 the same process and serving, 1 unhealthy", got)
	}
	if got := store.get("white"); got.Status != registry.StackStopped {
		t.Fatalf("white (no instance left) recorded %s, want stopped", got.Status)
	}
	if got := store.get("red"); got.Status != registry.StackFailed {
		t.Fatalf("red (deploying when its owner died) recorded %s, want failed", got.Status)
	}
	if _, ok := store.stacks["ext"]; ok {
		t.Fatal("an external stack was rewritten")
	}
	waitFor(t, "gray's orphan stopped", func() bool { return !running(gray.Instances[0].PID) })
	if _, err := p.Deploy(context.Background(), Spec{Name: "blue", Version: "v2", Instances: 1}); !errors.Is(err, ErrRunning) {
		t.Fatalf("Deploy of an adopted stack: %v, want ErrRunning", err)
	}

	t.Run("adopted instance that dies is recorded unhealthy", func(t *testing.T) {
		if _, err := p.Deploy(context.Background(), Spec{Name: "green", Version: "v1", Instances: 1}); err != nil {
			t.Fatal(err)
		}
		green := store.get("green")
		if err := syscall.Kill(blue.Instances[0].PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "blue-0 recorded unhealthy", func() bool { return !store.get("blue").Instances[0].Healthy })
		all = append(all, green.Instances[0].PID)
	})
	t.Run("StopAll stops adopted and started stacks", func(t *testing.T) {
		if err := p.StopAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"blue", "green"} {
			if got := store.get(name); got.Status != registry.StackStopped {
				t.Fatalf("%s recorded %s after StopAll", name, got.Status)
			}
		}
		for _, pid := range all {
			if running(pid) {
				t.Fatalf("pid %d runs after StopAll", pid)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "stacks", "*.record")); len(left) != 0 {
			t.Fatalf("process records left after StopAll: %v", left)
		}
	})
}

func TestRecordIndex(t *testing.T) {
	for _, tc := range []struct {
		stack, path string
		want        int
		ok          bool
	}{
		{"shared", "/d/shared-0.record", 0, true},
		{"shared", "/d/shared-12.record", 12, true},
		{"shared", "/d/shared-1-0.record", 0, false},
		{"shared-1", "/d/shared-1-0.record", 0, true},
		{"shared", "/d/sharedx-0.record", 0, false},
		{"shared", "/d/shared--1.record", 0, false},
	} {
		n, ok := recordIndex(tc.stack, tc.path)
		if ok != tc.ok || (ok && n != tc.want) {
			t.Errorf("recordIndex(%q, %q) = %d, %v; want %d, %v", tc.stack, tc.path, n, ok, tc.want, tc.ok)
		}
	}
}
