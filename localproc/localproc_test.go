package localproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the processes under test, chosen by
// $LOCALPROCTEST_MODE:
//   - server: a tiny HTTP service (see runServer);
//   - owner: starts servers through Start, saves their records, and blocks
//     until it is killed (see runOwner).
const modeEnv = "LOCALPROCTEST_MODE"

func TestMain(m *testing.M) {
	switch os.Getenv(modeEnv) {
	case "server":
		os.Exit(runServer(os.Args[1:]))
	case "owner":
		os.Exit(runOwner(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runServer serves the health path on a free loopback port and writes its
// URL to --addr-file. --fail exits 3 at once; --sick answers 500;
// --ignore-term ignores SIGTERM (only SIGKILL stops it).
func runServer(args []string) int {
	var addrFile string
	sick, ignoreTerm := false, false
	for i, a := range args {
		switch a {
		case "--fail":
			fmt.Fprintln(os.Stderr, "server: refusing to start (--fail)")
			return 3
		case "--sick":
			sick = true
		case "--ignore-term":
			ignoreTerm = true
		case "--addr-file":
			addrFile = args[i+1]
		}
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(addrFile, []byte("http://"+ln.Addr().String()+"\n"), 0o600); err != nil {
		return 1
	}
	fmt.Fprintln(os.Stderr, "server: listening; secret in env:", os.Getenv("LOCALPROCTEST_SECRET") != "")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sick {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	for range term {
		if !ignoreTerm {
			return 0
		}
	}
	return 0
}

// runOwner starts one server per argument NAME in dir $LOCALPROCTEST_DIR,
// saves each record to DIR/NAME.record once it is ready, and blocks.
func runOwner(names []string) int {
	dir := os.Getenv("LOCALPROCTEST_DIR")
	for _, name := range names {
		p, err := Start(serverSpec(dir, name))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := p.Ready(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := SaveRecord(filepath.Join(dir, name+".record"), p.Record()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	select {}
}

// serverSpec is the Spec of a test server named name in dir.
func serverSpec(dir, name string, flags ...string) Spec {
	addr := filepath.Join(dir, name+".addr")
	return Spec{
		Name:         name,
		Binary:       os.Args[0],
		Args:         append([]string{"--addr-file", addr}, flags...),
		Env:          []string{modeEnv + "=server", "LOCALPROCTEST_SECRET=s3cret"},
		LogFile:      filepath.Join(dir, name+".log"),
		AddrFile:     addr,
		StopTimeout:  5 * time.Second,
		AdoptTimeout: time.Second,
	}
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func status(u string) int {
	resp, err := http.Get(u + DefaultHealthPath)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startReady starts a server and waits until it is ready; the test stops
// it at the end.
func startReady(t *testing.T, spec Spec) *Process {
	t.Helper()
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	if _, err := p.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStart_ReadyStop(t *testing.T) {
	dir := t.TempDir()
	exited := make(chan error, 1)
	spec := serverSpec(dir, "svc")
	spec.Exited = func(_ *Process, err error) { exited <- err }
	p := startReady(t, spec)

	if status(p.URL()) != http.StatusOK {
		t.Fatalf("%s does not answer 200", p.URL())
	}
	rec := p.Record()
	if rec.PID != p.PID() || rec.StartTicks == 0 || rec.BootID == "" || rec.URL != p.URL() || rec.Config != spec.Config() {
		t.Fatalf("record %+v", rec)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID()))
	if err != nil || strings.Contains(string(cmdline), "s3cret") {
		t.Fatalf("cmdline %q (%v): the secret must travel in the environment only", cmdline, err)
	}
	fi, err := os.Stat(spec.LogFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	if log, _ := os.ReadFile(spec.LogFile); !strings.Contains(string(log), "secret in env: true") {
		t.Fatalf("log %q: the process did not get its environment", log)
	}

	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if running(rec.PID) {
		t.Fatalf("pid %d runs after Stop", rec.PID)
	}
	select {
	case err := <-exited:
		t.Fatalf("Exited called after Stop: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestProcess_UnaskedExitReported(t *testing.T) {
	exited := make(chan error, 1)
	spec := serverSpec(t.TempDir(), "svc")
	spec.Exited = func(_ *Process, err error) { exited <- err }
	p := startReady(t, spec)
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("Exited(%v), want the kill named", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Exited not called")
	}
	<-p.Done()
	if p.Err() == nil {
		t.Fatal("Err() = nil after exit")
	}
}

func TestProcess_ReadyFailsFastOnExit(t *testing.T) {
	p, err := Start(serverSpec(t.TempDir(), "svc", "--fail"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = p.Ready(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("Ready = %v, want the exit with the log's last line, before the deadline", err)
	}
}

func TestProcess_StopKillsAfterTimeout(t *testing.T) {
	spec := serverSpec(t.TempDir(), "svc", "--ignore-term")
	spec.StopTimeout = 200 * time.Millisecond
	p := startReady(t, spec)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if running(p.PID()) || !strings.Contains(p.Err().Error(), "killed") {
		t.Fatalf("after Stop: running=%v err=%v, want killed", running(p.PID()), p.Err())
	}
}

// TestAdopt_AfterOwnerKilled is the case adoption exists for: the owner is
// killed with SIGKILL, its processes keep serving, and a new owner adopts
// them — with Stop and exit reports working although they are not its
// children.
func TestAdopt_AfterOwnerKilled(t *testing.T) {
	dir := t.TempDir()
	owner := exec.Command(os.Args[0], "a", "b")
	owner.Env = append(os.Environ(), modeEnv+"=owner", "LOCALPROCTEST_DIR="+dir)
	owner.Stderr = os.Stderr
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	var recs [2]Record
	waitFor(t, "the owner's records", func() bool {
		var errs [2]error
		recs[0], errs[0] = LoadRecord(filepath.Join(dir, "a.record"))
		recs[1], errs[1] = LoadRecord(filepath.Join(dir, "b.record"))
		return errs[0] == nil && errs[1] == nil
	})
	t.Cleanup(func() {
		for _, r := range recs {
			_ = StopRecorded(context.Background(), r, time.Second)
		}
	})
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	for _, r := range recs {
		if !running(r.PID) || status(r.URL) != http.StatusOK {
			t.Fatalf("%s (pid %d) did not survive its owner's kill -9", r.Name, r.PID)
		}
	}

	exited := make(chan error, 1)
	var ps [2]*Process
	for i, r := range recs {
		spec := serverSpec(dir, r.Name)
		spec.Exited = func(_ *Process, err error) { exited <- err }
		p, err := Adopt(context.Background(), r, spec)
		if err != nil {
			t.Fatalf("Adopt %s: %v", r.Name, err)
		}
		if p.PID() != r.PID || p.URL() != r.URL || !p.Adopted() || status(p.URL()) != http.StatusOK {
			t.Fatalf("adopted %+v, want pid %d serving at %s", p.Record(), r.PID, r.URL)
		}
		ps[i] = p
	}

	t.Run("stop", func(t *testing.T) {
		if err := ps[0].Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if running(recs[0].PID) {
			t.Fatalf("adopted pid %d runs after Stop", recs[0].PID)
		}
		select {
		case err := <-exited:
			t.Fatalf("Exited called after Stop: %v", err)
		default:
		}
	})
	t.Run("unasked exit reported", func(t *testing.T) {
		if err := syscall.Kill(recs[1].PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Fatal("exit of an adopted process not reported")
		}
		<-ps[1].Done()
	})
	t.Run("gone once stopped", func(t *testing.T) {
		if _, err := Adopt(context.Background(), recs[0], serverSpec(dir, "a")); !errors.Is(err, ErrGone) {
			t.Fatalf("Adopt of a stopped process: %v, want ErrGone", err)
		}
	})
}

func TestAdopt_Refused(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	t.Run("no pid", func(t *testing.T) {
		if _, err := Adopt(ctx, Record{Name: "x"}, serverSpec(dir, "x")); !errors.Is(err, ErrGone) {
			t.Fatalf("Adopt = %v, want ErrGone", err)
		}
	})
	t.Run("recycled pid", func(t *testing.T) {
		// A live process with the recorded PID that started at another
		// time is another process: refused and left alone.
		spec := serverSpec(dir, "recycled")
		p := startReady(t, spec)
		rec := p.Record()
		rec.StartTicks++
		if _, err := Adopt(ctx, rec, spec); !errors.Is(err, ErrGone) {
			t.Fatalf("Adopt = %v, want ErrGone", err)
		}
		if err := StopRecorded(ctx, rec, time.Second); err != nil {
			t.Fatalf("StopRecorded = %v, want nil (nothing of ours to stop)", err)
		}
		if !running(p.PID()) || status(p.URL()) != http.StatusOK {
			t.Fatal("the process behind a recycled pid was disturbed")
		}
	})
	t.Run("pid running another command", func(t *testing.T) {
		st, err := readStat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		rec := Record{Name: "self", PID: os.Getpid(), StartTicks: st.startTicks, BootID: bootID(), Argv: []string{"/bin/true"}}
		if _, err := Adopt(ctx, rec, serverSpec(dir, "self")); !errors.Is(err, ErrGone) {
			t.Fatalf("Adopt = %v, want ErrGone", err)
		}
	})
	t.Run("exited", func(t *testing.T) {
		spec := serverSpec(dir, "exited")
		p := startReady(t, spec)
		if err := p.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := Adopt(ctx, p.Record(), spec); !errors.Is(err, ErrGone) {
			t.Fatalf("Adopt = %v, want ErrGone", err)
		}
	})
	t.Run("changed configuration is stopped", func(t *testing.T) {
		spec := serverSpec(dir, "changed")
		p := startReady(t, spec)
		spec.Env = append(spec.Env, "NEW_SETTING=1")
		if _, err := Adopt(ctx, p.Record(), spec); !errors.Is(err, ErrChanged) {
			t.Fatalf("Adopt = %v, want ErrChanged", err)
		}
		<-p.Done()
	})
	t.Run("unhealthy is stopped", func(t *testing.T) {
		spec := serverSpec(dir, "sick", "--sick")
		spec.AdoptTimeout = 300 * time.Millisecond
		p, err := Start(spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop(ctx) })
		waitFor(t, "the addr file", func() bool { return ReadAddr(spec.AddrFile) != "" })
		rec := p.Record()
		rec.URL = ReadAddr(spec.AddrFile)
		if _, err := Adopt(ctx, rec, spec); !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("Adopt = %v, want ErrUnhealthy", err)
		}
		<-p.Done()
	})
}

func TestStopRecorded(t *testing.T) {
	spec := serverSpec(t.TempDir(), "svc")
	p := startReady(t, spec)
	if err := StopRecorded(context.Background(), p.Record(), time.Second); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := StopRecorded(context.Background(), p.Record(), time.Second); err != nil {
		t.Fatalf("StopRecorded of a gone process = %v, want nil", err)
	}
}

func TestRecord_SaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.record")
	if _, err := LoadRecord(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadRecord of nothing = %v, want ErrNotExist", err)
	}
	want := Record{Name: "x", PID: 7, StartTicks: 9, BootID: "b", Argv: []string{"bin", "--a"}, Config: "c", URL: "http://127.0.0.1:1"}
	if err := SaveRecord(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadRecord(path)
	if err != nil || got.PID != want.PID || got.URL != want.URL || strings.Join(got.Argv, " ") != "bin --a" {
		t.Fatalf("LoadRecord = %+v, %v", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("record mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestReadAddr(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.addr")
	for _, tc := range []struct{ content, want string }{
		{"http://127.0.0.1:4100\n", "http://127.0.0.1:4100"},
		{"127.0.0.1:4100", "http://127.0.0.1:4100"},
		{"", ""},
		{"127.0.0.1", ""},
		{"ftp://127.0.0.1:21", ""},
	} {
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := ReadAddr(path); got != tc.want {
			t.Errorf("ReadAddr(%q) = %q, want %q", tc.content, got, tc.want)
		}
	}
}
