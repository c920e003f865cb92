// Package ha keeps a cluster's primary serving: the switchover workflow
// (planned: pause the cluster's tenants, let the chosen standby replay
// everything, stop the primary cleanly, promote the standby, repoint and
// resume in one registry transaction, rejoin the old primary as a
// standby). The control plane registers it with its workflow runner and
// serves it through its API.
package ha

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/registry"
)

// Servers starts, stops and changes the roles of members' servers (the
// local platform implements it with localpg). Every method is idempotent:
// stopping a stopped member, promoting a primary or making a member follow
// the primary it already follows succeeds at once. ErrNotFound when the
// member is unknown.
type Servers interface {
	// StopMember shuts a member down cleanly: every WAL record, the
	// shutdown checkpoint included, reaches its connected standbys first.
	StopMember(ctx context.Context, cluster, member string) error
	// StartMember starts a stopped member.
	StartMember(ctx context.Context, cluster, member string) error
	// PromoteMember ends recovery on a standby and returns once it accepts
	// writes.
	PromoteMember(ctx context.Context, cluster, member string) error
	// FollowMember makes a member that was stopped cleanly before primary
	// was promoted a streaming standby of primary, and starts it.
	FollowMember(ctx context.Context, cluster, member, primary string) error
	// RebuildMember replaces a member's data with a fresh base backup of
	// primary and starts it as primary's streaming standby (a fenced
	// former primary, whose WAL may have diverged).
	RebuildMember(ctx context.Context, cluster, member, primary string) error
	// ConfigureMember writes settings (values quoted for postgresql.conf)
	// and restarts the member if it runs; a stopped member takes them at
	// its next start.
	ConfigureMember(ctx context.Context, cluster, member string, settings map[string]string) error
}

// Registry is the part of the registry ha reads and writes;
// *registry.Store implements it.
type Registry interface {
	Snapshot(ctx context.Context) (*registry.Snapshot, error)
	PauseTenants(ctx context.Context, want map[string]int64) (map[string]int64, error)
	PauseForFailover(ctx context.Context, cluster string, want map[string]int64) (map[string]int64, error)
	ResumeTenants(ctx context.Context, resume map[string]int64) error
	WaitAcks(ctx context.Context, tenant string, epoch int64, within time.Duration) error
	Switch(ctx context.Context, cluster, newPrimary string, oldRole registry.Role, resume map[string]int64) error
	FollowDone(ctx context.Context, cluster string) error
	SetMemberRole(ctx context.Context, cluster, member string, role registry.Role) error
	AddEvent(ctx context.Context, kind, subject, message string, data any) error
}

// Connector opens an admin connection to database db on member m of
// cluster c.
type Connector func(ctx context.Context, c *registry.Cluster, m registry.Member, db string) (*pgx.Conn, error)

var _ Registry = (*registry.Store)(nil)

// Errors callers branch on.
var (
	// ErrPrecheck: the switchover was refused before anything changed.
	ErrPrecheck = errors.New("switchover pre-check failed")
	// ErrNotSupported: the cluster's servers are not run by this control
	// plane (no Servers), so it cannot stop or promote them.
	ErrNotSupported = errors.New("not supported")
)

// Config configures the ha workflows. Zero values mean the documented
// defaults.
type Config struct {
	Registry Registry // required
	Connect  Connector
	// Servers runs local members; nil means switchover is not supported.
	Servers Servers
	// AckTimeout bounds the wait for routers to acknowledge the pause;
	// default 5 s.
	AckTimeout time.Duration
	// RouterLive: routers with a heartbeat this recent must acknowledge;
	// default 5 s.
	RouterLive time.Duration
	// CatchupTimeout bounds the wait for the standby to replay the
	// primary's last LSN inside the pause; default 10 s.
	CatchupTimeout time.Duration
	// MaxLagBytes is the largest replay lag a standby may have when a
	// switchover starts; default 16 MiB.
	MaxLagBytes int64
	Logger      *slog.Logger
	// Hook, when set, is called at named points inside a switchover
	// ("switchover:paused", "switchover:stopped", "switchover:promoted",
	// "switchover:repointed") and a failover ("failover:paused",
	// "failover:promoted", "failover:repointed"); an error fails the step
	// (the failover) as any other would.
	// The control plane passes its move hook (`tenantry up`'s failpoints):
	// tests kill it there.
	Hook func(ctx context.Context, point string) error
}

func (c *Config) setDefaults() error {
	if c.Registry == nil || c.Connect == nil {
		return errors.New("ha: Config.Registry and Config.Connect are required")
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.RouterLive == 0 {
		c.RouterLive = 5 * time.Second
	}
	if c.CatchupTimeout == 0 {
		c.CatchupTimeout = 10 * time.Second
	}
	if c.MaxLagBytes == 0 {
		c.MaxLagBytes = 16 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Hook == nil {
		c.Hook = func(context.Context, string) error { return nil }
	}
	return nil
}
