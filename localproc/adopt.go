package localproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Adopt takes over the process rec describes, left running by an earlier
// owner (typically one killed with SIGKILL). It succeeds only when that
// exact process is alive — same PID, same kernel start time in the same
// boot, same command line — was started from spec's configuration
// (Spec.Config, and its binary not replaced on disk since), and answers
// spec's health path at rec.URL within Spec.AdoptTimeout. The adopted
// process is then this owner's as if it had started it: Stop stops it,
// Spec.Exited hears of an exit nobody asked for (found through a pidfd, as
// it is not this process's child).
//
// When the process is gone (ErrGone: exited, or its PID now names another
// process) there is nothing to stop. When it is this exact process but
// unhealthy (ErrUnhealthy) or differently configured (ErrChanged), Adopt
// stops it before returning the error, so that it is neither served from nor
// left behind.
func Adopt(ctx context.Context, rec Record, spec Spec) (*Process, error) {
	fd, err := openVerified(rec)
	if err != nil {
		return nil, err
	}
	p := &Process{spec: spec, adopted: true, signal: fd.signal, done: make(chan struct{}), rec: rec}
	p.rec.Argv = slices.Clone(rec.Argv)
	go p.waitPidfd(fd)

	refuse := func(why error) (*Process, error) {
		if err := p.Stop(ctx); err != nil {
			return nil, errors.Join(why, err)
		}
		return nil, why
	}
	if rec.Config != spec.Config() {
		return refuse(fmt.Errorf("adopt %s (pid %d): %w", rec.Name, rec.PID, ErrChanged))
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", rec.PID)); err == nil && strings.HasSuffix(exe, " (deleted)") {
		return refuse(fmt.Errorf("adopt %s (pid %d): its binary %s was replaced: %w", rec.Name, rec.PID, exe, ErrChanged))
	}
	if rec.URL == "" || !waitHealthy(ctx, rec.URL+spec.healthPath(), spec.adoptTimeout(), p.done) {
		return refuse(fmt.Errorf("adopt %s (pid %d) at %q: %w", rec.Name, rec.PID, rec.URL, ErrUnhealthy))
	}
	return p, nil
}

// StopRecorded stops the process rec describes, if that exact process still
// runs (SIGTERM, then SIGKILL after timeout or when ctx ends), and waits for
// it to exit. A process that is gone, or a PID that names another process
// now, is left alone and is not an error. It is how an owner gets rid of
// what it will not adopt.
func StopRecorded(ctx context.Context, rec Record, timeout time.Duration) error {
	fd, err := openVerified(rec)
	if errors.Is(err, ErrGone) {
		return nil
	}
	if err != nil {
		return err
	}
	p := &Process{spec: Spec{Name: rec.Name, StopTimeout: timeout}, signal: fd.signal, done: make(chan struct{}), rec: rec}
	go p.waitPidfd(fd)
	return p.Stop(ctx)
}

// openVerified opens a pidfd for rec.PID and checks that it names the
// process rec describes. The pidfd is opened first: if the check then
// finds rec's process (which started before the pidfd was opened and still
// runs), the pidfd refers to it, and signals sent through it can never
// reach a process that got the PID later.
func openVerified(rec Record) (*pidfd, error) {
	if rec.PID <= 0 {
		return nil, fmt.Errorf("%s: no pid recorded: %w", rec.Name, ErrGone)
	}
	fd, err := unix.PidfdOpen(rec.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("%s (pid %d): %w", rec.Name, rec.PID, ErrGone)
	}
	if err != nil {
		return nil, fmt.Errorf("%s (pid %d): pidfd: %w", rec.Name, rec.PID, err)
	}
	if err := verify(rec); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &pidfd{fd: fd}, nil
}

// pidfd is a process file descriptor of a process that is not this
// process's child. It is closed once the process has exited, and signals
// after that fail with os.ErrProcessDone: a closed descriptor's number may
// be reused, possibly by another pidfd.
type pidfd struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

func (f *pidfd) signal(s syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return os.ErrProcessDone
	}
	return unix.PidfdSendSignal(f.fd, s, nil, 0)
}

func (f *pidfd) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		unix.Close(f.fd)
	}
}

// verify checks that rec.PID is the process rec describes and has not
// exited.
func verify(rec Record) error {
	gone := func(why string) error {
		return fmt.Errorf("%s (pid %d): %s: %w", rec.Name, rec.PID, why, ErrGone)
	}
	st, err := readStat(rec.PID)
	if err != nil {
		return gone("no such process")
	}
	switch {
	case rec.BootID != bootID():
		return gone("recorded in another boot")
	case st.startTicks != rec.StartTicks:
		return gone("pid now belongs to a process started at another time")
	case st.state == 'Z' || st.state == 'X':
		return gone("exited")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", rec.PID))
	if err != nil {
		return gone("no such process")
	}
	argv := strings.Split(string(bytes.TrimSuffix(b, []byte{0})), "\x00")
	if !slices.Equal(argv, rec.Argv) {
		return gone("pid now runs another command")
	}
	return nil
}

// waitPidfd closes done once the process behind fd has exited (its pidfd
// turns readable when it exits, reaped by its parent or not).
func (p *Process) waitPidfd(fd *pidfd) {
	fds := []unix.PollFd{{Fd: int32(fd.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, -1)
		if n > 0 {
			break
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			time.Sleep(100 * time.Millisecond) // never report an exit that did not happen
		}
	}
	fd.close()
	p.exited(errors.New("exited (status unknown: not this process's child)"))
}

// waitHealthy polls u until it answers 200, the timeout passes, ctx ends or
// done closes.
func waitHealthy(ctx context.Context, u string, timeout time.Duration, done <-chan struct{}) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if healthy(ctx, client, u) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-done:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// procStat is what verify reads from /proc/PID/stat.
type procStat struct {
	state      byte
	startTicks uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// pid (comm) state ppid ... ; comm may hold spaces and parentheses,
	// so fields are counted after the last ')'. starttime is field 22,
	// the 20th after comm.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return procStat{state: f[0][0], startTicks: ticks}, nil
}

var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})
