package ha

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"tenantry/registry"
)

// SyncStandbys is the setting synchronous_standby_names of cluster c when
// primary is its primary: for a sync cluster ANY 1 of the other members
// (standbys report under their member names) but fenced ones and without;
// "" (asynchronous) for an async cluster or one with no standby left.
func SyncStandbys(c *registry.Cluster, primary, without string) string {
	if !c.Sync {
		return ""
	}
	var names []string
	for _, m := range c.Members {
		if m.Name == primary || m.Name == without || m.Role == registry.RoleFenced {
			continue
		}
		names = append(names, pgx.Identifier{m.Name}.Sanitize())
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return "ANY 1 (" + strings.Join(names, ", ") + ")"
}

// EventLog records events (*registry.Store).
type EventLog interface {
	AddEvent(ctx context.Context, kind, subject, message string, data any) error
}

// ApplySync sets synchronous_standby_names on the primary conn is
// connected to (ALTER SYSTEM, then a reload: no restart) and records it as
// an event; a sync cluster left with no standby gets "" and the event
// cluster.sync_degraded, so that its commits do not wait forever.
func ApplySync(ctx context.Context, conn *pgx.Conn, reg EventLog, c *registry.Cluster, primary, without string) error {
	names := SyncStandbys(c, primary, without)
	if err := setSyncNames(ctx, conn, names); err != nil {
		return fmt.Errorf("%s: %w", primary, err)
	}
	if !c.Sync {
		return nil
	}
	data := map[string]string{"primary": primary, "synchronous_standby_names": names}
	if names == "" {
		msg := fmt.Sprintf("cluster %s is synchronous but has no standby: its primary %s commits asynchronously until one is added", c.Name, primary)
		return reg.AddEvent(ctx, registry.EventSyncDegraded, c.Name, msg, data)
	}
	msg := fmt.Sprintf("cluster %s: primary %s waits for %s", c.Name, primary, names)
	return reg.AddEvent(ctx, registry.EventSyncApplied, c.Name, msg, data)
}

// setSyncNames sets synchronous_standby_names (ALTER SYSTEM, then a
// reload).
func setSyncNames(ctx context.Context, conn *pgx.Conn, names string) error {
	// Member names are validated identifiers; the literal is quoted all
	// the same (ALTER SYSTEM takes no parameters).
	lit := "'" + strings.ReplaceAll(names, "'", "''") + "'"
	if _, err := conn.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = "+lit); err != nil {
		return fmt.Errorf("set synchronous_standby_names: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	return nil
}

// clearSync makes a just promoted member commit asynchronously: its
// setting is its old primary's, which may name itself or a member that
// is down, and its standbys are yet to follow it (the replication role
// it makes for them is itself a commit). applySync sets it once they do.
func (h *Service) clearSync(ctx context.Context, cluster, primary string) error {
	return h.withMember(ctx, cluster, primary, func(conn *pgx.Conn, _ *registry.Cluster) error {
		var names string
		if err := conn.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&names); err != nil {
			return err
		}
		if names == "" {
			return nil // asynchronous already: no write inside the pause
		}
		return setSyncNames(ctx, conn, "")
	})
}

// applySync is ApplySync on member primary of cluster, through Connect.
func (h *Service) applySync(ctx context.Context, cluster, primary, without string) error {
	return h.withMember(ctx, cluster, primary, func(conn *pgx.Conn, c *registry.Cluster) error {
		return ApplySync(ctx, conn, h.cfg.Registry, c, primary, without)
	})
}

// withMember calls fn with an admin connection to member of cluster.
func (h *Service) withMember(ctx context.Context, cluster, member string, fn func(*pgx.Conn, *registry.Cluster) error) error {
	c, m, err := h.member(ctx, cluster, member)
	if err != nil {
		return err
	}
	conn, err := h.cfg.Connect(ctx, c, m, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn, c)
}

// cluster reads cluster from the registry.
func (h *Service) cluster(ctx context.Context, cluster string) (*registry.Cluster, error) {
	snap, err := h.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	c, ok := snap.Clusters[cluster]
	if !ok {
		return nil, fmt.Errorf("cluster %q: %w", cluster, registry.ErrNotFound)
	}
	return c, nil
}

// member reads cluster and its member from the registry.
func (h *Service) member(ctx context.Context, cluster, member string) (*registry.Cluster, registry.Member, error) {
	c, err := h.cluster(ctx, cluster)
	if err != nil {
		return nil, registry.Member{}, err
	}
	m, ok := c.Member(member)
	if !ok {
		return nil, registry.Member{}, fmt.Errorf("member %s of cluster %s: %w", member, cluster, registry.ErrNotFound)
	}
	return c, m, nil
}
