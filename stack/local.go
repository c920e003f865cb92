package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"tenantry/registry"
)

// Log keys.
const (
	logStack    = "stack"
	logInstance = "instance"
	logPID      = "pid"
	logErr      = "err"
)

// LocalProvider runs each instance of a stack as a process on this machine:
// by default `tenantry oms --listen 127.0.0.1:0 --addr-file DIR/STACK-I.addr
// --stack STACK`, which writes the address it listens on to the addr file.
// Instance I logs to DIR/STACK-I.log.
//
// Instances outlive the LocalProvider's own process: they are stopped by
// Stop, not by the provider exiting, and their PIDs are in the registry. An
// instance that exits on its own is recorded unhealthy (the gateway then
// skips it) and is not restarted: a silent restart would hide the crash.
type LocalProvider struct {
	// Binary is the executable to run; empty means os.Executable().
	Binary string
	// Args returns the arguments of instance i of spec; nil means the oms
	// command above. Tests run other binaries through it.
	Args func(spec Spec, i int, addrFile string) []string
	// Dir holds addr files and logs. Required.
	Dir string
	// Env is added to the provider's own environment for every instance
	// (e.g. TENANTRY_CONTROL_DSN, TENANTRY_SECRET).
	Env []string
	// Store records the stacks. Required.
	Store StackStore
	// Logger receives operator logs; nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds how long Deploy waits for every instance to
	// answer its health check; 0 means 30s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL;
	// 0 means 10s.
	StopTimeout time.Duration
	// HealthPath is the path that must answer 200; empty means /healthz.
	HealthPath string

	mu     sync.Mutex
	stacks map[string]*localStack
}

// localStack is a stack this provider runs. rec is what the registry holds;
// it is guarded by LocalProvider.mu.
type localStack struct {
	rec   registry.Stack
	procs []*process
}

// process is one instance's OS process.
type process struct {
	index    int
	cmd      *exec.Cmd
	log      *os.File
	done     chan struct{} // closed when the process has exited and been reaped
	err      error         // exit error, valid after done
	stopping bool          // guarded by LocalProvider.mu: exit is expected
	addrFile string

	mu         sync.Mutex
	healthyURL string // set once the instance has answered its health check
}

func (p *LocalProvider) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// Deploy starts spec.Instances processes and records the stack; see
// Provider.
func (p *LocalProvider) Deploy(ctx context.Context, spec Spec) (registry.Stack, error) {
	if err := spec.Validate(); err != nil {
		return registry.Stack{}, err
	}
	if p.Dir == "" || p.Store == nil {
		return registry.Stack{}, errors.New("local provider: Dir and Store are required")
	}
	bin, err := p.binary()
	if err != nil {
		return registry.Stack{}, err
	}
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return registry.Stack{}, fmt.Errorf("create stack dir: %w", err)
	}
	ls := &localStack{rec: registry.Stack{Name: spec.Name, Version: spec.Version, Status: registry.StackDeploying}}
	p.mu.Lock()
	if p.stacks == nil {
		p.stacks = map[string]*localStack{}
	}
	if _, ok := p.stacks[spec.Name]; ok {
		p.mu.Unlock()
		return registry.Stack{}, fmt.Errorf("deploy stack %s: %w", spec.Name, ErrRunning)
	}
	p.stacks[spec.Name] = ls
	p.mu.Unlock()

	if err := p.Store.PutStack(ctx, ls.rec); err != nil {
		p.forget(spec.Name)
		return registry.Stack{}, fmt.Errorf("record stack %s deploying: %w", spec.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.startTimeout())
	defer cancel()
	insts, err := p.startAll(ctx, bin, spec, ls)
	if err != nil {
		return registry.Stack{}, p.failDeploy(ls, err)
	}
	p.mu.Lock()
	ls.rec.Status = registry.StackReady
	ls.rec.Instances = insts
	rec := cloneStack(ls.rec)
	p.mu.Unlock()
	// Record ready even if the caller's context ended meanwhile: the
	// processes run, and the registry must say so.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if err := p.Store.PutStack(rctx, rec); err != nil {
		return registry.Stack{}, p.failDeploy(ls, &DeployError{Stack: spec.Name, Instance: -1, Err: fmt.Errorf("record ready: %w", err)})
	}
	p.logger().Info("stack ready", logStack, spec.Name, "version", spec.Version, "instances", len(insts))
	return rec, nil
}

// startAll starts every instance, then waits for each to become healthy.
// Processes started so far are in ls.procs whatever happens.
func (p *LocalProvider) startAll(ctx context.Context, bin string, spec Spec, ls *localStack) ([]registry.Instance, error) {
	for i := range spec.Instances {
		pr, err := p.start(bin, spec, i)
		if err != nil {
			return nil, &DeployError{Stack: spec.Name, Instance: i, Err: err}
		}
		p.mu.Lock()
		ls.procs = append(ls.procs, pr)
		p.mu.Unlock()
		go p.watch(spec.Name, pr)
	}
	insts := make([]registry.Instance, len(ls.procs))
	for i, pr := range ls.procs {
		url, err := p.waitReady(ctx, pr)
		if err != nil {
			return nil, &DeployError{Stack: spec.Name, Instance: i, Err: err}
		}
		insts[i] = registry.Instance{URL: url, Healthy: true, PID: pr.cmd.Process.Pid}
	}
	return insts, nil
}

// failDeploy stops what was started, records the stack as failed and
// returns err.
func (p *LocalProvider) failDeploy(ls *localStack, err error) error {
	name := ls.rec.Name
	p.logger().Error("stack deploy failed", logStack, name, logErr, err)
	ctx, cancel := context.WithTimeout(context.Background(), p.stopTimeout()+10*time.Second)
	defer cancel()
	p.stopProcs(ls)
	p.mu.Lock()
	ls.rec.Status = registry.StackFailed
	ls.rec.Instances = instancesOf(ls.procs, false)
	rec := cloneStack(ls.rec)
	p.mu.Unlock()
	p.forget(name)
	if perr := p.Store.PutStack(ctx, rec); perr != nil {
		return errors.Join(err, fmt.Errorf("record stack %s failed: %w", name, perr))
	}
	return err
}

func (p *LocalProvider) forget(name string) {
	p.mu.Lock()
	delete(p.stacks, name)
	p.mu.Unlock()
}

// instancesOf lists the instances of procs that got as far as answering
// their health check; the others have no URL the registry would accept.
func instancesOf(procs []*process, healthy bool) []registry.Instance {
	var out []registry.Instance
	for _, pr := range procs {
		if pr.url() == "" {
			continue
		}
		out = append(out, registry.Instance{URL: pr.url(), Healthy: healthy, PID: pr.cmd.Process.Pid})
	}
	return out
}

// start starts instance i of spec with its log file and a fresh addr file.
func (p *LocalProvider) start(bin string, spec Spec, i int) (*process, error) {
	base := filepath.Join(p.Dir, fmt.Sprintf("%s-%d", spec.Name, i))
	addrFile := base + ".addr"
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale addr file: %w", err)
	}
	logf, err := os.OpenFile(base+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open instance log: %w", err)
	}
	args := p.args(spec, i, addrFile)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a Ctrl-C in the operator's terminal does not
	// reach the instances; Stop does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p.logger().Info("instance started", logStack, spec.Name, logInstance, i, logPID, cmd.Process.Pid, "log", logf.Name())
	return &process{index: i, cmd: cmd, log: logf, done: make(chan struct{}), addrFile: addrFile}, nil
}

func (p *LocalProvider) args(spec Spec, i int, addrFile string) []string {
	if p.Args != nil {
		return p.Args(spec, i, addrFile)
	}
	return []string{"oms", "--listen", "127.0.0.1:0", "--addr-file", addrFile, "--stack", spec.Name}
}

func (p *LocalProvider) binary() (string, error) {
	if p.Binary != "" {
		return p.Binary, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find tenantry binary: %w", err)
	}
	return exe, nil
}

// waitReady waits for the instance's addr file and a 200 from its health
// path, and returns its URL. It fails at once when the process exits.
func (p *LocalProvider) waitReady(ctx context.Context, pr *process) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if u := pr.readAddr(); u != "" && p.healthy(ctx, client, u) {
			pr.mu.Lock()
			pr.healthyURL = u
			pr.mu.Unlock()
			return u, nil
		}
		select {
		case <-pr.done:
			return "", fmt.Errorf("exited during start (%v); log %s: %s", pr.err, pr.log.Name(), logTail(pr.log.Name()))
		case <-ctx.Done():
			return "", fmt.Errorf("not healthy before the start deadline: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (p *LocalProvider) healthy(ctx context.Context, c *http.Client, base string) bool {
	path := p.HealthPath
	if path == "" {
		path = "/healthz"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
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

// watch reaps the process and, when its exit was not asked for, records
// the instance unhealthy.
func (p *LocalProvider) watch(stack string, pr *process) {
	pr.err = pr.cmd.Wait()
	pr.log.Close()
	close(pr.done)
	p.instanceExited(stack, pr)
}

// instanceExited handles the exit of instance pr of stack: expected exits
// (Stop, a failed deploy) are ignored; otherwise, once the stack is ready,
// the instance is recorded unhealthy. It is the body of the goroutine that
// waits for each process.
func (p *LocalProvider) instanceExited(stack string, pr *process) {
	p.mu.Lock()
	ls, ok := p.stacks[stack]
	if !ok || pr.stopping || ls.rec.Status != registry.StackReady {
		p.mu.Unlock()
		return
	}
	for i := range ls.rec.Instances {
		if ls.rec.Instances[i].PID == pr.cmd.Process.Pid {
			ls.rec.Instances[i].Healthy = false
		}
	}
	rec := cloneStack(ls.rec)
	p.mu.Unlock()
	p.logger().Error("instance exited unexpectedly; recorded unhealthy, not restarted",
		logStack, stack, logInstance, pr.index, logPID, pr.cmd.Process.Pid, logErr, pr.err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Store.PutStack(ctx, rec); err != nil {
		p.logger().Error("record instance unhealthy", logStack, stack, logInstance, pr.index, logErr, err)
	}
}

// Stop stops the stack's processes (SIGTERM, then SIGKILL after
// StopTimeout or when ctx ends) and records the stack as stopped.
func (p *LocalProvider) Stop(ctx context.Context, name string) error {
	p.mu.Lock()
	ls, ok := p.stacks[name]
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("stop stack %s: %w", name, ErrNotRunning)
	}
	p.stopProcsCtx(ctx, ls)
	p.mu.Lock()
	ls.rec.Status = registry.StackStopped
	for i := range ls.rec.Instances {
		ls.rec.Instances[i].Healthy = false
	}
	rec := cloneStack(ls.rec)
	delete(p.stacks, name)
	p.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.Store.PutStack(rctx, rec); err != nil {
		return fmt.Errorf("record stack %s stopped: %w", name, err)
	}
	p.logger().Info("stack stopped", logStack, name)
	return nil
}

func (p *LocalProvider) stopProcs(ls *localStack) { p.stopProcsCtx(context.Background(), ls) }

// stopProcsCtx signals every process at once and waits for all of them.
func (p *LocalProvider) stopProcsCtx(ctx context.Context, ls *localStack) {
	p.mu.Lock()
	procs := append([]*process(nil), ls.procs...)
	for _, pr := range procs {
		pr.stopping = true
	}
	p.mu.Unlock()
	for _, pr := range procs {
		_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	}
	timer := time.NewTimer(p.stopTimeout())
	defer timer.Stop()
	for _, pr := range procs {
		select {
		case <-pr.done:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		// Out of patience: kill the rest.
		for _, q := range procs {
			_ = q.cmd.Process.Kill()
		}
		break
	}
	for _, pr := range procs {
		<-pr.done
	}
}

func (p *LocalProvider) startTimeout() time.Duration {
	if p.StartTimeout > 0 {
		return p.StartTimeout
	}
	return 30 * time.Second
}

func (p *LocalProvider) stopTimeout() time.Duration {
	if p.StopTimeout > 0 {
		return p.StopTimeout
	}
	return 10 * time.Second
}

func cloneStack(s registry.Stack) registry.Stack {
	s.Instances = append([]registry.Instance(nil), s.Instances...)
	return s
}

// logTail returns the last lines of an instance log for an error message.
func logTail(path string) string {
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

// readAddr reads the addr file, which holds the instance's base URL
// ("http://127.0.0.1:41234", as `tenantry oms` writes it) or a bare
// host:port, and returns the base URL; "" while the file is missing or does
// not hold an address yet. A partly written file may parse; the health check
// against it fails and the next poll reads the file again.
func (pr *process) readAddr() string {
	b, err := os.ReadFile(pr.addrFile)
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

func (pr *process) url() string {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.healthyURL
}
