// Package localproc runs service processes on this machine — the OMS
// instances of the local stack provider and the gateway of `tenantry up` —
// and lets a later owner adopt them.
//
// A process is started from a Spec: a binary with arguments and extra
// environment (secrets go in the environment, never in the arguments, which
// `ps` shows), a log file (0600) that takes its stdout and stderr, and an
// addr file into which the process writes its base URL once it listens.
// Ready waits for that URL to answer the health path with 200 and fails at
// once when the process exits first.
//
// Lifetime. A started process runs in its own process group and is not tied
// to its owner's life: a kill -9 of the owner leaves it serving (that is the
// point: the gateway keeps answering while `tenantry up` restarts). Whoever
// owns it must therefore stop it on a clean shutdown (Stop: SIGTERM, then
// SIGKILL after Spec.StopTimeout), and a restarted owner must either adopt it
// or stop it, never forget it. Record describes a running process precisely
// enough for that: its PID plus the kernel's start time of that PID, the boot
// it belongs to, and its command line, so that a PID the kernel has since
// given to another process is refused rather than adopted or signalled.
//
// An exit nobody asked for (not through Stop) is reported to Spec.Exited,
// for started and adopted processes alike; localproc never restarts a
// process itself.
package localproc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors of Adopt and StopRecorded.
var (
	// ErrGone: the recorded process is not running; its PID is free or
	// belongs to another process now.
	ErrGone = errors.New("process is gone")
	// ErrUnhealthy: the recorded process runs but does not answer its
	// health check.
	ErrUnhealthy = errors.New("process is not healthy")
	// ErrChanged: the recorded process runs but was started from another
	// binary, arguments or environment than the Spec asks for now.
	ErrChanged = errors.New("process was started with another configuration")
)

// Defaults of Spec.
const (
	DefaultHealthPath   = "/healthz"
	DefaultStopTimeout  = 10 * time.Second
	DefaultAdoptTimeout = 5 * time.Second
)

// Spec says how to run one process.
type Spec struct {
	// Name labels the process in errors ("shared-0", "gateway").
	Name string
	// Binary is the executable; Args its arguments (no secrets: `ps` shows
	// them).
	Binary string
	Args   []string
	// Env is added to this process's environment; secrets go here.
	Env []string
	// LogFile receives stdout and stderr (appended; created 0600).
	LogFile string
	// AddrFile is where the process writes its base URL
	// ("http://127.0.0.1:41234") or host:port once it listens. Start
	// removes a stale one.
	AddrFile string
	// HealthPath must answer 200; empty means DefaultHealthPath.
	HealthPath string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL;
	// 0 means DefaultStopTimeout.
	StopTimeout time.Duration
	// AdoptTimeout bounds how long Adopt waits for a health answer; 0
	// means DefaultAdoptTimeout.
	AdoptTimeout time.Duration
	// Exited, if set, is called once, from its own goroutine, when the
	// process exits without Stop having been called. err says how it
	// ended (for an adopted process, which is not this process's child,
	// the exit status is unknown).
	Exited func(p *Process, err error)
}

// Config is a digest of what the process is started from (binary,
// arguments, environment). Adopt compares it with the Record's.
func (s *Spec) Config() string {
	h := sha256.New()
	for _, part := range [][]string{{s.Binary}, s.Args, s.Env} {
		for _, v := range part {
			h.Write([]byte(v))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Spec) healthPath() string {
	if s.HealthPath == "" {
		return DefaultHealthPath
	}
	return s.HealthPath
}

func (s *Spec) stopTimeout() time.Duration {
	if s.StopTimeout > 0 {
		return s.StopTimeout
	}
	return DefaultStopTimeout
}

func (s *Spec) adoptTimeout() time.Duration {
	if s.AdoptTimeout > 0 {
		return s.AdoptTimeout
	}
	return DefaultAdoptTimeout
}

// Record identifies a running process for a later owner. It holds no
// secret (Config is a digest), but callers keep it 0600 like the logs.
type Record struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// StartTicks is field 22 of /proc/PID/stat (clock ticks after boot at
	// which the process started) and BootID the boot it started in: with
	// the PID they name one process for as long as the machine runs.
	StartTicks uint64 `json:"start_ticks"`
	BootID     string `json:"boot_id"`
	// Argv is the command line as /proc/PID/cmdline shows it.
	Argv    []string  `json:"argv"`
	Config  string    `json:"config"`
	URL     string    `json:"url,omitempty"`
	Started time.Time `json:"started"`
	LogFile string    `json:"log_file"`
}

// Process is a running process this owner started or adopted.
type Process struct {
	spec    Spec
	adopted bool
	signal  func(syscall.Signal) error
	done    chan struct{} // closed once the process has exited

	mu       sync.Mutex
	rec      Record
	exitErr  error // valid after done
	stopping bool  // Stop was called: the exit is expected
}

// Start starts the process described by spec. It does not wait for it to
// be ready: call Ready. The process is this owner's until Stop; it is not
// stopped when the owner exits.
func Start(spec Spec) (*Process, error) {
	if spec.Binary == "" || spec.LogFile == "" || spec.AddrFile == "" {
		return nil, fmt.Errorf("start %s: Binary, LogFile and AddrFile are required", spec.Name)
	}
	if err := os.Remove(spec.AddrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("start %s: remove stale addr file: %w", spec.Name, err)
	}
	if err := os.MkdirAll(filepath.Dir(spec.LogFile), 0o700); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	logf, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", spec.Name, err)
	}
	defer logf.Close() // the child holds its own copy
	if err := logf.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("start %s: log mode: %w", spec.Name, err)
	}
	cmd := exec.Command(spec.Binary, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a Ctrl-C in the operator's terminal reaches the
	// owner, which stops its processes itself; not them directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	pid := cmd.Process.Pid
	// The child is not reaped before cmd.Wait, so its /proc entry is
	// there even if it already exited.
	st, err := readStat(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{
		spec:   spec,
		signal: func(s syscall.Signal) error { return cmd.Process.Signal(s) },
		done:   make(chan struct{}),
		rec: Record{Name: spec.Name, PID: pid, StartTicks: st.startTicks, BootID: bootID(),
			Argv: slices.Clone(cmd.Args), Config: spec.Config(), Started: time.Now().UTC(), LogFile: spec.LogFile},
	}
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited with status 0")
		}
		p.exited(err)
	}()
	return p, nil
}

// exited records how the process ended, closes done and reports an exit
// nobody asked for.
func (p *Process) exited(err error) {
	p.mu.Lock()
	p.exitErr = err
	expected := p.stopping
	p.mu.Unlock()
	close(p.done)
	if !expected && p.spec.Exited != nil {
		p.spec.Exited(p, err)
	}
}

// Ready waits until the process has written its addr file and its health
// path answers 200 there, records the URL and returns it. It fails at once,
// quoting the end of the log, when the process exits first, and when ctx
// ends. It does not stop the process on failure: the caller does.
func (p *Process) Ready(ctx context.Context) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if u := ReadAddr(p.spec.AddrFile); u != "" && healthy(ctx, client, u+p.spec.healthPath()) {
			p.mu.Lock()
			p.rec.URL = u
			p.mu.Unlock()
			return u, nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("%s exited during start (%v); log %s: %s", p.spec.Name, p.Err(), p.spec.LogFile, LogTail(p.spec.LogFile))
		case <-ctx.Done():
			return "", fmt.Errorf("%s not healthy before the start deadline: %w", p.spec.Name, ctx.Err())
		case <-tick.C:
		}
	}
}

// PID is the process id.
func (p *Process) PID() int { return p.rec.PID }

// Adopted says whether the process was adopted rather than started.
func (p *Process) Adopted() bool { return p.adopted }

// URL is the base URL, "" until Ready succeeded.
func (p *Process) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec.URL
}

// Record describes the process for a later owner (see Adopt).
func (p *Process) Record() Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rec
	r.Argv = slices.Clone(r.Argv)
	return r
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended; nil while it runs.
func (p *Process) Err() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Stop stops the process: SIGTERM, then SIGKILL after Spec.StopTimeout or
// when ctx ends, and waits until it has exited. Its exit is not reported to
// Spec.Exited. Stopping a process that already exited is not an error.
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if err := p.signal(syscall.SIGTERM); err != nil && !isDone(err) {
		return fmt.Errorf("stop %s (pid %d): %w", p.spec.Name, p.rec.PID, err)
	}
	timer := time.NewTimer(p.spec.stopTimeout())
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	if err := p.signal(syscall.SIGKILL); err != nil && !isDone(err) {
		return fmt.Errorf("kill %s (pid %d): %w", p.spec.Name, p.rec.PID, err)
	}
	<-p.done
	return nil
}

func isDone(err error) bool {
	return errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH)
}

// SaveRecord writes rec to path (0600, through a rename).
func SaveRecord(path string, rec Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save process record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save process record: %w", err)
	}
	return nil
}

// LoadRecord reads a record written by SaveRecord; an error wrapping
// os.ErrNotExist when there is none.
func LoadRecord(path string) (Record, error) {
	var rec Record
	b, err := os.ReadFile(path)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("read process record %s: %w", path, err)
	}
	return rec, nil
}

// ReadAddr reads an addr file holding a base URL or a bare host:port and
// returns the base URL; "" while the file is missing or holds no address
// yet. A partly written file may parse; the health check against it fails
// and the next poll reads the file again.
func ReadAddr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	addr := strings.TrimSpace(string(b))
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

func healthy(ctx context.Context, c *http.Client, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// LogTail returns the last lines of a log for an error message, on one
// line.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	b = bytes.TrimSpace(b)
	if len(b) > 500 {
		b = b[len(b)-500:]
	}
	if len(b) == 0 {
		return "(empty log)"
	}
	return strings.ReplaceAll(string(b), "\n", " | ")
}
