package ha

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/registry"
	"tenantry/workflow"
)

// Advisory locks (on the control database): the one control-plane replica
// holding failoverLockKey fails over the clusters whose servers it runs
// (only replicas with Servers try for it); the one holding followLockKey
// follows the externally managed clusters.
const (
	failoverLockKey int64 = 0x7465_6e61_6e74_6861 // "tenantha"
	followLockKey   int64 = 0x7465_6e61_6e74_6866 // "tenanthf"
)

// MonitorConfig configures the failover monitor. Zero values mean the
// documented defaults: detection takes about Interval × FailAfter after
// the primary's last good probe (2 s with the defaults).
type MonitorConfig struct {
	// Interval between probes of each primary; default 500 ms.
	Interval time.Duration
	// FailAfter consecutive failed probes declare a primary dead; default 4.
	FailAfter int
	// ProbeTimeout bounds one probe (connect and a query); default 1 s.
	ProbeTimeout time.Duration
}

func (c *MonitorConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.FailAfter == 0 {
		c.FailAfter = 4
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Second
	}
}

// FailoverRecord is one failover the monitor carried out (also the data of
// its cluster.failover event).
type FailoverRecord struct {
	Cluster string `json:"cluster"`
	// Old is the dead primary, now fenced; New the promoted standby.
	Old string `json:"old"`
	New string `json:"new"`
	// LastOK is the old primary's last good probe; DetectedAt when it was
	// declared dead; PromotedAt when the new primary took writes; RepointedAt
	// when the registry named it primary and resumed the tenants.
	LastOK      time.Time `json:"last_ok"`
	DetectedAt  time.Time `json:"detected_at"`
	PromotedAt  time.Time `json:"promoted_at"`
	RepointedAt time.Time `json:"repointed_at"`
	// LSN the promoted standby had received.
	LSN     string   `json:"lsn"`
	Tenants []string `json:"tenants,omitempty"`
}

// Monitor probes the primary of every cluster whose servers this control
// plane runs and fails a dead one over: the most advanced streaming
// standby is promoted, the old primary fenced in the registry (no router
// connects to it again, even when it comes back writable) and the cluster
// repointed. Externally managed clusters are never promoted: the registry
// follows the member that reports itself primary. Only the replica holding
// the matching advisory lock acts.
// Start/Stop run Tick every Interval; tests may call Tick themselves.
type Monitor struct {
	h    *Service
	cfg  MonitorConfig
	pool *pgxpool.Pool

	mu   sync.Mutex
	lock *pgx.Conn // holds the advisory locks below; nil when none is held
	// failing and following say which locks lock holds.
	failing, following bool
	health             map[string]*primaryHealth
	failovers          []FailoverRecord
	stop               context.CancelFunc
	done               chan struct{}
}

type primaryHealth struct {
	member string
	fails  int
	lastOK time.Time
	// followedAt is the monitor's last attempt at a pending follow.
	followedAt time.Time
	// strayAt is when the monitor last asked the standbys whether one
	// left recovery (fenceStrays).
	strayAt time.Time
}

// followRetry is how often the monitor tries again to make a cluster's
// standbys follow its primary after a failover that did not (FollowPending).
const followRetry = 5 * time.Second

// strayEvery is how often the monitor asks the standbys of a cluster whose
// primary answers whether one of them left recovery (fenceStrays).
const strayEvery = 10 * time.Second

// NewMonitor returns a monitor for h's clusters that takes its lock on the
// control database through pool.
func (h *Service) NewMonitor(pool *pgxpool.Pool, cfg MonitorConfig) *Monitor {
	cfg.setDefaults()
	return &Monitor{h: h, cfg: cfg, pool: pool, health: map[string]*primaryHealth{}}
}

// Start runs the monitor until Stop.
func (m *Monitor) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.stop, m.done = cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		t := time.NewTicker(m.cfg.Interval)
		defer t.Stop()
		// The same error (a dead primary without a standby) comes back
		// every tick: logged when it changes, else once a minute.
		var last string
		var logged time.Time
		for {
			if err := m.Tick(ctx); err != nil && ctx.Err() == nil {
				if msg := err.Error(); msg != last || time.Since(logged) > time.Minute {
					m.h.log.Warn("failover monitor", "err", err)
					last, logged = msg, time.Now()
				}
			} else {
				last = ""
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the monitor and gives its lock back.
func (m *Monitor) Stop() {
	if m.stop == nil {
		return
	}
	m.stop()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock != nil {
		_ = m.lock.Close(context.Background())
		m.lock, m.failing, m.following = nil, false, false
	}
}

// Failovers returns the failovers this monitor carried out.
func (m *Monitor) Failovers() []FailoverRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]FailoverRecord(nil), m.failovers...)
}

// Tick is one step: take (or keep) the locks; probe the primary of every
// cluster whose servers this replica runs once and fail over those that
// failed FailAfter probes in a row (failover lock); follow the externally
// managed clusters' primaries (follow lock).
func (m *Monitor) Tick(ctx context.Context) error {
	failing, following, err := m.holdLocks(ctx)
	if err != nil || !failing && !following {
		return err
	}
	snap, err := m.h.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var errs []error
	var emu sync.Mutex
	for _, c := range snap.Clusters {
		p, ok := c.Primary()
		if !ok || c.Local && !failing || !c.Local && !following {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if c.Local {
				err = m.check(ctx, c, p)
			} else {
				err = m.follow(ctx, c, p)
			}
			if err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("cluster %s: %w", c.Name, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// holdLocks takes the monitor's advisory locks on a connection of its own
// (the failover lock only with Servers), or checks that the connection
// holding them is alive.
func (m *Monitor) holdLocks(ctx context.Context) (failing, following bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock != nil {
		if err := m.lock.Ping(ctx); err != nil {
			_ = m.lock.Close(context.Background())
			m.lock, m.failing, m.following = nil, false, false
			m.health = map[string]*primaryHealth{}
		}
	}
	if m.lock == nil {
		pc, err := m.pool.Acquire(ctx)
		if err != nil {
			return false, false, err
		}
		m.lock = pc.Hijack()
	}
	try := func(key int64, held *bool) error {
		if *held {
			return nil
		}
		return m.lock.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(held)
	}
	if err := try(followLockKey, &m.following); err != nil {
		return false, false, err
	}
	if m.h.cfg.Servers != nil {
		if err := try(failoverLockKey, &m.failing); err != nil {
			return false, false, err
		}
	}
	return m.failing, m.following, nil
}

// follow makes the registry follow an externally managed cluster (one
// tenantry does not run: Patroni, CloudNativePG, a managed service). It
// never promotes: when the member the registry names primary is not
// writable and exactly one other member reports pg_is_in_recovery()
// false, that member becomes the primary in the registry (the old one a
// standby). Routers refuse servers in recovery and retry unreachable ones,
// so tenants follow within a probe interval.
func (m *Monitor) follow(ctx context.Context, c *registry.Cluster, p registry.Member) error {
	writable := make([]bool, len(c.Members))
	var wg sync.WaitGroup
	for i, mb := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writable[i] = m.writable(ctx, c, mb)
		}()
	}
	wg.Wait()
	var primaries []string
	for i, mb := range c.Members {
		if writable[i] {
			primaries = append(primaries, mb.Name)
		}
	}
	if len(primaries) != 1 || primaries[0] == p.Name {
		return nil // the registry is right, or nobody is writable, or two are (not ours to choose)
	}
	to := primaries[0]
	if err := m.h.cfg.Registry.Switch(ctx, c.Name, to, registry.RoleStandby, nil); err != nil {
		return err
	}
	msg := fmt.Sprintf("externally managed cluster %s: %s reports itself primary (was %s); the registry follows", c.Name, to, p.Name)
	if err := m.h.cfg.Registry.AddEvent(ctx, registry.EventFollowed, c.Name, msg, map[string]string{"old": p.Name, "new": to}); err != nil {
		m.h.log.Warn("record event", "cluster", c.Name, "err", err)
	}
	m.h.log.Warn("following external primary", "cluster", c.Name, "old", p.Name, "new", to)
	return nil
}

// writable reports whether member mb answers and is not in recovery.
func (m *Monitor) writable(ctx context.Context, c *registry.Cluster, mb registry.Member) bool {
	pctx, cancel := context.WithTimeout(ctx, m.cfg.ProbeTimeout)
	defer cancel()
	conn, err := m.h.cfg.Connect(pctx, c, mb, "postgres")
	if err != nil {
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var rec bool
	return conn.QueryRow(pctx, "SELECT pg_is_in_recovery()").Scan(&rec) == nil && !rec
}

// check probes c's primary p and fails c over when p has failed FailAfter
// probes in a row.
func (m *Monitor) check(ctx context.Context, c *registry.Cluster, p registry.Member) error {
	perr := m.probe(ctx, c, p)
	m.mu.Lock()
	hs := m.health[c.Name]
	if hs == nil || hs.member != p.Name {
		hs = &primaryHealth{member: p.Name, lastOK: time.Now()}
		m.health[c.Name] = hs
	}
	if perr == nil {
		hs.fails, hs.lastOK = 0, time.Now()
	} else {
		hs.fails++
	}
	fails, lastOK := hs.fails, hs.lastOK
	follow := perr == nil && c.FollowPending && time.Since(hs.followedAt) >= followRetry
	if follow {
		hs.followedAt = time.Now()
	}
	stray := perr == nil && time.Since(hs.strayAt) >= strayEvery
	if stray {
		hs.strayAt = time.Now()
	}
	m.mu.Unlock()
	if perr == nil && len(c.FailoverPaused) > 0 {
		return m.h.resumeCutShort(ctx, c, p)
	}
	if follow || stray {
		// A switchover moves the primary and the standbys itself.
		if busy, err := m.h.switchoverRunning(ctx, c.Name); err != nil || busy {
			return err
		}
		// A failover repointed c and did not get its standbys to follow
		// the new primary (cut short, or they could not yet).
		if follow {
			if err := m.h.followAfterFailover(ctx, c.Name, p.Name); err != nil {
				return fmt.Errorf("standbys to follow %s after a failover: %w", p.Name, err)
			}
		}
		// A standby out of recovery while its primary answers: promoted
		// by a failover cut short that left no tenant paused to resume
		// (a cluster without active tenants), or by hand.
		if stray {
			return m.h.fenceStrays(ctx, c, p, m.cfg.ProbeTimeout)
		}
		return nil
	}
	if fails < m.cfg.FailAfter {
		return nil
	}
	busy, err := m.h.switchoverRunning(ctx, c.Name)
	if err != nil || busy {
		return err // a switchover stops the primary on purpose
	}
	rec, err := m.h.failover(ctx, c, p, lastOK)
	if err != nil {
		return fmt.Errorf("fail over (primary %s unreachable: %v): %w", p.Name, perr, err)
	}
	m.mu.Lock()
	m.failovers = append(m.failovers, *rec)
	delete(m.health, c.Name)
	m.mu.Unlock()
	return nil
}

// resumeCutShort resumes the tenants a failover of c paused and did not
// resume, cut short before it named a new primary, now that the primary p
// it had given up on answers again: it stays the primary (the registry never
// named another, so no tenant wrote anywhere else) and the tenants resume on
// it, the record cleared, in one registry transaction. A standby the cut
// failover promoted first is a primary of its own, behind p from now on:
// it is fenced (a later failover would otherwise take it, as the one a
// failover cut short promoted, and lose every write since) and stopped,
// and p no longer waits for it (a sync cluster's commits would otherwise
// wait forever); `cluster rejoin` rebuilds it.
func (h *Service) resumeCutShort(ctx context.Context, c *registry.Cluster, p registry.Member) error {
	if err := h.fenceStrays(ctx, c, p, 2*time.Second); err != nil {
		return err
	}
	if err := h.cfg.Registry.Switch(ctx, c.Name, p.Name, registry.RoleStandby, c.FailoverPaused); err != nil {
		return fmt.Errorf("resume the tenants of a failover cut short: %w", err)
	}
	h.log.Warn("a failover cut short before its repoint: the primary answers again and its tenants resumed on it",
		"cluster", c.Name, "primary", p.Name, "tenants", len(c.FailoverPaused))
	return nil
}

func (m *Monitor) probe(ctx context.Context, c *registry.Cluster, p registry.Member) error {
	pctx, cancel := context.WithTimeout(ctx, m.cfg.ProbeTimeout)
	defer cancel()
	conn, err := m.h.cfg.Connect(pctx, c, p, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(pctx, "SELECT 1")
	return err
}

// switchoverRunning reports whether a switchover of cluster runs, on its
// own or inside an upgrade (both of FamilyHA): it stops the primary on
// purpose, and promotes a standby itself. (Until the upgrade's kind was
// counted, a switchover step of an upgrade slower than the failure window
// was failed over under it.)
func (h *Service) switchoverRunning(ctx context.Context, cluster string) (bool, error) {
	ws, err := h.runner.List(ctx, workflow.Filter{Family: FamilyHA, Subject: cluster, Status: workflow.StatusRunning, Limit: 1})
	return len(ws) > 0, err
}

// FailedProbes is how many probes in a row of cluster's primary have
// failed (0 when the last one answered, or the cluster is not watched).
func (m *Monitor) FailedProbes(cluster string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if hs := m.health[cluster]; hs != nil {
		return hs.fails
	}
	return 0
}

// failover promotes the most advanced standby of c in place of the dead
// primary old: the cluster's tenants are paused at once (routers buffer
// their new transactions rather than fail them on the dead primary), old
// is stopped if it can be, the standby promoted, and in one registry
// transaction it becomes the primary, old is fenced and the tenants
// resume.
func (h *Service) failover(ctx context.Context, c *registry.Cluster, old registry.Member, lastOK time.Time) (*FailoverRecord, error) {
	rec := &FailoverRecord{Cluster: c.Name, Old: old.Name, LastOK: lastOK, DetectedAt: time.Now()}
	to, lsn, err := h.mostAdvanced(ctx, c)
	if err != nil {
		return nil, err
	}
	rec.New, rec.LSN = to.Name, lsn
	paused, err := h.pauseCluster(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	for id := range paused {
		rec.Tenants = append(rec.Tenants, id)
	}
	if err := h.cfg.Hook(ctx, "failover:paused"); err != nil {
		return nil, err
	}
	// The old primary is unreachable; if its server still runs here, stop
	// it, so that nothing reaches it (the registry fences it regardless).
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = h.cfg.Servers.StopMember(sctx, c.Name, old.Name)
	cancel()
	if err := h.cfg.Servers.PromoteMember(ctx, c.Name, to.Name); err != nil {
		return nil, errors.Join(err, h.cfg.Registry.ResumeTenants(context.WithoutCancel(ctx), paused))
	}
	rec.PromotedAt = time.Now()
	// Before the tenants resume: the promoted standby's setting may name
	// itself or the dead primary, and a commit would then wait forever.
	if err := h.clearSync(ctx, c.Name, to.Name); err != nil {
		h.log.Warn("synchronous_standby_names on the new primary", "cluster", c.Name, "err", err)
	}
	if err := h.cfg.Hook(ctx, "failover:promoted"); err != nil {
		return nil, err
	}
	if err := h.cfg.Registry.Switch(ctx, c.Name, to.Name, registry.RoleFenced, paused); err != nil {
		return nil, err
	}
	rec.RepointedAt = time.Now()
	if err := h.cfg.Hook(ctx, "failover:repointed"); err != nil {
		return nil, err
	}
	if err := h.followAfterFailover(ctx, c.Name, to.Name); err != nil {
		h.log.Warn("standbys to follow the new primary", "cluster", c.Name, "err", err)
	}
	msg := fmt.Sprintf("failover of cluster %s: primary %s unreachable, %s promoted (detected %.2f s after the last good probe, promoted %.2f s later); %s fenced",
		c.Name, old.Name, to.Name, rec.DetectedAt.Sub(lastOK).Seconds(), rec.PromotedAt.Sub(rec.DetectedAt).Seconds(), old.Name)
	if err := h.cfg.Registry.AddEvent(ctx, registry.EventFailover, c.Name, msg, rec); err != nil {
		h.log.Warn("record failover event", "cluster", c.Name, "err", err)
	}
	h.log.Warn("failover", "cluster", c.Name, "old", old.Name, "new", to.Name, "lsn", lsn)
	return rec, nil
}

// fenceStrays fences every standby of c (as the registry names them) that
// answers within the given time, out of recovery, while p is the primary
// (fencePromoted).
func (h *Service) fenceStrays(ctx context.Context, c *registry.Cluster, p registry.Member, within time.Duration) error {
	for _, sp := range h.standbys(ctx, c, within) {
		if sp.err != nil || sp.inRecovery {
			continue // unreachable, or a standby still
		}
		if err := h.fencePromoted(ctx, c.Name, sp.m.Name, p.Name); err != nil {
			return fmt.Errorf("fence %s, out of recovery while %s is the primary: %w", sp.m.Name, p.Name, err)
		}
	}
	return nil
}

// fencePromoted fences member of cluster, a standby out of recovery (a
// failover cut short promoted it, or someone by hand) while primary stays
// the primary: the registry first, then its server stopped and primary's
// synchronous_standby_names set without it.
func (h *Service) fencePromoted(ctx context.Context, cluster, member, primary string) error {
	if err := h.cfg.Registry.SetMemberRole(ctx, cluster, member, registry.RoleFenced); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := h.cfg.Servers.StopMember(sctx, cluster, member)
	cancel()
	if err != nil {
		h.log.Warn("stop a standby out of recovery", "cluster", cluster, "member", member, "err", err)
	}
	if err := h.applySync(ctx, cluster, primary, ""); err != nil {
		return err
	}
	msg := fmt.Sprintf("member %s of cluster %s left recovery (promoted by a failover cut short, or by hand) while %s is the primary: fenced and stopped; `cluster rejoin` rebuilds it", member, cluster, primary)
	h.log.Warn("fenced a standby out of recovery", "cluster", cluster, "member", member, "primary", primary)
	return h.cfg.Registry.AddEvent(ctx, registry.EventMemberFenced, cluster, msg, map[string]string{"member": member, "primary": primary})
}

// followAfterFailover makes the standbys of cluster follow primary, which a
// failover promoted: they streamed from the dead primary and have received
// no more than it. Then it sets synchronous_standby_names on primary and
// clears the cluster's FollowPending, which the failover's repoint set: if
// anything here fails, or the control plane dies first, the monitor calls
// it again (Monitor.check).
func (h *Service) followAfterFailover(ctx context.Context, cluster, primary string) error {
	if err := h.followNewPrimary(ctx, cluster, primary, ""); err != nil {
		return err
	}
	if err := h.applySync(ctx, cluster, primary, ""); err != nil {
		return fmt.Errorf("synchronous_standby_names on %s: %w", primary, err)
	}
	return h.cfg.Registry.FollowDone(ctx, cluster)
}

// pauseCluster pauses every active tenant on the cluster's aliases in one
// registry transaction, without waiting for acknowledgements: their
// transactions on the dead primary cannot commit anyway. The pause is
// recorded with the cluster (PauseForFailover), so that the tenants a
// failover cut short paused (its control plane died, or its repoint
// failed) are resumed by the next one: it returns them too.
func (h *Service) pauseCluster(ctx context.Context, cluster string) (map[string]int64, error) {
	for attempt := 0; ; attempt++ {
		snap, err := h.cfg.Registry.Snapshot(ctx)
		if err != nil {
			return nil, err
		}
		want := map[string]int64{}
		for _, t := range tenantsOn(snap, cluster) {
			if t.State == registry.StateActive {
				want[t.ID] = t.Epoch
			}
		}
		paused, err := h.cfg.Registry.PauseForFailover(ctx, cluster, want)
		if !errors.Is(err, registry.ErrConflict) || attempt == 3 {
			return paused, err
		}
	}
}

// mostAdvanced picks the standby to promote: one already promoted (a
// failover cut short), else the reachable standby that has received the
// most WAL.
func (h *Service) mostAdvanced(ctx context.Context, c *registry.Cluster) (registry.Member, string, error) {
	var (
		best    registry.Member
		bestLSN string
		bestPos uint64
		found   bool
		errs    []error
	)
	for _, sp := range h.standbys(ctx, c, 2*time.Second) {
		if sp.err != nil {
			errs = append(errs, fmt.Errorf("standby %s: %w", sp.m.Name, sp.err))
			continue
		}
		if !sp.inRecovery {
			return sp.m, sp.lsn, nil
		}
		pos, err := parseLSN(sp.lsn)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || pos > bestPos {
			best, bestLSN, bestPos, found = sp.m, sp.lsn, pos, true
		}
	}
	if !found && len(errs) == 0 {
		return registry.Member{}, "", fmt.Errorf("cluster %s has no standby to promote", c.Name)
	}
	if !found {
		return registry.Member{}, "", fmt.Errorf("no healthy standby to promote: %w", errors.Join(errs...))
	}
	return best, bestLSN, nil
}

// standbyPosition is a standby of the registry as it answered: in
// recovery or not, and its WAL position (received), or why it did not.
type standbyPosition struct {
	m          registry.Member
	inRecovery bool
	lsn        string
	err        error
}

// standbys asks every member of c in role standby where it is, each within
// the given time, one after the other.
func (h *Service) standbys(ctx context.Context, c *registry.Cluster, within time.Duration) []standbyPosition {
	var out []standbyPosition
	for _, m := range c.Members {
		if m.Role != registry.RoleStandby {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, within)
		sp := standbyPosition{m: m}
		sp.inRecovery, sp.lsn, sp.err = h.received(pctx, c, m)
		cancel()
		out = append(out, sp)
	}
	return out
}

// received reports whether m is in recovery and the WAL position it has
// received (replayed, when it receives nothing), or its current position
// when it is no longer in recovery.
func (h *Service) received(ctx context.Context, c *registry.Cluster, m registry.Member) (bool, string, error) {
	conn, err := h.cfg.Connect(ctx, c, m, "postgres")
	if err != nil {
		return false, "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var (
		rec bool
		lsn string
	)
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery()
		THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text
		ELSE pg_current_wal_lsn()::text END`).Scan(&rec, &lsn)
	return rec, lsn, err
}

// parseLSN parses PostgreSQL's "X/Y" WAL position.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return h<<32 | l, nil
}

// Rejoin rebuilds a fenced former primary (or any standby) of cluster as a
// streaming standby of the current primary, from a fresh base backup, and
// records it as a standby. The primary cannot be rejoined (ErrPrecheck).
func (h *Service) Rejoin(ctx context.Context, cluster, member string) error {
	if err := registry.ValidateName("cluster", cluster); err != nil {
		return err
	}
	if err := registry.ValidateName("member", member); err != nil {
		return err
	}
	if h.cfg.Servers == nil {
		return fmt.Errorf("rejoin in cluster %s: %w", cluster, ErrNotSupported)
	}
	c, m, err := h.member(ctx, cluster, member)
	if err != nil {
		return err
	}
	p, ok := c.Primary()
	if !ok || m.Role == registry.RolePrimary || !c.Local {
		return fmt.Errorf("%w: %s is the primary of cluster %s, or the cluster has none, or its servers are not run here", ErrPrecheck, member, cluster)
	}
	if err := h.cfg.Servers.RebuildMember(ctx, cluster, member, p.Name); err != nil {
		return fmt.Errorf("rebuild %s: %w", member, err)
	}
	if err := h.cfg.Registry.SetMemberRole(ctx, cluster, member, registry.RoleStandby); err != nil {
		return err
	}
	if err := h.applySync(ctx, cluster, p.Name, ""); err != nil {
		return err
	}
	msg := fmt.Sprintf("member %s of cluster %s rebuilt as a standby of %s", member, cluster, p.Name)
	return h.cfg.Registry.AddEvent(ctx, registry.EventRejoined, cluster, msg, map[string]string{"member": member, "primary": p.Name})
}
