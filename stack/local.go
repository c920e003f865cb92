package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"tenantry/localproc"
	"tenantry/oms"
	"tenantry/registry"
)

// Log keys.
const (
	logStack    = "stack"
	logInstance = "instance"
	logPID      = "pid"
	logErr      = "err"
)

// LocalProvider runs each instance of a stack as a process on this machine,
// through localproc: by default `tenantry oms --listen 127.0.0.1:0
// --addr-file DIR/STACK-I.addr --stack STACK`, which writes the address it
// listens on to the addr file. Instance I logs to DIR/STACK-I.log (0600) and
// is described for a later owner in DIR/STACK-I.record.
//
// Lifetime. Instances are not tied to the life of the provider's process:
// a kill -9 of the owner leaves them serving, and the registry still names
// them. A clean shutdown must call StopAll (or Stop per stack), so that no
// instance outlives the platform that started it; a restarted owner calls
// Adopt with the same Dir before anything else, which takes over the
// instances that still serve and stops every other process recorded in Dir.
// One LocalProvider per registry and machine.
//
// An instance that exits on its own is recorded unhealthy (the gateway then
// skips it) and is not restarted: a silent restart would hide the crash.
type LocalProvider struct {
	// Binary is the executable to run; empty means os.Executable().
	Binary string
	// Args returns the arguments of instance i of spec; nil means the oms
	// command above. Tests run other binaries through it.
	Args func(spec Spec, i int, addrFile string) []string
	// Dir holds addr files, logs and process records. Required.
	Dir string
	// Env is added to the provider's own environment for every instance
	// (e.g. TENANTRY_CONTROL_DSN, TENANTRY_SECRET); secrets go here, never
	// in Args.
	Env []string
	// StackEnv, when set, returns environment added for the instances of
	// one stack only (after Env): what only that stack may hold, such as
	// its tenant-header key (TENANTRY_HEADER_KEY) and the credentials of
	// its tenants (all of them, or a dedicated stack's Spec.Tenants).
	StackEnv func(spec Spec) []string
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
// rec and procs are guarded by LocalProvider.mu.
type localStack struct {
	rec   registry.Stack
	procs []*localproc.Process
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
	bin, err := p.prepare()
	if err != nil {
		return registry.Stack{}, err
	}
	ls := &localStack{rec: registry.Stack{Name: spec.Name, Version: spec.Version, Status: registry.StackDeploying}}
	if err := p.claim(ls); err != nil {
		return registry.Stack{}, fmt.Errorf("deploy stack %s: %w", spec.Name, err)
	}
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

// prepare checks the configuration, makes Dir (0700: logs may hold what
// the instances print) and returns the binary to run.
func (p *LocalProvider) prepare() (string, error) {
	if p.Dir == "" || p.Store == nil {
		return "", errors.New("local provider: Dir and Store are required")
	}
	bin, err := p.binary()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return "", fmt.Errorf("create stack dir: %w", err)
	}
	return bin, nil
}

// CanDeploy reports whether a Deploy could start instances now: the binary
// is there, Dir can be made, and a loopback port is free for an instance.
func (p *LocalProvider) CanDeploy(context.Context) error {
	bin, err := p.prepare()
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("instance binary: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("no free loopback port for an instance: %w", err)
	}
	return l.Close()
}

// claim registers ls under its name; ErrRunning if the provider runs a
// stack of that name.
func (p *LocalProvider) claim(ls *localStack) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stacks == nil {
		p.stacks = map[string]*localStack{}
	}
	if _, ok := p.stacks[ls.rec.Name]; ok {
		return ErrRunning
	}
	p.stacks[ls.rec.Name] = ls
	return nil
}

// startAll starts every instance, then waits for each to become healthy.
// Processes started so far are in ls.procs whatever happens, and each has
// its record in Dir from the moment it runs.
func (p *LocalProvider) startAll(ctx context.Context, bin string, spec Spec, ls *localStack) ([]registry.Instance, error) {
	for i := range spec.Instances {
		pr, err := localproc.Start(p.instanceSpec(bin, spec, i))
		if err != nil {
			return nil, &DeployError{Stack: spec.Name, Instance: i, Err: err}
		}
		p.mu.Lock()
		ls.procs = append(ls.procs, pr)
		p.mu.Unlock()
		p.logger().Info("instance started", logStack, spec.Name, logInstance, i, logPID, pr.PID())
		if err := localproc.SaveRecord(p.recordPath(spec.Name, i), pr.Record()); err != nil {
			return nil, &DeployError{Stack: spec.Name, Instance: i, Err: err}
		}
	}
	insts := make([]registry.Instance, len(ls.procs))
	for i, pr := range ls.procs {
		url, err := pr.Ready(ctx)
		if err == nil {
			err = localproc.SaveRecord(p.recordPath(spec.Name, i), pr.Record())
		}
		if err != nil {
			return nil, &DeployError{Stack: spec.Name, Instance: i, Err: err}
		}
		insts[i] = registry.Instance{URL: url, Healthy: true, PID: pr.PID()}
	}
	return insts, nil
}

// instanceSpec is how instance i of spec runs.
func (p *LocalProvider) instanceSpec(bin string, spec Spec, i int) localproc.Spec {
	base := filepath.Join(p.Dir, instanceName(spec.Name, i))
	return localproc.Spec{
		Name:        instanceName(spec.Name, i),
		Binary:      bin,
		Args:        p.args(spec, i, base+".addr"),
		Env:         p.env(spec),
		LogFile:     base + ".log",
		AddrFile:    base + ".addr",
		HealthPath:  p.HealthPath,
		StopTimeout: p.stopTimeout(),
		Exited: func(pr *localproc.Process, err error) {
			p.instanceExited(spec.Name, i, pr, err)
		},
	}
}

func instanceName(stack string, i int) string { return fmt.Sprintf("%s-%d", stack, i) }

func (p *LocalProvider) recordPath(stack string, i int) string {
	return filepath.Join(p.Dir, instanceName(stack, i)+".record")
}

// failDeploy stops what was started, records the stack as failed and
// returns err.
func (p *LocalProvider) failDeploy(ls *localStack, err error) error {
	name := ls.rec.Name
	p.logger().Error("stack deploy failed", logStack, name, logErr, err)
	ctx, cancel := context.WithTimeout(context.Background(), p.stopTimeout()+10*time.Second)
	defer cancel()
	p.stopProcs(ctx, ls)
	p.mu.Lock()
	ls.rec.Status = registry.StackFailed
	ls.rec.Instances = instancesOf(ls.procs)
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

// instancesOf lists, as unhealthy, the instances of procs that got as far
// as answering their health check; the others have no URL the registry
// would accept.
func instancesOf(procs []*localproc.Process) []registry.Instance {
	var out []registry.Instance
	for _, pr := range procs {
		if pr.URL() != "" {
			out = append(out, registry.Instance{URL: pr.URL(), PID: pr.PID()})
		}
	}
	return out
}

// env is the environment of spec's instances: the provider's, StackEnv's,
// the production mark and the test-only faults.
func (p *LocalProvider) env(spec Spec) []string {
	env := slices.Clone(p.Env)
	if p.StackEnv != nil {
		env = append(env, p.StackEnv(spec)...)
	}
	if spec.Production {
		env = append(env, oms.EnvProduction+"=1")
	}
	return append(env, spec.Faults.Env()...)
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

// instanceExited handles an exit of instance i of stack that nobody asked
// for: once the stack is ready, the instance is recorded unhealthy (during
// a deploy, Deploy itself fails). It runs on the goroutine that saw the
// exit.
func (p *LocalProvider) instanceExited(stack string, i int, pr *localproc.Process, exitErr error) {
	p.mu.Lock()
	ls, ok := p.stacks[stack]
	if !ok || ls.rec.Status != registry.StackReady {
		p.mu.Unlock()
		return
	}
	for j := range ls.rec.Instances {
		if ls.rec.Instances[j].PID == pr.PID() {
			ls.rec.Instances[j].Healthy = false
		}
	}
	rec := cloneStack(ls.rec)
	p.mu.Unlock()
	p.logger().Error("instance exited unexpectedly; recorded unhealthy, not restarted",
		logStack, stack, logInstance, i, logPID, pr.PID(), logErr, exitErr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Store.PutStack(ctx, rec); err != nil {
		p.logger().Error("record instance unhealthy", logStack, stack, logInstance, i, logErr, err)
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
	p.stopProcs(ctx, ls)
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

// StopAll stops every stack this provider runs, as Stop does; it is what a
// clean shutdown of the platform calls, so that no instance outlives it.
func (p *LocalProvider) StopAll(ctx context.Context) error {
	p.mu.Lock()
	names := make([]string, 0, len(p.stacks))
	for name := range p.stacks {
		names = append(names, name)
	}
	p.mu.Unlock()
	var errs []error
	for _, name := range names {
		if err := p.Stop(ctx, name); err != nil && !errors.Is(err, ErrNotRunning) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopProcs stops every process of ls at once, waits for all of them and
// removes their records.
func (p *LocalProvider) stopProcs(ctx context.Context, ls *localStack) {
	p.mu.Lock()
	procs := slices.Clone(ls.procs)
	name := ls.rec.Name
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pr := range procs {
		wg.Go(func() {
			if err := pr.Stop(ctx); err != nil {
				p.logger().Error("stop instance", logStack, name, logPID, pr.PID(), logErr, err)
			}
		})
	}
	wg.Wait()
	p.removeRecords(name)
}

// removeRecords removes the process records of a stack's instances.
func (p *LocalProvider) removeRecords(stack string) {
	paths, _ := filepath.Glob(filepath.Join(p.Dir, stack+"-*.record"))
	for _, path := range paths {
		if _, ok := recordIndex(stack, path); ok {
			_ = os.Remove(path)
		}
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
