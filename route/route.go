// Package route is the tenant router: the library every application instance
// (the OMS service, tools) uses to run a tenant's transactions against the
// primary of the tenant's alias.
//
// A Router holds the registry snapshot behind an atomic pointer and keeps one
// pgxpool per (tenant, endpoint), connecting as the tenant's own role. Each
// new snapshot is applied per tenant: when a tenant's endpoint changes, new
// transactions go to a new pool while in-flight ones finish on the old pool;
// when a tenant is paused, new transactions wait at the tenant's gate (up to
// Config.BufferWindow) and the router acknowledges the paused epoch once the
// tenant's in-flight read-write transactions have finished; when it becomes
// active again the waiting transactions proceed against the new placement.
// This is step 4 of the move protocol as the router sees it.
//
// A pause does not wait for read-only transactions: they have nothing to
// lose, and one slow report would hold every writer of the tenant at the
// gate for as long as it runs. One still running when the old placement
// ends its session (the move's fence, a switchover's stop) is run again by
// ReadTx, at the new placement once the pause is over; so is a transaction
// of either kind whose connection the old placement refused before it began
// (the fence denies logins while the routers drain).
//
// Connections are bounded per cluster (Config.ClusterConnCap) across all
// tenant pools: a tenant that needs a connection when the cap is reached takes
// an idle one from another tenant's pool, and idle pools are closed after
// Config.IdleTimeout.
package route

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"tenantry/registry"
)

// SnapshotSource supplies registry snapshots; *registry.Watcher implements it.
//
// Current returns the newest snapshot, or nil before the first one is loaded.
// Subscribe returns a channel that receives every newer snapshot and a
// function that ends the subscription (and closes or abandons the channel).
// Both are safe for concurrent use. Snapshots are never mutated.
type SnapshotSource interface {
	Current() *registry.Snapshot
	Subscribe() (<-chan *registry.Snapshot, func())
}

// Registry records the router's liveness and its acknowledgements of
// placement epochs; *registry.Store implements it. All methods are safe for
// concurrent use and return an error only when the write did not happen.
type Registry interface {
	RegisterRouter(ctx context.Context, id string) error
	// Heartbeat stamps the router alive, routing by registry version.
	Heartbeat(ctx context.Context, id string, version int64) error
	// AckEpoch records that router id has applied the tenant's placement at
	// epoch and no read-write transaction admitted under an older epoch is
	// still running (read-only ones may be; see ReadTx).
	AckEpoch(ctx context.Context, id, tenant string, epoch int64) error
	DeregisterRouter(ctx context.Context, id string) error
}

// Errors callers branch on. A transaction error for one of them is a
// *TenantError naming the tenant.
var (
	// ErrTenantPaused is retryable: the tenant is paused (the buffer window
	// passed or the buffer is full), or the database refused or ended the
	// tenant's session because the control plane fenced it. HTTP services
	// answer 503 with Retry-After.
	ErrTenantPaused = errors.New("tenant paused")
	// ErrTenantFenced means the registry fences the tenant: no transaction is
	// admitted until an operator lifts the fence.
	ErrTenantFenced = errors.New("tenant fenced")
	// ErrTenantNotFound means the registry has no such tenant (or the id is
	// malformed). It wraps registry.ErrNotFound.
	ErrTenantNotFound = fmt.Errorf("tenant %w", registry.ErrNotFound)
	// ErrRouterStopped means Stop was called.
	ErrRouterStopped = errors.New("router stopped")
	// ErrNotPrimary means a server named primary by the registry is in
	// recovery; the connection was refused. It comes wrapped with
	// ErrTenantPaused, since the registry is expected to catch up.
	ErrNotPrimary = errors.New("server is in recovery, not a primary")
)

// Config configures a Router. Zero values mean the documented defaults.
type Config struct {
	// Source supplies registry snapshots. Required.
	Source SnapshotSource
	// Registry receives registration, heartbeats and epoch acks. Nil means
	// none are sent (tools, benchmarks).
	Registry Registry
	// Credentials returns the database user and password of a tenant's role.
	// Required. Called when a tenant's pool is created.
	Credentials func(tenant string) (user, password string)
	// ID names this router in the registry and as application_name of its
	// sessions; default: "router-" and 8 random hex digits.
	ID string
	// BufferWindow is how long a transaction waits while its tenant is
	// paused; default 10s.
	BufferWindow time.Duration
	// MaxBuffered bounds the transactions waiting at all gates of this
	// router; beyond it a transaction fails at once with ErrTenantPaused.
	// Default 10000.
	MaxBuffered int
	// ClusterConnCap is the most connections this router opens to one
	// cluster member (host:port) across all tenant pools; default 64.
	ClusterConnCap int
	// TenantMaxConns is the ceiling of one tenant pool; default 8.
	TenantMaxConns int
	// IdleTimeout closes idle connections and idle tenant pools; default 60s.
	IdleTimeout time.Duration
	// StatementTimeout and IdleInTransactionTimeout are set on every tenant
	// session (statement_timeout, idle_in_transaction_session_timeout);
	// defaults 30s and 60s.
	StatementTimeout, IdleInTransactionTimeout time.Duration
	// HeartbeatInterval paces heartbeats and ack retries; default 1s.
	HeartbeatInterval time.Duration
	// Logger receives operator logs; nil discards them.
	Logger *slog.Logger
	// Registerer registers the router's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RefreshTimeout bounds the refresh a router asks a Source that is a
	// Refresher for before it answers that a tenant does not exist; default
	// DefaultRefreshTimeout.
	RefreshTimeout time.Duration
}

// Defaults.
const (
	DefaultBufferWindow      = 10 * time.Second
	DefaultMaxBuffered       = 10000
	DefaultClusterConnCap    = 64
	DefaultTenantMaxConns    = 8
	DefaultIdleTimeout       = 60 * time.Second
	DefaultStatementTimeout  = 30 * time.Second
	DefaultIdleInTxTimeout   = 60 * time.Second
	DefaultHeartbeatInterval = time.Second
)

// Log keys.
const (
	logTenant = "tenant"
	logEpoch  = "epoch"
	logRouter = "router"
	logErr    = "err"
	logState  = "state"
)

func (c *Config) setDefaults() {
	if c.ID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.ID = "router-" + hex.EncodeToString(b)
	}
	if c.BufferWindow <= 0 {
		c.BufferWindow = DefaultBufferWindow
	}
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = DefaultMaxBuffered
	}
	if c.ClusterConnCap <= 0 {
		c.ClusterConnCap = DefaultClusterConnCap
	}
	if c.TenantMaxConns <= 0 {
		c.TenantMaxConns = DefaultTenantMaxConns
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = DefaultStatementTimeout
	}
	if c.IdleInTransactionTimeout <= 0 {
		c.IdleInTransactionTimeout = DefaultIdleInTxTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RefreshTimeout <= 0 {
		c.RefreshTimeout = DefaultRefreshTimeout
	}
}

// Validate checks the required fields and that a tenant pool fits in the
// cluster cap. New calls it after filling defaults.
func (c *Config) Validate() error {
	if c.Source == nil {
		return errors.New("route config: Source is required")
	}
	if c.Credentials == nil {
		return errors.New("route config: Credentials is required")
	}
	if c.TenantMaxConns > c.ClusterConnCap {
		return fmt.Errorf("route config: TenantMaxConns %d exceeds ClusterConnCap %d", c.TenantMaxConns, c.ClusterConnCap)
	}
	return nil
}

// Router runs tenants' transactions on their current placement. Tx and
// ReadTx are safe for concurrent use; Start and Stop are called once each.
type Router struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	snap    atomic.Pointer[registry.Snapshot]
	tenants sync.Map // tenant id -> *tenantState

	applyMu sync.Mutex       // serialises apply
	seen    map[string]int64 // epochs applied, by tenant; under applyMu

	clMu     sync.Mutex
	clusters map[string]*clusterConns // by host:port

	buffered   atomic.Int64
	refresh    *refresher    // nil when the source is not a Refresher
	beat       chan struct{} // wakes the heartbeat loop after a newer snapshot
	acks       acker
	hbFailing  atomic.Bool
	ackFailing atomic.Bool

	stopped  atomic.Bool
	done     chan struct{}
	cancel   context.CancelFunc
	loops    sync.WaitGroup
	stopOnce sync.Once
}

// New builds a Router from cfg. It takes the source's current snapshot, if
// any; Start subscribes to newer ones.
func New(cfg Config) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Router{
		cfg:      cfg,
		log:      cfg.Logger.With(logRouter, cfg.ID),
		seen:     map[string]int64{},
		clusters: map[string]*clusterConns{},
		done:     make(chan struct{}),
		beat:     make(chan struct{}, 1),
		acks:     acker{pending: map[string]int64{}, wake: make(chan struct{}, 1)},
	}
	if src, ok := cfg.Source.(Refresher); ok {
		r.refresh = &refresher{src: src, timeout: cfg.RefreshTimeout}
	}
	r.m = newMetrics(r)
	if cfg.Registerer != nil {
		if err := r.m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("register router metrics: %w", err)
		}
	}
	if s := cfg.Source.Current(); s != nil {
		r.apply(s, true)
	}
	return r, nil
}

// ID returns the router's id.
func (r *Router) ID() string { return r.cfg.ID }

// Snapshot returns the snapshot the router routes by, or nil.
func (r *Router) Snapshot() *registry.Snapshot { return r.snap.Load() }

// Start registers the router, subscribes to snapshots and starts the
// heartbeat, ack and reaper loops. It returns an error only when the
// registration fails.
func (r *Router) Start(ctx context.Context) error {
	if r.cfg.Registry != nil {
		if err := r.cfg.Registry.RegisterRouter(ctx, r.cfg.ID); err != nil {
			return fmt.Errorf("register router %s: %w", r.cfg.ID, err)
		}
	}
	ch, unsubscribe := r.cfg.Source.Subscribe()
	if s := r.cfg.Source.Current(); s != nil {
		r.apply(s, r.snap.Load() == nil)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.loops.Add(4)
	go func() {
		defer r.loops.Done()
		defer unsubscribe()
		for {
			select {
			case <-lctx.Done():
				return
			case s, ok := <-ch:
				if !ok {
					return
				}
				r.apply(s, false)
			}
		}
	}()
	go r.heartbeatLoop(lctx)
	go r.ackLoop(lctx)
	go r.every(lctx, reapInterval(r.cfg.IdleTimeout), func(context.Context) { r.Reap(r.cfg.Now()) })
	r.log.Info("router started")
	return nil
}

func reapInterval(idle time.Duration) time.Duration {
	return max(idle/4, 50*time.Millisecond)
}

func (r *Router) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	defer r.loops.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// heartbeatLoop beats every HeartbeatInterval, and at once after a newer
// snapshot is applied, so that the version it reports (which tenant create
// waits for) follows the snapshot within milliseconds.
func (r *Router) heartbeatLoop(ctx context.Context) {
	defer r.loops.Done()
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.beat:
		}
		r.heartbeat(ctx)
	}
}

// heartbeat is the body of the heartbeat loop.
func (r *Router) heartbeat(ctx context.Context) {
	if r.cfg.Registry == nil {
		return
	}
	var version int64
	if s := r.snap.Load(); s != nil {
		version = s.Version
	}
	err := r.cfg.Registry.Heartbeat(ctx, r.cfg.ID, version)
	if errors.Is(err, registry.ErrNotFound) && ctx.Err() == nil {
		// The control plane expired this router (silent too long: a
		// stopped process, a long partition): it is alive, so it registers
		// again and counts as live from now on. Acknowledgements it had
		// made went with the row; a move waiting on one times out and
		// rolls back rather than flip past this router.
		r.log.Warn("router was expired from the registry; registering again")
		if err = r.cfg.Registry.RegisterRouter(ctx, r.cfg.ID); err == nil {
			err = r.cfg.Registry.Heartbeat(ctx, r.cfg.ID, version)
		}
	}
	if err != nil && ctx.Err() == nil {
		r.m.errors.WithLabelValues("heartbeat").Inc()
		// Log the first failure of a run of them, not every beat.
		if !r.hbFailing.Swap(true) {
			r.log.Warn("heartbeat failing", logErr, err)
		}
		return
	}
	if err == nil && r.hbFailing.Swap(false) {
		r.log.Info("heartbeat recovered")
	}
}

// Stop ends the loops, fails waiting transactions with ErrRouterStopped,
// closes every pool (after in-flight transactions finish) and deregisters.
func (r *Router) Stop() {
	r.stopOnce.Do(func() {
		r.stopped.Store(true)
		close(r.done)
		if r.cancel != nil {
			r.cancel()
		}
		r.loops.Wait()
		var pools []*tenantPool
		r.tenants.Range(func(_, v any) bool {
			st := v.(*tenantState)
			st.mu.Lock()
			if p := st.detachPool(); p != nil {
				pools = append(pools, p)
			}
			st.mu.Unlock()
			return true
		})
		for _, p := range pools {
			r.closePool(p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.flushAcks(ctx)
		if r.cfg.Registry != nil {
			if err := r.cfg.Registry.DeregisterRouter(ctx, r.cfg.ID); err != nil {
				r.log.Warn("deregister router", logErr, err)
			}
		}
		r.log.Info("router stopped")
	})
}

// Tx runs fn in a read-write transaction of tenant on its current placement
// and commits when fn returns nil. See the package doc for pauses and fences;
// errors that mean "try again shortly" satisfy errors.Is(err, ErrTenantPaused).
func (r *Router) Tx(ctx context.Context, tenant string, fn func(pgx.Tx) error) error {
	return r.run(ctx, tenant, pgx.TxOptions{}, fn)
}

// ReadTx is Tx with a read-only transaction.
//
// fn may run more than once, so it must have no effect outside the
// transaction but to record what it read. A pause does not wait for
// read-only transactions (see the package doc): when the old placement ends
// one's session (the move's fence, a switchover's stop) after the tenant's
// epoch moved on, the router runs it again, at the new placement once the
// pause is over, instead of failing it.
func (r *Router) ReadTx(ctx context.Context, tenant string, fn func(pgx.Tx) error) error {
	return r.run(ctx, tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, fn)
}

// maxRuns bounds how often a transaction is admitted when placements keep
// refusing or ending its sessions (each time needs a new epoch: a pause or
// a flip). Only transactions with nothing to lose are admitted again: a
// read-only one, or one whose connection or BEGIN failed before fn ran (a
// transaction admitted just before a pause whose new connection the fence
// refused).
const maxRuns = 3

func (r *Router) run(ctx context.Context, tenant string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	st, err := r.state(ctx, tenant)
	if err != nil {
		r.m.untracked.WithLabelValues(resultOf(err)).Inc()
		return err
	}
	writes := opts.AccessMode != pgx.ReadOnly
	for runs := 1; ; runs++ {
		p, gen, err := r.admit(ctx, st, writes)
		if err != nil {
			st.count(err)
			return err
		}
		started, err := r.exec(ctx, st, p, opts, fn)
		moved := r.release(st, p, gen, writes)
		if (!writes || !started) && moved && runs < maxRuns && errors.Is(err, ErrTenantPaused) && ctx.Err() == nil {
			r.m.reruns.Inc()
			continue // refused or ended by the placement it was admitted to, which is no longer current
		}
		st.count(err)
		return err
	}
}

// exec runs fn in a transaction on p; started reports whether fn was
// called (when not, nothing of the transaction reached the database: the
// connection or BEGIN failed).
func (r *Router) exec(ctx context.Context, st *tenantState, p *tenantPool, opts pgx.TxOptions, fn func(pgx.Tx) error) (started bool, err error) {
	err = pgx.BeginTxFunc(ctx, p.pool, opts, func(tx pgx.Tx) error {
		started = true
		return fn(tx)
	})
	if err != nil {
		err = r.classify(st.id, err)
	}
	return started, err
}

// state returns the tenant's state, creating it from the current snapshot
// (refreshed first if it lacks the tenant; see Refresher).
func (r *Router) state(ctx context.Context, tenant string) (*tenantState, error) {
	if v, ok := r.tenants.Load(tenant); ok {
		return v.(*tenantState), nil
	}
	if r.stopped.Load() {
		return nil, &TenantError{Tenant: tenant, Err: ErrRouterStopped}
	}
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, &TenantError{Tenant: tenant, Err: ErrTenantNotFound, Cause: err}
	}
	snap := r.snap.Load()
	if snap == nil {
		return nil, &TenantError{Tenant: tenant, Err: ErrTenantPaused, Cause: errors.New("no registry snapshot yet")}
	}
	if _, ok := snap.Tenants[tenant]; !ok {
		if err := r.refreshFor(ctx, tenant); err != nil {
			return nil, err
		}
	}
	v, loaded := r.tenants.LoadOrStore(tenant, r.newTenantState(tenant))
	st := v.(*tenantState)
	if !loaded {
		// A snapshot applied between the lookup above and the store may have
		// missed the new state; apply the newest one again (idempotent),
		// under applyMu, so that no swap runs between reading the newest
		// snapshot and applying it (a swap skips tenants its snapshot did
		// not change: every state must follow the snapshot applied last).
		r.applyMu.Lock()
		s := r.snap.Load()
		st.mu.Lock()
		_, toClose := st.apply(s, s.Tenants[tenant])
		st.mu.Unlock()
		r.applyMu.Unlock()
		r.closePool(toClose)
	}
	return st, nil
}

// refreshFor is called when the snapshot lacks tenant: it asks the source
// for a refresh (coalesced, see refresher), applies the result, and returns
// nil if the tenant exists now. It answers ErrTenantNotFound only from a
// snapshot read after the request arrived; when that refresh fails, the
// retryable ErrTenantPaused (the tenant may exist, the registry could not
// say).
func (r *Router) refreshFor(ctx context.Context, tenant string) error {
	if r.refresh == nil {
		return &TenantError{Tenant: tenant, Err: ErrTenantNotFound}
	}
	if err := r.refresh.refresh(ctx); err != nil {
		r.m.errors.WithLabelValues("refresh").Inc()
		return &TenantError{Tenant: tenant, Err: ErrTenantPaused, Cause: fmt.Errorf("tenant unknown to this router, and the registry could not be read: %w", err)}
	}
	r.apply(r.cfg.Source.Current(), false)
	if _, ok := r.snap.Load().Tenants[tenant]; !ok {
		return &TenantError{Tenant: tenant, Err: ErrTenantNotFound}
	}
	return nil
}

// Apply routes by snap from now on, as the router does with every snapshot
// its source sends; a snapshot no newer than the one it routes by is
// ignored. It returns once every tenant follows snap (pools it retired may
// still be closing). Tools and benchmarks call it to time a swap.
func (r *Router) Apply(snap *registry.Snapshot) { r.apply(snap, false) }

// apply routes by snap from now on, unless a newer one is applied already.
// initial suppresses acks for tenants that are not paused (a starting router
// acknowledges only what the control plane may be waiting for).
//
// It visits only the tenants whose placement or alias endpoint differ from
// the snapshot applied before (see changes): an unchanged tenant costs one
// comparison and keeps its pool, so a router with 10,000 registered tenants
// takes a new snapshot in about a millisecond (BenchmarkRouter_Swap). Every
// tenant state follows the applied snapshot (state applies it under
// applyMu too), which is what makes skipping the unchanged ones correct.
// Retired pools close in the background: closing waits for the server to
// end each session, and no tenant's update should wait on that.
func (r *Router) apply(snap *registry.Snapshot, initial bool) {
	if snap == nil {
		return
	}
	start := time.Now()
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	old := r.snap.Load()
	if old != nil && snap.Version <= old.Version {
		return
	}
	r.snap.Store(snap)
	select {
	case r.beat <- struct{}{}:
	default:
	}
	changed, removed := changes(old, snap)
	var closing []*tenantPool
	for _, id := range changed {
		t := snap.Tenants[id]
		prev, seen := r.seen[id]
		if t.Epoch > prev || !seen {
			r.seen[id] = t.Epoch
		}
		if v, ok := r.tenants.Load(id); ok {
			st := v.(*tenantState)
			st.mu.Lock()
			ack, toClose := st.apply(snap, t)
			st.mu.Unlock()
			closing = append(closing, toClose)
			if ack > 0 && !initial {
				r.acks.push(id, ack)
			}
			continue
		}
		if t.Epoch > prev && (seen && !initial || t.State == registry.StatePaused) {
			r.acks.push(id, t.Epoch)
		}
	}
	for _, id := range removed {
		delete(r.seen, id)
		// A removed tenant's state goes with it, so that a long-lived router
		// does not keep one per tenant ever deleted. A transaction holding
		// the state sees it gone (apply with nil); the next request finds no
		// state, and no tenant in the snapshot, and is answered not found
		// without storing one. (One that read the snapshot before this swap
		// may store a fresh state, which applies the newest snapshot: no
		// pool, not found, and only that one kept.)
		if v, ok := r.tenants.LoadAndDelete(id); ok {
			st := v.(*tenantState)
			st.mu.Lock()
			_, toClose := st.apply(snap, nil)
			st.mu.Unlock()
			closing = append(closing, toClose)
			// Its series go too (a transaction still running counts into
			// a counter no longer exported).
			r.m.transactions.DeletePartialMatch(prometheus.Labels{"tenant": id})
		}
	}
	for _, p := range closing {
		r.closePoolLater(p)
	}
	r.m.swapSeconds.Observe(time.Since(start).Seconds())
}

// Reap closes the pools of tenants that have run no transaction since
// now-IdleTimeout. The reaper loop calls it; tests may call it directly.
func (r *Router) Reap(now time.Time) {
	var idle []*tenantPool
	r.tenants.Range(func(_, v any) bool {
		st := v.(*tenantState)
		st.mu.Lock()
		if st.pool != nil && st.pool.refs == 0 && now.Sub(st.lastUsed) >= r.cfg.IdleTimeout {
			idle = append(idle, st.detachPool())
		}
		st.mu.Unlock()
		return true
	})
	for _, p := range idle {
		r.closePool(p)
	}
}

// TenantError is the error of a transaction refused or ended for a reason
// callers branch on: Err is one of the package's sentinels, Cause (optional)
// the underlying error. errors.Is and errors.As see both.
type TenantError struct {
	Tenant string
	Err    error
	Cause  error
}

func (e *TenantError) Error() string {
	if e.Cause == nil {
		return fmt.Sprintf("tenant %s: %v", e.Tenant, e.Err)
	}
	return fmt.Sprintf("tenant %s: %v: %v", e.Tenant, e.Err, e.Cause)
}

// Unwrap returns the sentinel and the cause.
func (e *TenantError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}
