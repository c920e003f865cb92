package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"tenantry/move"
	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/stack"
	"tenantry/workflow"
)

// Provisioner is what the control service does for an isolation. Each
// method is idempotent for a name it already made.
type Provisioner interface {
	// CreateCluster provisions cluster name with standbys streaming
	// standbys and records it.
	CreateCluster(ctx context.Context, name string, standbys int) error
	// CreateAlias creates alias on cluster (a database of the alias's name,
	// with the schema and the tenants' roles) wanting standbys streaming
	// standbys (a move completing on it adds the missing ones); for an
	// alias that exists it sets how many it wants.
	CreateAlias(ctx context.Context, alias, cluster string, standbys int) error
	// Capacity reports the tenant's size on alias, the free disk where new
	// clusters' data goes ("" Dir: provisioned elsewhere), and why the
	// stack provider could not deploy ("" it can). NeedBytes is left to
	// the caller.
	Capacity(ctx context.Context, tenant, alias string) (Capacity, error)
	// StandbysStreaming counts the standbys streaming from cluster's primary.
	StandbysStreaming(ctx context.Context, cluster string) (int, error)
	// Backup takes tenant's logical backup from alias into dir and verifies
	// it; it returns the rows backed up.
	Backup(ctx context.Context, tenant, alias, dir string) (int64, error)
}

// Config configures a Service. Zero values mean the documented defaults.
type Config struct {
	// Store is the registry (routes, stacks, events). Required.
	Store *registry.Store
	// Moves and Rollouts run the child workflows. Required.
	Moves    *move.Service
	Rollouts *rollout.Service
	// Stacks deploys the dedicated stack. Required.
	Stacks stack.Provider
	// Provisioner makes clusters and aliases, and backups. Required.
	Provisioner Provisioner
	// BackupDir holds the isolations' backups. Required.
	BackupDir string
	// Poll is how often a phase looks at its child workflow; default 250 ms.
	Poll time.Duration
	// Now is the clock of the window and of hypercare; default time.Now.
	Now func() time.Time
	// Hook, when set, is called at named points: "isolate:PHASE" before a
	// phase acts, "isolate:PHASE:child" once its child workflow is known,
	// "isolate:PHASE:done" after it acted and before that is recorded; an
	// error it returns is the step's error. Crash tests use it.
	Hook   func(ctx context.Context, point string) error
	Logger *slog.Logger
}

// Service starts isolations and reports on them; the control API calls it.
type Service struct {
	cfg    Config
	runner *workflow.Runner
	log    *slog.Logger
}

// NewService registers the isolation workflow with runner.
func NewService(cfg Config, runner *workflow.Runner) (*Service, error) {
	if cfg.Store == nil || cfg.Moves == nil || cfg.Rollouts == nil || cfg.Stacks == nil || cfg.Provisioner == nil || cfg.BackupDir == "" {
		return nil, errors.New("isolate: Store, Moves, Rollouts, Stacks, Provisioner and BackupDir are required")
	}
	if cfg.Poll == 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Hook == nil {
		cfg.Hook = func(context.Context, string) error { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, runner: runner, log: cfg.Logger.With("subsystem", "isolate")}
	if err := runner.Register(s.def()); err != nil {
		return nil, err
	}
	return s, nil
}

// fill validates req and fills its defaults; it changes nothing.
func (req *Request) fill() error {
	if err := registry.ValidateTenantID(req.Tenant); err != nil {
		return err
	}
	if req.ClusterName == "" {
		req.ClusterName = req.Tenant + "-db"
	}
	if req.Alias == "" {
		req.Alias = req.Tenant + "-ded"
	}
	if req.Stack == "" {
		req.Stack = req.Tenant + "-app"
	}
	if req.Instances == 0 {
		req.Instances = 1
	}
	if req.Standbys == nil {
		one := 1
		req.Standbys = &one
	}
	if req.Hypercare == 0 {
		req.Hypercare = Duration(72 * time.Hour)
	}
	for kind, name := range map[string]string{"cluster": req.ClusterName, "alias": req.Alias, "stack": req.Stack,
		"member": req.ClusterName + "-9"} {
		if err := registry.ValidateName(kind, name); err != nil {
			return err
		}
	}
	if *req.Standbys < 0 || *req.Standbys > 5 {
		return fmt.Errorf("%w: standbys must be 0..5, not %d", registry.ErrInvalid, *req.Standbys)
	}
	if req.Instances < 1 || req.Instances > stack.MaxInstances {
		return fmt.Errorf("%w: instances must be 1..%d, not %d", registry.ErrInvalid, stack.MaxInstances, req.Instances)
	}
	if req.Hypercare < 0 {
		return fmt.Errorf("%w: hypercare must not be negative", registry.ErrInvalid)
	}
	if _, err := ParseWindow(req.Window); err != nil && req.Window != WindowAuto {
		return fmt.Errorf("%w: %v", registry.ErrInvalid, err)
	}
	if req.Until != "" && (!slices.Contains(Phases, req.Until) || req.Until == PhaseHypercare || req.Until == PhaseComplete) {
		return fmt.Errorf("%w: --until %q: want a phase from %s to %s", registry.ErrInvalid, req.Until, PhasePreflight, PhaseStandby)
	}
	if req.SpaceFactor == 0 {
		req.SpaceFactor = DefaultSpaceFactor
	}
	if req.SpaceFactor < 1 || req.SpaceFactor > 1e15 {
		return fmt.Errorf("%w: space factor %g must be 1 to 1e15", registry.ErrInvalid, req.SpaceFactor)
	}
	if req.Force && req.Reason == "" {
		return fmt.Errorf("%w: --force needs --reason (it is recorded with who forced)", registry.ErrInvalid)
	}
	if len(req.Reason) > 500 || len(req.By) > 100 {
		return fmt.Errorf("%w: reason (500) or by (100) too long", registry.ErrInvalid)
	}
	req.Rollout.Hold = req.Hypercare
	return nil
}

// preflight checks what must hold before an isolation starts: the tenant
// is active, its route sends traffic to one stack, the names are free or
// are this tenant's from an earlier isolation, and no move, rollout or
// isolation of the tenant runs. It returns the source alias and stack.
func (s *Service) preflight(ctx context.Context, req *Request, self string) (alias, from string, err error) {
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return "", "", err
	}
	t, ok := snap.Tenants[req.Tenant]
	if !ok {
		return "", "", fmt.Errorf("tenant %q: %w", req.Tenant, registry.ErrNotFound)
	}
	if t.State != registry.StateActive {
		return "", "", fmt.Errorf("%w: tenant %s is %s, not active", registry.ErrInvalid, req.Tenant, t.State)
	}
	if t.Alias == req.Alias {
		return "", "", fmt.Errorf("%w: tenant %s is already on alias %s", registry.ErrInvalid, req.Tenant, req.Alias)
	}
	if a, ok := snap.Aliases[req.Alias]; ok && a.Cluster != req.ClusterName {
		return "", "", fmt.Errorf("%w: alias %s is on cluster %s, not %s", ErrInUseByOther, req.Alias, a.Cluster, req.ClusterName)
	}
	if a, ok := snap.Aliases[t.Alias]; ok && a.Cluster == req.ClusterName {
		return "", "", fmt.Errorf("%w: cluster %s holds the tenant's current alias %s", registry.ErrInvalid, req.ClusterName, t.Alias)
	}
	r := snap.RouteFor(req.Tenant)
	if r == nil {
		return "", "", fmt.Errorf("route of %s: %w", req.Tenant, registry.ErrNotFound)
	}
	var live []string
	for _, b := range r.Backends {
		if b.Weight > 0 {
			live = append(live, b.Stack)
		}
	}
	if len(live) != 1 {
		return "", "", fmt.Errorf("%w: the route of %s sends traffic to %v; an isolation starts from one stack", registry.ErrInvalid, req.Tenant, live)
	}
	if live[0] == req.Stack && self == "" {
		return "", "", fmt.Errorf("%w: tenant %s is already served by stack %s", registry.ErrInvalid, req.Tenant, req.Stack)
	}
	for _, rt := range snap.Routes {
		if rt.Tenant == req.Tenant {
			continue
		}
		for _, b := range rt.Backends {
			if b.Stack == req.Stack && b.Weight > 0 {
				return "", "", fmt.Errorf("%w: stack %s serves route %q", ErrInUseByOther, req.Stack, rt.Tenant)
			}
		}
	}
	if self == "" {
		for _, f := range []workflow.Filter{{Kind: move.Kind, Subject: req.Tenant, Status: workflow.StatusRunning},
			{Kind: rollout.Kind, Subject: req.Tenant, Status: workflow.StatusRunning},
			{Kind: Kind, Subject: req.Tenant, Status: workflow.StatusRunning}} {
			ws, err := s.runner.List(ctx, f)
			if err != nil {
				return "", "", err
			}
			if len(ws) > 0 {
				return "", "", &workflow.ActiveError{Family: ws[0].Family, Subject: req.Tenant, ExistingID: ws[0].ID}
			}
		}
	}
	return t.Alias, live[0], nil
}

// ErrInUseByOther: a name the isolation would use belongs to something
// else.
var ErrInUseByOther = fmt.Errorf("%w: in use by another", registry.ErrConflict)

// DefaultSpaceFactor is Request.SpaceFactor's default.
const DefaultSpaceFactor = 3

// emptyClusterBytes is what a member of an empty cluster takes (catalog,
// WAL segments), added to the tenant's share of each member.
const emptyClusterBytes = 64 << 20

// capacity checks that the dedicated environment fits: free disk where the
// cluster's members go for the tenant's size × SpaceFactor (plus an empty
// cluster's) per member, and a stack provider able to deploy. It refuses
// with ErrCapacity, naming the figures.
func (s *Service) capacity(ctx context.Context, req *Request, alias string) (*Capacity, error) {
	c, err := s.cfg.Provisioner.Capacity(ctx, req.Tenant, alias)
	if err != nil {
		return nil, fmt.Errorf("capacity: %w", err)
	}
	members := int64(1 + *req.Standbys)
	c.NeedBytes = members * (int64(float64(c.TenantBytes)*req.SpaceFactor) + emptyClusterBytes)
	if c.NeedBytes < 0 { // overflow of a huge factor
		c.NeedBytes = 1<<63 - 1
	}
	if c.Dir != "" && c.FreeBytes < c.NeedBytes {
		return &c, fmt.Errorf("%w: %s free in %s, the dedicated cluster wants %s (%d members × (tenant %s × %g + %s))",
			ErrCapacity, bytesText(c.FreeBytes), c.Dir, bytesText(c.NeedBytes), members, bytesText(c.TenantBytes),
			req.SpaceFactor, bytesText(emptyClusterBytes))
	}
	if c.Stacks != "" {
		return &c, fmt.Errorf("%w: the stack provider cannot deploy %s: %s", ErrCapacity, req.Stack, c.Stacks)
	}
	return &c, nil
}

// bytesText is n in KiB, MiB or GiB.
func bytesText(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

// String is the preflight's capacity check in words.
func (c *Capacity) String() string {
	if c == nil {
		return "capacity not checked"
	}
	disk := "disk not checked (clusters provisioned elsewhere)"
	if c.Dir != "" {
		disk = fmt.Sprintf("%s free in %s for %s wanted", bytesText(c.FreeBytes), c.Dir, bytesText(c.NeedBytes))
	}
	return fmt.Sprintf("tenant %s; %s; stacks deployable", bytesText(c.TenantBytes), disk)
}

// Env returns the environment kind recorded in the registry ("" when never
// set).
func (s *Service) Env(ctx context.Context) (string, error) {
	evs, err := s.cfg.Store.Events(ctx, registry.EventFilter{Kind: EventEnvSet, Newest: true, Limit: 1})
	if err != nil || len(evs) == 0 {
		return "", err
	}
	var v struct {
		Env string `json:"env"`
	}
	if err := json.Unmarshal(evs[0].Data, &v); err != nil {
		return "", fmt.Errorf("decode %s event: %w", EventEnvSet, err)
	}
	return v.Env, nil
}

// SetEnv marks the environment sandbox or production (an event: the log
// keeps who changed it when).
func (s *Service) SetEnv(ctx context.Context, env, by string) error {
	if env != EnvSandbox && env != EnvProduction {
		return fmt.Errorf("%w: environment %q: want %s or %s", registry.ErrInvalid, env, EnvSandbox, EnvProduction)
	}
	return s.cfg.Store.AddEvent(ctx, EventEnvSet, "", "environment marked "+env, map[string]string{"env": env, "by": by})
}

// Rehearsed reports the succeeded isolation of tenant, or of its sandbox
// twin (Store.SandboxTwin), recorded while the registry was a sandbox, if
// any, and the twin it was found for ("" the tenant's own).
func (s *Service) Rehearsed(ctx context.Context, tenant string) (*registry.Event, string, error) {
	twin, err := s.cfg.Store.SandboxTwin(ctx, tenant)
	if err != nil {
		return nil, "", err
	}
	for _, subject := range []string{tenant, twin} {
		if subject == "" {
			continue
		}
		evs, err := s.cfg.Store.Events(ctx, registry.EventFilter{Subject: subject, Kind: EventSucceeded, Newest: true, Limit: 1000})
		if err != nil {
			return nil, "", err
		}
		for _, e := range evs {
			var v struct {
				Env string `json:"env"`
			}
			if json.Unmarshal(e.Data, &v) == nil && v.Env == EnvSandbox {
				if subject == tenant {
					return &e, "", nil
				}
				return &e, subject, nil
			}
		}
	}
	return nil, "", nil
}

// SetTwin marks twin as tenant's sandbox twin ("" clears it), with an
// event saying who did.
func (s *Service) SetTwin(ctx context.Context, tenant, twin, by string) error {
	if err := s.cfg.Store.SetSandboxTwin(ctx, tenant, twin); err != nil {
		return err
	}
	msg := "sandbox twin of " + tenant + " cleared"
	if twin != "" {
		msg = fmt.Sprintf("%s marked as the sandbox twin of %s: its sandbox isolation passes %s's production gate", twin, tenant, tenant)
	}
	return s.cfg.Store.AddEvent(ctx, EventTwin, tenant, msg, map[string]string{"twin": twin, "by": by})
}

// gate applies the production gate: it returns the environment, the
// sandbox twin whose record passed it ("" none or the tenant's own) and,
// for a forced production run, the override to record.
func (s *Service) gate(ctx context.Context, req *Request) (string, string, *Override, error) {
	env, err := s.Env(ctx)
	if err != nil || env != EnvProduction {
		return env, "", nil, err
	}
	ev, twin, err := s.Rehearsed(ctx, req.Tenant)
	if err != nil || ev != nil {
		return env, twin, nil, err
	}
	if !req.Force {
		return env, "", nil, fmt.Errorf("%w: the environment is production and no succeeded isolation of %s (or of a tenant marked as its sandbox twin) "+
			"is recorded in a sandbox; rehearse it in the sandbox, or pass --force --reason", ErrGate, req.Tenant)
	}
	return env, "", &Override{By: req.By, Reason: req.Reason, At: s.cfg.Now().UTC()}, nil
}

// checked is what the checks that Plan and Start share found.
type checked struct {
	alias, from string // where the tenant is served from: its alias and stack
	why         string // how the window was chosen
	capa        *Capacity
	capErr      error // ErrCapacity: the capacity check refused
}

// check fills req's defaults and runs the checks Plan and Start share:
// the preflight, the window, the capacity. A capacity refusal is in
// capErr, for Plan to show and Start to return; other errors are returned.
func (s *Service) check(ctx context.Context, req *Request) (checked, error) {
	var c checked
	if err := req.fill(); err != nil {
		return c, err
	}
	var err error
	if c.alias, c.from, err = s.preflight(ctx, req, ""); err != nil {
		return c, err
	}
	if c.why, err = s.resolveWindow(ctx, req); err != nil {
		return c, err
	}
	c.capa, err = s.capacity(ctx, req, c.alias)
	if errors.Is(err, ErrCapacity) {
		c.capErr, err = err, nil
	}
	return c, err
}

// Plan validates req and returns what the isolation would do, with the
// gate's verdict; it changes nothing.
func (s *Service) Plan(ctx context.Context, req Request) (*Plan, error) {
	c, err := s.check(ctx, &req)
	if err != nil {
		return nil, err
	}
	alias, from := c.alias, c.from
	env, twin, ov, gerr := s.gate(ctx, &req)
	p := &Plan{Tenant: req.Tenant, Env: env, Request: req, WindowChoice: c.why}
	capText := "capacity: " + c.capa.String()
	if c.capErr != nil {
		capText = "capacity: refused: " + c.capErr.Error()
	}
	switch {
	case gerr != nil && errors.Is(gerr, ErrGate):
		p.Gate = "refused: " + gerr.Error()
	case gerr != nil:
		return nil, gerr
	case ov != nil:
		p.Gate = fmt.Sprintf("forced by %q: %s (recorded in the events)", ov.By, ov.Reason)
	case env == EnvProduction && twin != "":
		p.Gate = "passed: a succeeded sandbox isolation of " + twin + ", marked as " + req.Tenant + "'s sandbox twin, is recorded"
	case env == EnvProduction:
		p.Gate = "passed: a succeeded sandbox isolation of " + req.Tenant + " is recorded"
	default:
		p.Gate = "no gate (environment " + envName(env) + ")"
	}
	w, _ := ParseWindow(req.Window)
	p.Steps = []PlanStep{
		{Phase: PhasePreflight, Checks: []string{"tenant " + req.Tenant + " active on " + alias, "no move, rollout or isolation of it running",
			"route sends all traffic to " + from, capText, "environment gate"}},
		{Phase: PhaseBackup, Creates: []string{"logical backup of " + req.Tenant + " from " + alias + " under " + s.cfg.BackupDir}, Checks: []string{"backup verified (manifest MAC, checksums)"}},
		{Phase: PhaseProvision, Creates: []string{fmt.Sprintf("cluster %s (primary + %d standbys)", req.ClusterName, *req.Standbys),
			"alias " + req.Alias + " (schema, tenant roles)"}, Checks: []string{"reuses them when an earlier isolation made them"}},
		{Phase: PhaseDeploy, Creates: []string{fmt.Sprintf("stack %s (%d instances), no traffic", req.Stack, req.Instances)}, Checks: []string{"instances healthy"}},
		{Phase: PhaseSmoke, Checks: []string{"smoke suite through the gateway's preview of " + req.Stack}},
		{Phase: PhaseCutover, Creates: []string{fmt.Sprintf("rollout of route %s from %s to %s", req.Tenant, from, req.Stack)},
			Checks: []string{"analysis: 5xx rate, and p99 against the tenant's own on " + from + " (its last " + BaselineWindow.String() +
				" at the gateways; " + from + "'s with too few requests); automatic rollback"}},
		{Phase: PhaseReplicate, Creates: []string{"move of " + req.Tenant + " from " + alias + " to " + req.Alias}, Checks: []string{"schema versions equal", "copy, then chunked parity"}},
		{Phase: PhasePromote, Checks: []string{"inside the window " + w.String() + forcedText(req.Force) + autoText(c.why), "lag bound; pause, fence, marker catch-up, flip"}},
		{Phase: PhaseStandby, Checks: []string{"link back " + req.Alias + " -> " + alias + " kept", fmt.Sprintf("%d standbys streaming on %s", *req.Standbys, req.ClusterName)}},
		{Phase: PhaseHypercare, Checks: []string{"for " + time.Duration(req.Hypercare).String() +
			": verdicts on " + req.Stack + " (5xx, p99 against the tenant's own on " + from + ") and the link back's lag; cutback possible in seconds"}},
		{Phase: PhaseComplete, Checks: []string{"on command or at the end of hypercare: old copy purged, link severed, " + from + " released"}},
	}
	for i := range p.Steps {
		if p.Steps[i].Phase == req.Until {
			p.Steps[i].Checks = append(p.Steps[i].Checks, "then stops (--until) until `tenantry isolate resume "+req.Tenant+"`")
		}
	}
	return p, nil
}

func autoText(why string) string {
	if why == "" {
		return ""
	}
	return " (--window auto: " + why + ")"
}

func forcedText(force bool) string {
	if force {
		return " (forced: any time)"
	}
	return ""
}

func envName(env string) string {
	if env == "" {
		return "unmarked"
	}
	return env
}

// Start validates req, applies the gate and starts the isolation. Nothing
// is changed when it is refused: bad input (ErrInvalid), unknown tenant
// (ErrNotFound), a name in use, an operation running (*workflow.ActiveError),
// the production gate (ErrGate).
func (s *Service) Start(ctx context.Context, req Request) (*Info, error) {
	c, err := s.check(ctx, &req)
	if err == nil {
		err = c.capErr
	}
	if err != nil {
		return nil, err
	}
	env, twin, ov, err := s.gate(ctx, &req)
	if err != nil {
		return nil, err
	}
	d := Data{Request: req, Env: env, Override: ov, Twin: twin, Capacity: c.capa, Until: req.Until,
		SourceAlias: c.alias, SourceStack: c.from, WindowChoice: c.why}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if r, ok := snap.Routes[req.Tenant]; ok {
		for _, b := range r.Backends {
			d.OwnRoute = append(d.OwnRoute, RouteBackend{Stack: b.Stack, Weight: b.Weight})
		}
	}
	for _, p := range Phases {
		d.phase(p)
	}
	d.Current = PhasePreflight
	id, err := s.runner.Create(ctx, Kind, req.Tenant, d)
	if err != nil {
		return nil, err
	}
	if ov != nil {
		if err := s.cfg.Store.AddEvent(ctx, EventOverride, req.Tenant,
			fmt.Sprintf("isolation %s forced in production by %q: %s", id, ov.By, ov.Reason),
			map[string]string{"isolation": id, "by": ov.By, "reason": ov.Reason}); err != nil {
			return nil, err
		}
	}
	_ = s.cfg.Store.AddEvent(ctx, EventStarted, req.Tenant, fmt.Sprintf("isolation %s to %s on %s, stack %s", id, req.Alias, req.ClusterName, req.Stack),
		map[string]string{"isolation": id, "env": env, "twin": twin})
	return s.Get(ctx, id)
}

// Get returns an isolation by id.
func (s *Service) Get(ctx context.Context, id string) (*Info, error) {
	w, err := s.runner.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if w.Kind != Kind {
		return nil, fmt.Errorf("isolation %s: %w", id, workflow.ErrNotFound)
	}
	return info(*w)
}

func info(w workflow.Workflow) (*Info, error) {
	in := &Info{ID: w.ID, Tenant: w.Subject, Status: string(w.Status), Step: w.Step, Error: w.Error, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
	if err := decodeData(w.Data, &in.Data); err != nil {
		return nil, fmt.Errorf("decode isolation %s: %w", w.ID, err)
	}
	return in, nil
}

// Latest returns the tenant's newest isolation (registry.ErrNotFound when
// it has none).
func (s *Service) Latest(ctx context.Context, tenant string) (*Info, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	ws, err := s.runner.List(ctx, workflow.Filter{Kind: Kind, Subject: tenant, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("isolation of %s: %w", tenant, registry.ErrNotFound)
	}
	return info(ws[0])
}

// List returns isolations, newest first, optionally of one tenant.
func (s *Service) List(ctx context.Context, tenant string) ([]*Info, error) {
	ws, err := s.runner.List(ctx, workflow.Filter{Kind: Kind, Subject: tenant})
	if err != nil {
		return nil, err
	}
	out := make([]*Info, 0, len(ws))
	for _, w := range ws {
		in, err := info(w)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Command sends cutback or complete to the tenant's running isolation.
// Cutback applies at any point up to completion; complete only once the
// database is promoted.
func (s *Service) Command(ctx context.Context, tenant, name string) (*Info, error) {
	in, err := s.Latest(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if in.Status != string(workflow.StatusRunning) {
		return nil, fmt.Errorf("isolation %s of %s is %s: %w", in.ID, tenant, in.Status, workflow.ErrNotRunning)
	}
	switch name {
	case SignalCutback:
		if in.Step == "cutback" || in.Step == "abort" || in.Step == PhaseComplete {
			return nil, fmt.Errorf("%w: cutback: the isolation is at %s", ErrWrongState, in.Step)
		}
	case SignalComplete:
		if in.Step != PhaseStandby && in.Step != PhaseHypercare || in.Data.HeldBefore != "" {
			return nil, fmt.Errorf("%w: complete: the isolation is at %s, not promoted and in hypercare", ErrWrongState, in.Step)
		}
	default:
		return nil, fmt.Errorf("%w: unknown command %q (cutback, complete)", registry.ErrInvalid, name)
	}
	if err := s.runner.Signal(ctx, in.ID, name, nil); err != nil {
		return nil, err
	}
	return s.Get(ctx, in.ID)
}

// Resume sends resume to the tenant's isolation, held after the phase
// --until named: it goes on and stops again after until ("" runs to the
// end). ErrWrongState when it is not held.
func (s *Service) Resume(ctx context.Context, tenant string, until string) (*Info, error) {
	in, err := s.Latest(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if in.Status != string(workflow.StatusRunning) {
		return nil, fmt.Errorf("isolation %s of %s is %s: %w", in.ID, tenant, in.Status, workflow.ErrNotRunning)
	}
	if in.Data.HeldBefore == "" {
		return nil, fmt.Errorf("%w: resume: the isolation is at %s, not held by --until", ErrWrongState, in.Step)
	}
	if until != "" {
		i, held := slices.Index(Phases, until), slices.Index(Phases, in.Data.HeldBefore)
		if i < 0 || until == PhaseHypercare || until == PhaseComplete {
			return nil, fmt.Errorf("%w: --until %q: want a phase from %s to %s", registry.ErrInvalid, until, PhasePreflight, PhaseStandby)
		}
		if i < held {
			return nil, fmt.Errorf("%w: --until %s: the isolation is past it (held before %s)", registry.ErrInvalid, until, in.Data.HeldBefore)
		}
	}
	if err := s.runner.Signal(ctx, in.ID, SignalResume, ResumeRequest{Until: until}); err != nil {
		return nil, err
	}
	return s.Get(ctx, in.ID)
}

// Wait waits until cond holds for the isolation or it ends.
func (s *Service) Wait(ctx context.Context, id string, cond func(*Info) bool) (*Info, error) {
	for {
		in, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if cond(in) || in.Status != string(workflow.StatusRunning) {
			return in, nil
		}
		select {
		case <-ctx.Done():
			return in, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
