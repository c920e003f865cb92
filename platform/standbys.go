package platform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"tenantry/control"
	"tenantry/ha"
	"tenantry/localpg"
	"tenantry/registry"
)

// Local runs standbys and switches members' roles for the control plane
// and the ha workflows.
var (
	_ control.StandbyProvisioner = (*Local)(nil)
	_ ha.Servers                 = (*Local)(nil)
)

// DefaultZone is the zone of local members made without one.
const DefaultZone = "local"

// AddStandby makes a new streaming standby of member primary of a local
// cluster (pg_basebackup from it), named with the first free
// control.MemberName index, in zone (default DefaultZone), starts it and
// records it in the data directory's state. On failure nothing of it is
// left behind.
func (l *Local) AddStandby(ctx context.Context, cluster, primary, zone string) (registry.Member, error) {
	if zone == "" {
		zone = DefaultZone
	}
	p, err := l.member(cluster, primary)
	if err != nil {
		return registry.Member{}, err
	}
	l.mu.Lock()
	taken := map[string]bool{}
	for _, m := range l.clusters[cluster] {
		taken[m.Name] = true
	}
	l.mu.Unlock()
	var name, dir string
	for i := 1; ; i++ {
		name = control.MemberName(cluster, i)
		dir = filepath.Join(l.Dir, "clusters", name)
		if _, err := os.Stat(dir); !taken[name] && errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err := registry.ValidateName("member", name); err != nil {
		return registry.Member{}, err
	}
	l.log.Info("adding standby", "cluster", cluster, "member", name, "primary", primary, "zone", zone)
	s, err := p.AddStandby(ctx, dir, name)
	if err != nil {
		if s != nil {
			_ = s.Destroy(context.WithoutCancel(ctx))
		} else {
			_ = os.RemoveAll(dir)
		}
		return registry.Member{}, err
	}
	if err := l.setMembers(cluster, func(ms []*localpg.Cluster) []*localpg.Cluster { return append(ms, s) }); err != nil {
		_ = s.Destroy(context.WithoutCancel(ctx))
		return registry.Member{}, err
	}
	return registry.Member{Name: s.Name, Host: s.Host, Port: s.Port, Zone: zone, Role: registry.RoleStandby, DataDir: s.Dir}, nil
}

// RemoveStandby stops and removes member of a local cluster and forgets it.
// The caller makes sure it is not the primary.
func (l *Local) RemoveStandby(ctx context.Context, cluster, member string) error {
	m, err := l.member(cluster, member)
	if err != nil {
		return err
	}
	if err := m.Destroy(ctx); err != nil {
		return fmt.Errorf("remove %s: %w", member, err)
	}
	return l.setMembers(cluster, func(ms []*localpg.Cluster) []*localpg.Cluster {
		return slices.DeleteFunc(ms, func(c *localpg.Cluster) bool { return c.Name == member })
	})
}

// StopMember shuts a member down cleanly (a fast shutdown: its walsenders
// send every WAL record, the shutdown checkpoint included, to connected
// standbys before it exits).
func (l *Local) StopMember(ctx context.Context, cluster, member string) error {
	m, err := l.member(cluster, member)
	if err != nil {
		return err
	}
	return m.Stop(ctx)
}

// StartMember starts a member if it is not running.
func (l *Local) StartMember(ctx context.Context, cluster, member string) error {
	m, err := l.member(cluster, member)
	if err != nil {
		return err
	}
	if m.Running() {
		return nil
	}
	return m.Start(ctx)
}

// PromoteMember promotes a standby and waits until it accepts writes. A
// member already promoted is left as it is.
func (l *Local) PromoteMember(ctx context.Context, cluster, member string) error {
	m, err := l.member(cluster, member)
	if err != nil {
		return err
	}
	if m.IsPrimary() {
		return nil
	}
	return m.Promote(ctx)
}

// FollowMember makes a member that was shut down cleanly before primary was
// promoted (a switchover's old primary) a streaming standby of primary, and
// starts it. A member that already follows primary is only started.
func (l *Local) FollowMember(ctx context.Context, cluster, member, primary string) error {
	m, p, err := l.memberAndPrimary(cluster, member, primary)
	if err != nil {
		return err
	}
	if m.Primary == p.Port {
		if m.Running() {
			return nil
		}
		return m.Start(ctx)
	}
	if m.Running() {
		if err := m.Stop(ctx); err != nil {
			return err
		}
	}
	return m.Follow(ctx, p)
}

// member returns a member of a local cluster; ErrNotFound if there is none
// of that name.
func (l *Local) member(cluster, name string) (*localpg.Cluster, error) {
	for _, m := range l.Cluster(cluster) {
		if m.Name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("member %s of local cluster %s: %w", name, cluster, registry.ErrNotFound)
}

// memberAndPrimary returns two members of a local cluster.
func (l *Local) memberAndPrimary(cluster, member, primary string) (*localpg.Cluster, *localpg.Cluster, error) {
	m, err := l.member(cluster, member)
	if err != nil {
		return nil, nil, err
	}
	p, err := l.member(cluster, primary)
	return m, p, err
}

// setMembers replaces a cluster's members with edit's result and saves the
// state; on a failed save the members stay as they were.
func (l *Local) setMembers(cluster string, edit func([]*localpg.Cluster) []*localpg.Cluster) error {
	l.mu.Lock()
	before := l.clusters[cluster]
	prevDirs := l.State.Clusters[cluster]
	after := edit(slices.Clone(before))
	dirs := make([]string, len(after))
	for i, m := range after {
		dirs[i] = m.Dir
	}
	l.clusters[cluster] = after
	l.State.Clusters[cluster] = dirs
	l.mu.Unlock()
	if err := l.Save(); err != nil {
		l.mu.Lock()
		l.clusters[cluster] = before
		l.State.Clusters[cluster] = prevDirs
		l.mu.Unlock()
		return err
	}
	return nil
}

// RebuildMember replaces a member's data with a fresh base backup of
// primary and starts it as primary's streaming standby, on its own port:
// how a fenced former primary, whose WAL may have diverged, rejoins.
func (l *Local) RebuildMember(ctx context.Context, cluster, member, primary string) error {
	m, p, err := l.memberAndPrimary(cluster, member, primary)
	if err != nil {
		return err
	}
	l.log.Info("rebuilding member as a standby", "cluster", cluster, "member", member, "primary", primary)
	return m.Rebuild(ctx, p)
}

// KillMember kills a member's server with SIGKILL, as a crash would
// (failover tests and benchmarks).
func (l *Local) KillMember(cluster, member string) error {
	m, err := l.member(cluster, member)
	if err != nil {
		return err
	}
	return m.Kill()
}

// ConfigureMember writes settings into a member's postgresql.conf and, if
// it runs, restarts it so that they take effect; a stopped member takes
// them at its next start.
func (l *Local) ConfigureMember(ctx context.Context, cluster, member string, settings map[string]string) error {
	m, err := l.member(cluster, member)
	if err != nil {
		return err
	}
	if err := m.Configure(settings); err != nil {
		return err
	}
	if !m.Running() {
		return nil
	}
	return m.Restart(ctx)
}
