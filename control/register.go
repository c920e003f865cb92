package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"tenantry/dbconn"
	"tenantry/registry"
)

// What a registered cluster must offer. Every member is checked, standbys
// too: any of them may be promoted.
const (
	// MinServerVersion is server_version_num of PostgreSQL 15: row filters
	// in publications, which moves rely on.
	MinServerVersion = 150000
	// MinReplicationSlots and MinWALSenders leave room for concurrent moves
	// (a slot and a walsender per link, two links per move) and standbys.
	MinReplicationSlots = 10
	MinWALSenders       = 10
)

// ErrClusterCheck means a cluster offered for registration is not fit for
// tenantry; the *ClusterCheckError says what is missing. Nothing was
// registered.
var ErrClusterCheck = errors.New("cluster check failed")

// ClusterCheckError lists every problem found on a cluster's members.
type ClusterCheckError struct {
	Cluster  string
	Problems []string
}

func (e *ClusterCheckError) Error() string {
	return fmt.Sprintf("cluster %s cannot be registered: %s", e.Cluster, strings.Join(e.Problems, "; "))
}

func (e *ClusterCheckError) Unwrap() error { return ErrClusterCheck }

// Details are the problems, for the API's error body.
func (e *ClusterCheckError) Details() map[string]any {
	return map[string]any{"cluster": e.Cluster, "problems": e.Problems}
}

// RegisterClusterRequest registers a cluster tenantry did not create: its
// members by address, the TLS settings of every connection to them, and the
// admin credential tenantry connects as (a superuser: moves create
// databases, roles and subscriptions).
type RegisterClusterRequest struct {
	Name       string            `json:"name"`
	Members    []registry.Member `json:"members"`
	TLS        dbconn.TLS        `json:"tls"`
	Credential dbconn.Credential `json:"credential"`
}

// RegisterCluster checks every member of the cluster — reachable with the
// credential, the role it is given matches pg_is_in_recovery(), PostgreSQL
// 15 or later, wal_level logical, at least MinReplicationSlots slots and
// MinWALSenders senders, the credential a superuser — and records the
// cluster with its credential (sealed) only if all pass. Invalid input is
// registry.ErrInvalid, failed checks a *ClusterCheckError.
func (s *Service) RegisterCluster(ctx context.Context, req RegisterClusterRequest) (*registry.Cluster, error) {
	c := registry.Cluster{Name: req.Name, Members: req.Members, TLS: req.TLS}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if _, ok := c.Primary(); !ok {
		return nil, fmt.Errorf("%w: cluster %s: one member must be the primary (role=primary)", registry.ErrInvalid, c.Name)
	}
	for _, m := range c.Members {
		if m.Role == registry.RoleFenced {
			return nil, fmt.Errorf("%w: member %s: register members as primary or standby", registry.ErrInvalid, m.Name)
		}
		if m.DataDir != "" {
			return nil, fmt.Errorf("%w: member %s: a registered member has no local data directory", registry.ErrInvalid, m.Name)
		}
	}
	if err := req.Credential.Validate(); err != nil {
		return nil, fmt.Errorf("%w: cluster %s: %v", registry.ErrInvalid, c.Name, err)
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := snap.Clusters[c.Name]; ok {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, registry.ErrExists)
	}
	var problems []string
	for _, m := range c.Members {
		for _, p := range checkMember(ctx, c.MemberConfig(m, "postgres", req.Credential), m) {
			problems = append(problems, fmt.Sprintf("member %s (%s:%d): %s", m.Name, m.Host, m.Port, p))
		}
	}
	if len(problems) > 0 {
		return nil, &ClusterCheckError{Cluster: c.Name, Problems: problems}
	}
	if err := s.cfg.Credentials.CreateCluster(ctx, c, req.Credential); err != nil {
		return nil, err
	}
	s.log.Info("cluster registered", "cluster", c.Name, "members", len(c.Members), "sslmode", c.TLS.Mode)
	return &c, nil
}

// checkMember connects to one member and returns what it lacks.
func checkMember(ctx context.Context, cfg dbconn.Config, m registry.Member) []string {
	cfg.ConnectTimeout = 5 * time.Second
	cfg.ApplicationName = "tenantry-control"
	conn, err := cfg.Connect(ctx)
	if err != nil {
		return []string{fmt.Sprintf("unreachable: %v", err)}
	}
	defer conn.Close(ctx)
	var (
		version, slots, senders int
		walLevel                string
		inRecovery, super       bool
	)
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('wal_level'),
			current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int,
			pg_is_in_recovery(), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)`).
		Scan(&version, &walLevel, &slots, &senders, &inRecovery, &super)
	if err != nil {
		return []string{fmt.Sprintf("read settings: %v", err)}
	}
	var out []string
	if version < MinServerVersion {
		out = append(out, fmt.Sprintf("server version %s is older than PostgreSQL 15", versionText(version)))
	}
	if walLevel != "logical" {
		out = append(out, fmt.Sprintf("wal_level is %s, want logical (set wal_level = logical and restart)", walLevel))
	}
	if slots < MinReplicationSlots {
		out = append(out, fmt.Sprintf("max_replication_slots is %d, want at least %d", slots, MinReplicationSlots))
	}
	if senders < MinWALSenders {
		out = append(out, fmt.Sprintf("max_wal_senders is %d, want at least %d", senders, MinWALSenders))
	}
	if !super {
		out = append(out, fmt.Sprintf("user %s is not a superuser (tenantry creates databases, roles and subscriptions as it)", cfg.User))
	}
	switch {
	case m.Role == registry.RolePrimary && inRecovery:
		out = append(out, "registered as primary but the server is in recovery (a standby)")
	case m.Role == registry.RoleStandby && !inRecovery:
		out = append(out, "registered as standby but the server is not in recovery (a primary)")
	}
	return out
}

// versionText renders server_version_num (150004 -> "15.4", 90624 -> "9.6.24").
func versionText(v int) string {
	if v >= 100000 {
		return strconv.Itoa(v/10000) + "." + strconv.Itoa(v%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}
