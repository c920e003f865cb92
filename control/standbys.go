package control

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"tenantry/ha"
	"tenantry/registry"
)

// StandbyProvisioner adds and removes streaming standbys of clusters the
// Provisioner made (the local platform implements it with localpg). A
// Provisioner that does not implement it makes AddStandby and RemoveStandby
// answer ErrNotSupported.
type StandbyProvisioner interface {
	// AddStandby makes, starts and returns a new streaming standby of
	// member primary of cluster, in zone ("" = the provisioner's default),
	// with role standby. On failure it leaves nothing behind.
	AddStandby(ctx context.Context, cluster, primary, zone string) (registry.Member, error)
	// RemoveStandby stops and removes a member; ErrNotFound if there is no
	// such member.
	RemoveStandby(ctx context.Context, cluster, member string) error
}

// AddStandbyRequest asks for a new standby of a cluster in Zone.
type AddStandbyRequest struct {
	Zone string `json:"zone,omitempty"`
}

// AddStandby makes a new streaming standby of cluster's primary (local
// clusters: pg_basebackup) and records it as a member. A standby that
// cannot be recorded is removed again.
func (s *Service) AddStandby(ctx context.Context, cluster string, req AddStandbyRequest) (*registry.Member, error) {
	if err := registry.ValidateName("cluster", cluster); err != nil {
		return nil, err
	}
	if req.Zone != "" {
		if err := registry.ValidateName("zone", req.Zone); err != nil {
			return nil, err
		}
	}
	sp, ok := s.cfg.Provisioner.(StandbyProvisioner)
	if !ok {
		return nil, fmt.Errorf("adding standbys is available for local clusters only: %w", ErrNotSupported)
	}
	s.provisioning.Lock()
	defer s.provisioning.Unlock()
	c, err := s.cluster(ctx, cluster)
	if err != nil {
		return nil, err
	}
	if !c.Local {
		return nil, fmt.Errorf("cluster %s is not run by this control plane; add its standbys where it is run: %w", cluster, ErrNotSupported)
	}
	if n := len(c.Members); n > MaxStandbys {
		return nil, fmt.Errorf("%w: cluster %s has %d members; at most %d standbys", registry.ErrInvalid, cluster, n, MaxStandbys)
	}
	p, ok := c.Primary()
	if !ok {
		return nil, fmt.Errorf("cluster %s has no primary to copy: %w", cluster, registry.ErrConflict)
	}
	m, err := sp.AddStandby(ctx, cluster, p.Name, req.Zone)
	if err != nil {
		return nil, fmt.Errorf("add standby to cluster %s: %w", cluster, err)
	}
	if err := s.cfg.Store.AddMember(ctx, cluster, m); err != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if uerr := sp.RemoveStandby(uctx, cluster, m.Name); uerr != nil {
			return nil, errors.Join(err, fmt.Errorf("undo: remove standby %s: %w", m.Name, uerr))
		}
		return nil, err
	}
	s.log.Info("standby added", "cluster", cluster, "member", m.Name, "zone", m.Zone)
	if c.Sync {
		if err := s.applySync(ctx, cluster); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// RemoveStandby removes a standby (or a fenced former primary) of a
// cluster: first from the registry, so nothing chooses it any more, then
// its server. The primary cannot be removed (ErrConflict).
func (s *Service) RemoveStandby(ctx context.Context, cluster, member string) error {
	if err := registry.ValidateName("cluster", cluster); err != nil {
		return err
	}
	if err := registry.ValidateName("member", member); err != nil {
		return err
	}
	sp, ok := s.cfg.Provisioner.(StandbyProvisioner)
	if !ok {
		return fmt.Errorf("removing standbys is available for local clusters only: %w", ErrNotSupported)
	}
	s.provisioning.Lock()
	defer s.provisioning.Unlock()
	c, err := s.cluster(ctx, cluster)
	if err != nil {
		return err
	}
	m, ok := c.Member(member)
	if !ok {
		return fmt.Errorf("member %s of cluster %s: %w", member, cluster, registry.ErrNotFound)
	}
	if m.Role == registry.RolePrimary {
		return fmt.Errorf("%w: %s is the primary of cluster %s; switch over first", registry.ErrConflict, member, cluster)
	}
	if !c.Local {
		return fmt.Errorf("cluster %s is not run by this control plane: %w", cluster, ErrNotSupported)
	}
	if err := s.cfg.Store.RemoveMember(ctx, cluster, member); err != nil {
		return err
	}
	if err := sp.RemoveStandby(ctx, cluster, member); err != nil {
		return fmt.Errorf("remove standby %s (no longer in the registry): %w", member, err)
	}
	s.log.Info("standby removed", "cluster", cluster, "member", member)
	if c.Sync {
		return s.applySync(ctx, cluster)
	}
	return nil
}

// SetSyncRequest turns a cluster's synchronous replication on or off.
type SetSyncRequest struct {
	Sync bool `json:"sync"`
}

// SetSync records whether cluster replicates synchronously and applies it
// to its primary at once (synchronous_standby_names, a reload): on, a
// commit is acknowledged once one of the standbys has flushed it; a
// cluster with no standby commits asynchronously until one is added
// (event cluster.sync_degraded). Switchovers and failovers apply it to the
// new primary. Clusters this control plane does not run are refused
// (ErrNotSupported): their HA manager owns the setting.
func (s *Service) SetSync(ctx context.Context, cluster string, req SetSyncRequest) (*registry.Cluster, error) {
	if err := registry.ValidateName("cluster", cluster); err != nil {
		return nil, err
	}
	s.provisioning.Lock()
	defer s.provisioning.Unlock()
	c, err := s.cluster(ctx, cluster)
	if err != nil {
		return nil, err
	}
	if !c.Local {
		return nil, fmt.Errorf("cluster %s is not run by this control plane; its HA manager sets its synchronous replication: %w", cluster, ErrNotSupported)
	}
	if err := s.cfg.Store.SetClusterSync(ctx, cluster, req.Sync); err != nil {
		return nil, err
	}
	if err := s.applySync(ctx, cluster); err != nil {
		return nil, err
	}
	s.log.Info("cluster replication set", "cluster", cluster, "sync", req.Sync)
	return s.cluster(ctx, cluster)
}

// applySync sets the cluster's synchronous_standby_names on its primary
// as the registry has the cluster now.
func (s *Service) applySync(ctx context.Context, cluster string) error {
	c, err := s.cluster(ctx, cluster)
	if err != nil {
		return err
	}
	p, ok := c.Primary()
	if !ok {
		return fmt.Errorf("cluster %s has no primary: %w", cluster, registry.ErrConflict)
	}
	conn, err := s.AdminConnect(ctx, c, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return ha.ApplySync(ctx, conn, s.cfg.Store, c, p.Name, "")
}

// EnsureStandbys adds standbys to cluster until it has want members in
// role standby (fenced members do not count); a move that completes on an
// alias asks it for the standbys the alias wants. A cluster this control
// plane does not run is left as it is (logged): its standbys are made
// where it is run.
func (s *Service) EnsureStandbys(ctx context.Context, cluster string, want int) error {
	c, err := s.cluster(ctx, cluster)
	if err != nil {
		return err
	}
	if !c.Local {
		s.log.Warn("cluster is not run by this control plane; its standbys are not added here", "cluster", cluster, "want", want)
		return nil
	}
	have := 0
	for _, m := range c.Members {
		if m.Role == registry.RoleStandby {
			have++
		}
	}
	for ; have < want; have++ {
		if _, err := s.AddStandby(ctx, cluster, AddStandbyRequest{}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) cluster(ctx context.Context, name string) (*registry.Cluster, error) {
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	c, ok := snap.Clusters[name]
	if !ok {
		return nil, fmt.Errorf("cluster %q: %w", name, registry.ErrNotFound)
	}
	return c, nil
}

// ClusterStatus is a cluster as `cluster list/show` shows it: each member
// with what a probe found.
type ClusterStatus struct {
	Name    string         `json:"name"`
	Local   bool           `json:"local"`
	Members []MemberStatus `json:"members"`
}

// Follows reports whether primary is the cluster's only primary, in the
// registry and in fact (not in recovery), and every other member a standby
// in recovery that streams from it (the primary's walsender for it is
// streaming). An empty primary means the member the registry names.
func (s *ClusterStatus) Follows(primary string) bool {
	for _, m := range s.Members {
		if primary == "" && m.Role == registry.RolePrimary {
			primary = m.Name
		}
	}
	if primary == "" {
		return false
	}
	for _, m := range s.Members {
		isPrimary := m.Name == primary
		if (m.Role == registry.RolePrimary) != isPrimary || m.InRecovery == nil || *m.InRecovery == isPrimary ||
			!isPrimary && m.Replication != "streaming" {
			return false
		}
	}
	return true
}

// MemberStatus is a member with its probe: reachable, in recovery or not,
// and for a standby its replication as its primary reports it.
type MemberStatus struct {
	registry.Member
	Reachable  bool  `json:"reachable"`
	InRecovery *bool `json:"in_recovery,omitempty"`
	// Replication is the standby's walsender state on the primary
	// ("streaming", "catchup", ...); empty when the primary has no
	// walsender for it (not connected).
	Replication string `json:"replication,omitempty"`
	// LagBytes is the WAL the standby has still to replay: the primary's
	// current LSN minus the standby's replay LSN.
	LagBytes *int64 `json:"lag_bytes,omitempty"`
	// LagSeconds is the primary's replay_lag for the standby (0 when it has
	// replayed everything).
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// probeTimeout bounds one member's probe.
const probeTimeout = 3 * time.Second

// ClusterStatus probes every member of a cluster at once (reachability,
// pg_is_in_recovery) and reads the primary's pg_stat_replication for each
// standby's lag. Unreachable members are reported, not an error.
func (s *Service) ClusterStatus(ctx context.Context, name string) (*ClusterStatus, error) {
	if err := registry.ValidateName("cluster", name); err != nil {
		return nil, err
	}
	c, err := s.cluster(ctx, name)
	if err != nil {
		return nil, err
	}
	st := &ClusterStatus{Name: c.Name, Local: c.Local, Members: make([]MemberStatus, len(c.Members))}
	var wg sync.WaitGroup
	for i, m := range c.Members {
		st.Members[i].Member = m
		wg.Add(1)
		go func(ms *MemberStatus) {
			defer wg.Done()
			s.probe(ctx, c, ms)
		}(&st.Members[i])
	}
	wg.Wait()
	for _, m := range st.Members {
		if m.Role == registry.RolePrimary && m.Reachable {
			s.replication(ctx, c, st)
			break
		}
	}
	return st, nil
}

func (s *Service) probe(ctx context.Context, c *registry.Cluster, ms *MemberStatus) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := s.ConnectMember(pctx, c, ms.Member, "postgres")
	if err != nil {
		ms.Error = err.Error()
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var rec bool
	if err := conn.QueryRow(pctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
		ms.Error = err.Error()
		return
	}
	ms.Reachable, ms.InRecovery = true, &rec
}

// replication fills in the standbys' lag from the primary's
// pg_stat_replication, whose application_name is the standby's member name.
func (s *Service) replication(ctx context.Context, c *registry.Cluster, st *ClusterStatus) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := s.AdminConnect(pctx, c, "postgres")
	if err != nil {
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(pctx, `SELECT application_name, state,
		pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
		COALESCE(extract(epoch FROM replay_lag), 0)::float8
		FROM pg_stat_replication WHERE replay_lsn IS NOT NULL`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name, state string
			lag         int64
			secs        float64
		)
		if err := rows.Scan(&name, &state, &lag, &secs); err != nil {
			return
		}
		for i := range st.Members {
			if m := &st.Members[i]; m.Name == name && m.Role != registry.RolePrimary {
				m.Replication, m.LagBytes, m.LagSeconds = state, &lag, &secs
			}
		}
	}
}
