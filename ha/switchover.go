package ha

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"tenantry/registry"
	"tenantry/workflow"
)

// SwitchoverKind is the workflow kind of a switchover; its subject is the
// cluster. Switchovers and failovers of one cluster share the family
// FamilyHA, so only one runs at a time.
const (
	SwitchoverKind = "switchover"
	FamilyHA       = "cluster-ha"
)

// SwitchoverData is a switchover's persisted state.
type SwitchoverData struct {
	Cluster string `json:"cluster"`
	// From is the primary when the switchover started; To the standby it
	// promotes.
	From string `json:"from"`
	To   string `json:"to"`
	// Pausing are the tenants (and their epochs) the pause step is about to
	// pause: recorded first, so that a re-run after a crash recognises
	// its own pause.
	Pausing map[string]int64 `json:"pausing,omitempty"`
	// Paused are the tenants placed on the cluster's aliases, with the
	// epochs they were paused at.
	Paused   map[string]int64 `json:"paused,omitempty"`
	PausedAt time.Time        `json:"paused_at,omitzero"`
	// LSN is the primary's WAL position the standby replayed before the
	// primary was stopped.
	LSN      string `json:"lsn,omitempty"`
	Stopped  bool   `json:"stopped,omitempty"`
	Promoted bool   `json:"promoted,omitempty"`
	// PauseMS is how long the tenants were paused, from the pause to the
	// registry transaction that resumed them on the new primary; Parts
	// gives the ms since the pause began at the end of each of its parts
	// (acks, catchup, stop, promote, repoint).
	PauseMS  float64            `json:"pause_ms,omitempty"`
	Parts    map[string]float64 `json:"parts,omitempty"`
	Rejoined bool               `json:"rejoined,omitempty"`
	// Settings are an upgrade's (UpgradeKind): applied to To before the
	// switchover, to From before it rejoins.
	Settings map[string]string `json:"settings,omitempty"`
}

// lap records the time since the pause began, for one part of it.
func (d *SwitchoverData) lap(part string) {
	if d.Parts == nil {
		d.Parts = map[string]float64{}
	}
	d.Parts[part] = float64(time.Since(d.PausedAt).Microseconds()) / 1000
}

func (h *Service) switchoverDef() *workflow.Def {
	return &workflow.Def{
		Kind:   SwitchoverKind,
		Family: FamilyHA,
		Start:  "precheck",
		Steps: map[string]workflow.Step{
			"precheck": h.precheckStep,
			"pause":    h.pauseStep,
			"catchup":  h.catchupStep,
			"stop":     h.stopStep,
			"promote":  h.promoteStep,
			"repoint":  h.repointStep,
			"rejoin":   h.rejoinStep,
			"rollback": h.rollbackStep,
		},
		Rollback:    "rollback",
		MaxAttempts: 5,
		// Steps inside the pause retry quickly: tenants are waiting.
		Backoff: func(int) time.Duration { return 200 * time.Millisecond },
	}
}

// step decodes the data, runs fn and encodes the data again.
func step(r *workflow.Run, fn func(d *SwitchoverData) (string, error)) (string, error) {
	var d SwitchoverData
	if err := r.Decode(&d); err != nil {
		return "", workflow.Fail(err)
	}
	next, err := fn(&d)
	if eerr := r.Encode(d); eerr != nil && err == nil {
		err = eerr
	}
	return next, err
}

func save(ctx context.Context, r *workflow.Run, d *SwitchoverData) error {
	if err := r.Encode(d); err != nil {
		return err
	}
	return r.Save(ctx)
}

func (h *Service) precheckStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		if err := h.check(ctx, d); err != nil {
			return "", workflow.Fail(err)
		}
		// A checkpoint now leaves the shutdown checkpoint inside the pause
		// little to write.
		if err := h.checkpoint(ctx, d); err != nil {
			return "", err
		}
		return "pause", nil
	})
}

// check validates a switchover of d.Cluster and fills in From and To
// (the chosen standby when To is empty): the cluster has a primary, the
// standby is in recovery, streaming, and behind by at most MaxLagBytes, and
// no tenant on the cluster's aliases is paused (a move inside its flip).
// Its errors wrap ErrPrecheck (or registry.ErrNotFound).
func (h *Service) check(ctx context.Context, d *SwitchoverData) error {
	if h.cfg.Servers == nil {
		return fmt.Errorf("switchover of cluster %s: its servers are not run by this control plane: %w", d.Cluster, ErrNotSupported)
	}
	snap, err := h.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	c, ok := snap.Clusters[d.Cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", d.Cluster, registry.ErrNotFound)
	}
	if !c.Local {
		return fmt.Errorf("switchover of cluster %s: it is not run by this control plane: %w", d.Cluster, ErrNotSupported)
	}
	p, ok := c.Primary()
	if !ok {
		return fmt.Errorf("%w: cluster %s has no primary", ErrPrecheck, d.Cluster)
	}
	d.From = p.Name
	for _, t := range tenantsOn(snap, d.Cluster) {
		if t.State != registry.StateActive && t.State != registry.StateFenced {
			return fmt.Errorf("%w: tenant %s on alias %s is %s (a move inside its flip?); try again when it is active",
				ErrPrecheck, t.ID, t.Alias, t.State)
		}
	}
	lags, err := h.standbyLags(ctx, c, p)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPrecheck, err)
	}
	if d.To == "" {
		best := int64(-1)
		for name, lag := range lags {
			if lag.err == nil && (best < 0 || lag.bytes < best || lag.bytes == best && name < d.To) {
				best, d.To = lag.bytes, name
			}
		}
		if d.To == "" {
			var why []string
			for _, name := range slices.Sorted(maps.Keys(lags)) {
				why = append(why, name+": "+lags[name].err.Error())
			}
			if len(why) == 0 {
				return fmt.Errorf("%w: cluster %s has no standby (add one: tenantry cluster add-standby %s)",
					ErrPrecheck, d.Cluster, d.Cluster)
			}
			return fmt.Errorf("%w: cluster %s has no streaming standby (%s)", ErrPrecheck, d.Cluster, strings.Join(why, "; "))
		}
	}
	lag, ok := lags[d.To]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s is not a standby of cluster %s", ErrPrecheck, d.To, d.Cluster)
	case lag.err != nil:
		return fmt.Errorf("%w: standby %s: %v", ErrPrecheck, d.To, lag.err)
	case lag.bytes > h.cfg.MaxLagBytes:
		return fmt.Errorf("%w: standby %s is %d bytes behind (at most %d)", ErrPrecheck, d.To, lag.bytes, h.cfg.MaxLagBytes)
	}
	return nil
}

type standbyLag struct {
	bytes int64
	err   error
}

// standbyLags probes every standby of c: in recovery, its walreceiver
// streaming, and how many bytes of p's WAL it has still to replay.
func (h *Service) standbyLags(ctx context.Context, c *registry.Cluster, p registry.Member) (map[string]standbyLag, error) {
	conn, err := h.cfg.Connect(ctx, c, p, "postgres")
	if err != nil {
		return nil, fmt.Errorf("primary %s: %w", p.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var cur string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		return nil, fmt.Errorf("primary %s: %w", p.Name, err)
	}
	out := map[string]standbyLag{}
	for _, m := range c.Members {
		if m.Role == registry.RoleStandby {
			out[m.Name] = h.standbyLag(ctx, c, m, cur)
		}
	}
	return out, nil
}

func (h *Service) standbyLag(ctx context.Context, c *registry.Cluster, m registry.Member, primaryLSN string) standbyLag {
	conn, err := h.cfg.Connect(ctx, c, m, "postgres")
	if err != nil {
		return standbyLag{err: err}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var (
		rec       bool
		streaming bool
		lag       int64
	)
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
		COALESCE(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint`, primaryLSN).Scan(&rec, &streaming, &lag)
	switch {
	case err != nil:
		return standbyLag{err: err}
	case !rec:
		return standbyLag{err: errors.New("not in recovery")}
	case !streaming:
		return standbyLag{err: errors.New("not streaming from the primary")}
	}
	return standbyLag{bytes: max(lag, 0)}
}

func (h *Service) checkpoint(ctx context.Context, d *SwitchoverData) error {
	c, from, _, err := h.members(ctx, d)
	if err != nil {
		return err
	}
	conn, err := h.cfg.Connect(ctx, c, from, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint on %s: %w", d.From, err)
	}
	return nil
}

// tenantsOn lists the tenants placed on the aliases of cluster.
func tenantsOn(snap *registry.Snapshot, cluster string) []*registry.Tenant {
	var out []*registry.Tenant
	for _, t := range snap.Tenants {
		if a, ok := snap.Aliases[t.Alias]; ok && a.Cluster == cluster {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *registry.Tenant) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// pauseStep pauses every active tenant on the cluster's aliases in one
// registry transaction and waits for the routers' acknowledgements: from
// then on no write of theirs runs on the primary, new transactions wait in
// the routers' buffers (a read-only one still running is ended by the stop
// and run again by its router after the resume; see route.Router.ReadTx).
func (h *Service) pauseStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		if d.Paused == nil {
			if err := h.pause(ctx, r, d); err != nil {
				return "", err
			}
		}
		actx, cancel := context.WithTimeout(ctx, h.cfg.AckTimeout)
		defer cancel()
		for _, id := range slices.Sorted(maps.Keys(d.Paused)) {
			if err := h.cfg.Registry.WaitAcks(actx, id, d.Paused[id], h.cfg.RouterLive); err != nil {
				return "", workflow.Fail(fmt.Errorf("routers' acknowledgements of the pause: %w", err))
			}
		}
		d.lap("acks")
		if err := h.cfg.Hook(ctx, "switchover:paused"); err != nil {
			return "", err
		}
		return "catchup", nil
	})
}

func (h *Service) pause(ctx context.Context, r *workflow.Run, d *SwitchoverData) error {
	snap, err := h.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	if d.Pausing != nil {
		// A previous run may have paused them and stopped before saving.
		mine := map[string]int64{}
		for id, e := range d.Pausing {
			if t, ok := snap.Tenants[id]; ok && t.State == registry.StatePaused && t.Epoch == e+1 {
				mine[id] = t.Epoch
			}
		}
		if len(mine) == len(d.Pausing) {
			d.Paused = mine
			return save(ctx, r, d)
		}
		if len(mine) > 0 {
			return workflow.Fail(fmt.Errorf("pause: only part of the tenants %v are paused", slices.Sorted(maps.Keys(d.Pausing))))
		}
	}
	want := map[string]int64{}
	for _, t := range tenantsOn(snap, d.Cluster) {
		if t.State == registry.StateActive {
			want[t.ID] = t.Epoch
		} else if t.State == registry.StatePaused {
			return workflow.Fail(fmt.Errorf("%w: tenant %s was paused by someone else", ErrPrecheck, t.ID))
		}
	}
	d.Pausing = want
	if err := save(ctx, r, d); err != nil {
		return err
	}
	start := time.Now()
	paused, err := h.cfg.Registry.PauseTenants(ctx, want)
	if errors.Is(err, registry.ErrConflict) {
		d.Pausing = nil // nothing changed: look again
		return err
	}
	if err != nil {
		return err
	}
	d.Paused, d.PausedAt = paused, start
	return save(ctx, r, d)
}

// catchupStep waits until the standby has replayed the primary's current
// WAL position (the tenants are paused, so it stops moving but for
// background writes), so that the clean stop that follows is short.
func (h *Service) catchupStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		if d.Stopped {
			return "stop", nil
		}
		c, from, to, err := h.members(ctx, d)
		if err != nil {
			return "", err
		}
		pc, err := h.cfg.Connect(ctx, c, from, "postgres")
		if err != nil {
			return "", err
		}
		err = pc.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&d.LSN)
		pc.Close(context.WithoutCancel(ctx))
		if err != nil {
			return "", err
		}
		sc, err := h.cfg.Connect(ctx, c, to, "postgres")
		if err != nil {
			return "", err
		}
		defer sc.Close(context.WithoutCancel(ctx))
		wctx, cancel := context.WithTimeout(ctx, h.cfg.CatchupTimeout)
		defer cancel()
		for {
			var done bool
			if err := sc.QueryRow(wctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", d.LSN).Scan(&done); err != nil {
				if wctx.Err() != nil && ctx.Err() == nil {
					return "", workflow.Fail(fmt.Errorf("standby %s did not replay %s within %s", d.To, d.LSN, h.cfg.CatchupTimeout))
				}
				return "", err
			}
			if done {
				break
			}
			select {
			case <-wctx.Done():
				if ctx.Err() != nil {
					return "", ctx.Err()
				}
				return "", workflow.Fail(fmt.Errorf("standby %s did not replay %s within %s", d.To, d.LSN, h.cfg.CatchupTimeout))
			case <-time.After(5 * time.Millisecond):
			}
		}
		d.lap("catchup")
		return "stop", nil
	})
}

// stopStep shuts the primary down cleanly: PostgreSQL's walsenders send
// everything, the shutdown checkpoint included, to the standbys before it
// exits, so the standby holds every commit and the old primary's WAL does
// not diverge from it (it can follow the new primary as it is).
func (h *Service) stopStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		d.Stopped = true // before acting: a rollback then starts it again
		if err := save(ctx, r, d); err != nil {
			return "", err
		}
		if err := h.cfg.Servers.StopMember(ctx, d.Cluster, d.From); err != nil {
			return "", err
		}
		d.lap("stop")
		if err := h.cfg.Hook(ctx, "switchover:stopped"); err != nil {
			return "", err
		}
		return "promote", nil
	})
}

func (h *Service) promoteStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		d.Promoted = true // before acting: from here the only way is forward
		if err := save(ctx, r, d); err != nil {
			return "", err
		}
		if err := h.cfg.Servers.PromoteMember(ctx, d.Cluster, d.To); err != nil {
			return "", err
		}
		if err := h.clearSync(ctx, d.Cluster, d.To); err != nil {
			return "", err
		}
		d.lap("promote")
		if err := h.cfg.Hook(ctx, "switchover:promoted"); err != nil {
			return "", err
		}
		return "repoint", nil
	})
}

// repointStep names the promoted standby the primary and resumes the
// tenants, in one registry transaction.
func (h *Service) repointStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		if err := h.cfg.Registry.Switch(ctx, d.Cluster, d.To, registry.RoleStandby, d.Paused); err != nil {
			return "", err
		}
		d.lap("repoint")
		d.PauseMS = d.Parts["repoint"]
		_ = r.Info(ctx, fmt.Sprintf("cluster %s: primary is now %s; tenants paused %.1f ms", d.Cluster, d.To, d.PauseMS), d.Parts)
		if err := h.cfg.Hook(ctx, "switchover:repointed"); err != nil {
			return "", err
		}
		return "rejoin", nil
	})
}

// rejoinStep makes the old primary a streaming standby of the new one,
// drops the logical slots it carried (dropStaleSlots), and records the
// switchover in the registry's event log.
func (h *Service) rejoinStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		if len(d.Settings) > 0 {
			// Before it starts as a standby: a standby needs settings such
			// as max_connections at least as high as its primary's.
			if err := h.cfg.Servers.ConfigureMember(ctx, d.Cluster, d.From, quoted(d.Settings)); err != nil {
				return "", err
			}
		}
		if err := h.cfg.Servers.FollowMember(ctx, d.Cluster, d.From, d.To); err != nil {
			return "", err
		}
		if dropped, err := h.dropStaleSlots(ctx, d.Cluster, d.From); err != nil {
			return "", err
		} else if len(dropped) > 0 {
			h.log.Info("stale logical slots dropped on the former primary", "cluster", d.Cluster, "member", d.From, "slots", dropped)
		}
		if err := h.followNewPrimary(ctx, d.Cluster, d.To, d.From); err != nil {
			return "", err
		}
		if err := h.applySync(ctx, d.Cluster, d.To, ""); err != nil {
			return "", err
		}
		d.Rejoined = true
		msg := fmt.Sprintf("switchover of cluster %s: %s -> %s, tenants paused %.1f ms", d.Cluster, d.From, d.To, d.PauseMS)
		if err := h.cfg.Registry.AddEvent(ctx, registry.EventSwitchover, d.Cluster, msg, d); err != nil {
			return "", err
		}
		h.log.Info("switchover done", "cluster", d.Cluster, "from", d.From, "to", d.To, "pause_ms", d.PauseMS)
		if r.Kind == UpgradeKind {
			return "configure-others", nil
		}
		return "", nil
	})
}

// followNewPrimary makes every standby of cluster but except stream from
// primary (they streamed from the old primary; none is ahead of the new
// one).
func (h *Service) followNewPrimary(ctx context.Context, cluster, primary, except string) error {
	c, err := h.cluster(ctx, cluster)
	if err != nil {
		return err
	}
	for _, m := range c.Members {
		if m.Role != registry.RoleStandby || m.Name == except || m.Name == primary {
			continue
		}
		if err := h.cfg.Servers.FollowMember(ctx, cluster, m.Name, primary); err != nil {
			return fmt.Errorf("standby %s to follow %s: %w", m.Name, primary, err)
		}
	}
	return nil
}

// rollbackStep undoes a switchover that failed before the promotion: the
// old primary started again, the tenants resumed on it. After the
// promotion there is no way back: it repoints to the new primary instead
// (the old one is left stopped, to be rejoined).
func (h *Service) rollbackStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		if d.Promoted {
			if err := h.cfg.Registry.Switch(ctx, d.Cluster, d.To, registry.RoleStandby, d.Paused); err != nil {
				return "", err
			}
			_ = r.Info(ctx, fmt.Sprintf("cluster %s: %s promoted and repointed; %s was not rejoined", d.Cluster, d.To, d.From), nil)
			return "", nil
		}
		if d.Stopped {
			if err := h.cfg.Servers.StartMember(ctx, d.Cluster, d.From); err != nil {
				return "", err
			}
		}
		if len(d.Paused) > 0 {
			if err := h.cfg.Registry.ResumeTenants(ctx, d.Paused); err != nil {
				return "", err
			}
		}
		return "", nil
	})
}

// members returns the cluster and its From and To members.
func (h *Service) members(ctx context.Context, d *SwitchoverData) (*registry.Cluster, registry.Member, registry.Member, error) {
	snap, err := h.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return nil, registry.Member{}, registry.Member{}, err
	}
	c, ok := snap.Clusters[d.Cluster]
	if !ok {
		return nil, registry.Member{}, registry.Member{}, workflow.Fail(fmt.Errorf("cluster %q: %w", d.Cluster, registry.ErrNotFound))
	}
	from, ok1 := c.Member(d.From)
	to, ok2 := c.Member(d.To)
	if !ok1 || !ok2 {
		return nil, registry.Member{}, registry.Member{}, workflow.Fail(fmt.Errorf("cluster %s: members %s and %s: %w", d.Cluster, d.From, d.To, registry.ErrNotFound))
	}
	return c, from, to, nil
}
