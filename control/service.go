// Package control is the control plane: the operations an operator runs
// against the platform (clusters, aliases, tenants, stacks, moves), exposed
// as an HTTP JSON API authenticated by an admin token, and the Go client the
// CLI and the dashboard use to call it.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/dbconn"
	"tenantry/provision"
	"tenantry/registry"
)

// Store is the part of the registry the control plane writes.
type Store interface {
	Snapshot(ctx context.Context) (*registry.Snapshot, error)
	AddMember(ctx context.Context, cluster string, m registry.Member) error
	RemoveMember(ctx context.Context, cluster, member string) error
	CreateAlias(ctx context.Context, a registry.Alias) error
	CreateTenant(ctx context.Context, id, alias string) (*registry.Tenant, error)
	CreateAPIKey(ctx context.Context, tenant string) (string, *registry.APIKey, error)
	Routers(ctx context.Context) ([]registry.RouterInstance, error)
	ExpireRouters(ctx context.Context, after time.Duration) ([]string, error)
	Version(ctx context.Context) (int64, error)
	WaitRouters(ctx context.Context, version int64, within time.Duration) ([]string, error)
	// Keys and tenant deletion (tenants.go).
	APIKeys(ctx context.Context, tenant string) ([]registry.APIKey, error)
	RevokeAPIKey(ctx context.Context, tenant, id string) error
	RevokeTenantKeys(ctx context.Context, tenant string) ([]string, error)
	SetPlacement(ctx context.Context, tenant string, expectEpoch int64, alias string, state registry.State) (*registry.Tenant, error)
	DeleteTenant(ctx context.Context, id string) error
	AddEvent(ctx context.Context, kind, subject, message string, data any) error
	SetClusterSync(ctx context.Context, cluster string, sync bool) error
	Events(ctx context.Context, f registry.EventFilter) ([]registry.Event, error)
	// Request limits at the gateway (limits.go).
	SetTenantLimits(ctx context.Context, tenant string, l registry.Limits) error
}

// Config configures a Service. Zero values mean the documented defaults.
type Config struct {
	Store Store
	// Secret is the platform secret: tenant database passwords are derived
	// from it (provision.Password).
	Secret []byte
	// Credentials keeps each cluster's admin credential: the control plane
	// connects to members as it for DDL. Default: a registry.Vault on Store
	// (which must then be a *registry.Store) with Secret.
	Credentials Credentials
	// PrepareDatabase brings a tenant database to the current application
	// schema (migrations, then tenant roles' grants and row-level security).
	// Called when an alias is created.
	PrepareDatabase func(ctx context.Context, conn *pgx.Conn) error
	// Provisioner creates new clusters; nil means clusters can only be
	// registered by address (CreateCluster with members).
	Provisioner Provisioner
	// Workflows finds running workflows (a *workflow.Runner); DeleteTenant
	// refuses while a move holds the tenant. Nil means tenants cannot be
	// deleted (ErrNotSupported): nothing could tell whether a move runs.
	Workflows Workflows
	Logger    *slog.Logger
	// RouterExpiry is how long a router may go without a heartbeat (one a
	// second) before Status takes its process for dead and removes it from
	// the registry; default DefaultRouterExpiry. Moves ignore routers silent
	// this long too (move.Config.RouterDead).
	RouterExpiry time.Duration
	// RouterLive: routers with a heartbeat this recent are live, and tenant
	// create waits for them; default 5 s (as move.Config.RouterLive).
	RouterLive time.Duration
	// ServeWait bounds how long tenant create waits for the live routers
	// to route by a registry version that has the new tenant; default 5 s.
	ServeWait time.Duration
}

// DefaultRouterExpiry is Config.RouterExpiry's default.
const DefaultRouterExpiry = 60 * time.Second

// Credentials keeps clusters' admin credentials (*registry.Vault).
type Credentials interface {
	registry.ClusterCredentials
	// CreateCluster records a cluster with its credential, at once.
	CreateCluster(ctx context.Context, c registry.Cluster, cred dbconn.Credential) error
}

// Provisioner creates PostgreSQL clusters (the local platform implements it
// with localpg).
type Provisioner interface {
	// ProvisionCluster creates and starts cluster name with standbys
	// streaming standbys, its members named MemberName(name, i), and returns
	// its description and its admin credential. It is idempotent for a
	// cluster it already made. On failure it leaves nothing behind that this
	// call made.
	ProvisionCluster(ctx context.Context, name string, standbys int) (registry.Cluster, dbconn.Credential, error)
	// RemoveCluster stops and removes cluster name and forgets it.
	// CreateCluster calls it to undo a cluster it could not record.
	RemoveCluster(ctx context.Context, name string) error
}

// MaxStandbys bounds CreateClusterRequest.Standbys.
const MaxStandbys = 5

// MemberName is the name of member i of a provisioned cluster: NAME-0 is
// the primary, NAME-1 and on its standbys. Provisioners name members so, and
// CreateCluster checks every such name before anything is made.
func MemberName(cluster string, i int) string { return fmt.Sprintf("%s-%d", cluster, i) }

// ErrNotSupported means the operation needs a capability this control plane
// was not configured with.
var ErrNotSupported = errors.New("not supported")

// ErrInUse means the operation would take away something others depend on:
// a database another alias uses, a stack that routes send traffic to, the
// default route. The error says who uses it.
var ErrInUse = errors.New("in use")

// systemDatabases are PostgreSQL's own databases: an alias on one would put
// the application schema where it does not belong (in template1, every
// database created later inherits it).
var systemDatabases = map[string]bool{"postgres": true, "template0": true, "template1": true}

// Service carries out control operations. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
	// provisioning serialises cluster creation, so that an undo removes only
	// a cluster its own call made (two calls for one name would otherwise
	// both pass the registry check and share the provisioner's cluster).
	provisioning sync.Mutex
}

// NewService checks cfg and returns a Service.
func NewService(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("control: Config.Store is required")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("control: Config.Secret is required")
	}
	if cfg.Credentials == nil {
		rs, ok := cfg.Store.(*registry.Store)
		if !ok {
			return nil, errors.New("control: Config.Credentials is required")
		}
		v, err := registry.NewVault(rs, cfg.Secret)
		if err != nil {
			return nil, err
		}
		cfg.Credentials = v
	}
	if cfg.RouterExpiry <= 0 {
		cfg.RouterExpiry = DefaultRouterExpiry
	}
	if cfg.RouterLive <= 0 {
		cfg.RouterLive = 5 * time.Second
	}
	if cfg.ServeWait <= 0 {
		cfg.ServeWait = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("subsystem", "control")}, nil
}

// AdminConnect opens an admin connection to database db on the primary of
// cluster c.
func (s *Service) AdminConnect(ctx context.Context, c *registry.Cluster, db string) (*pgx.Conn, error) {
	m, ok := c.Primary()
	if !ok {
		return nil, fmt.Errorf("cluster %s has no primary: %w", c.Name, registry.ErrNotFound)
	}
	return s.ConnectMember(ctx, c, m, db)
}

// ConnectMember opens an admin connection to database db on member m of
// cluster c, with the cluster's credential; failing to connect is
// ErrUnavailable.
func (s *Service) ConnectMember(ctx context.Context, c *registry.Cluster, m registry.Member, db string) (*pgx.Conn, error) {
	return memberConnector(s.cfg.Credentials)(ctx, c, m, db)
}

// memberConnector opens admin connections to members with the credentials
// creds keeps.
func memberConnector(creds registry.ClusterCredentials) func(ctx context.Context, c *registry.Cluster, m registry.Member, db string) (*pgx.Conn, error) {
	return func(ctx context.Context, c *registry.Cluster, m registry.Member, db string) (*pgx.Conn, error) {
		cred, err := creds.ClusterCredential(ctx, c.Name)
		if err != nil {
			return nil, err
		}
		return connectMember(ctx, c.MemberConfig(m, db, cred))
	}
}

// connectMember opens an admin connection; failing to is ErrUnavailable.
func connectMember(ctx context.Context, cfg dbconn.Config) (*pgx.Conn, error) {
	cfg.ConnectTimeout = 5 * time.Second
	cfg.ApplicationName = "tenantry-control"
	conn, err := cfg.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return conn, nil
}

// Snapshot returns the current registry.
func (s *Service) Snapshot(ctx context.Context) (*registry.Snapshot, error) {
	return s.cfg.Store.Snapshot(ctx)
}

// CreateClusterRequest asks the Provisioner for a new cluster with Standbys
// streaming standbys. Clusters tenantry did not create are registered with
// RegisterCluster.
type CreateClusterRequest struct {
	Name     string `json:"name"`
	Standbys int    `json:"standbys"`
	// Sync makes the cluster replicate synchronously from the start (as
	// `cluster set-sync` does).
	Sync bool `json:"sync,omitempty"`
}

// CreateCluster provisions a cluster and records it with its credential.
// Every name the cluster will carry and the number of standbys are checked
// before anything is made; a provisioned cluster that cannot be recorded is
// removed again.
func (s *Service) CreateCluster(ctx context.Context, req CreateClusterRequest) (*registry.Cluster, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	s.provisioning.Lock()
	defer s.provisioning.Unlock()
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := snap.Clusters[req.Name]; ok {
		return nil, fmt.Errorf("cluster %s: %w", req.Name, registry.ErrExists)
	}
	if s.cfg.Provisioner == nil {
		return nil, fmt.Errorf("cluster provisioning is available in local mode only; register an existing cluster (tenantry cluster register): %w", ErrNotSupported)
	}
	c, cred, err := s.cfg.Provisioner.ProvisionCluster(ctx, req.Name, req.Standbys)
	if err != nil {
		return nil, fmt.Errorf("provision cluster %s: %w", req.Name, err)
	}
	c.Sync = req.Sync
	if err := s.cfg.Credentials.CreateCluster(ctx, c, cred); err != nil {
		// The undo must run even when the caller has gone away.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if uerr := s.cfg.Provisioner.RemoveCluster(uctx, c.Name); uerr != nil {
			s.log.Error("undo cluster provisioning", "cluster", c.Name, "err", uerr)
			return nil, errors.Join(err, fmt.Errorf("undo: remove cluster %s: %w", c.Name, uerr))
		}
		return nil, err
	}
	s.log.Info("cluster created", "cluster", c.Name, "members", len(c.Members))
	if c.Sync {
		if err := s.applySync(ctx, c.Name); err != nil {
			return nil, fmt.Errorf("cluster %s created, but its synchronous replication is not set (run cluster set-sync %s on): %w", c.Name, c.Name, err)
		}
	}
	return &c, nil
}

// validate checks the request's names without side effects: the cluster's,
// every member name the provisioner will give (MemberName), and the number
// of standbys.
func (req *CreateClusterRequest) validate() error {
	if err := registry.ValidateName("cluster", req.Name); err != nil {
		return err
	}
	if req.Standbys < 0 || req.Standbys > MaxStandbys {
		return fmt.Errorf("%w: standbys must be 0..%d, not %d", registry.ErrInvalid, MaxStandbys, req.Standbys)
	}
	for i := 0; i <= req.Standbys; i++ {
		if err := registry.ValidateName("member", MemberName(req.Name, i)); err != nil {
			return fmt.Errorf("%w (members are named %s-0 to %s-%d; choose a shorter cluster name)",
				err, req.Name, req.Name, req.Standbys)
		}
	}
	return nil
}

// CreateAlias creates database a.Database on a.Cluster's primary if it does
// not exist, prepares it (schema, roles' grants, row-level security), and
// records the alias.
func (s *Service) CreateAlias(ctx context.Context, a registry.Alias) error {
	if err := registry.ValidateName("alias", a.Name); err != nil {
		return err
	}
	if a.Database == "" {
		a.Database = a.Name
	}
	if err := registry.ValidateName("database", a.Database); err != nil {
		return err
	}
	if a.Standbys < 0 || a.Standbys > MaxStandbys {
		return fmt.Errorf("%w: alias %s: --standbys must be 0 to %d", registry.ErrInvalid, a.Name, MaxStandbys)
	}
	if systemDatabases[a.Database] {
		return fmt.Errorf("%w: database %s is a system database of PostgreSQL; name another (or leave --database out to use the alias's name)",
			registry.ErrInvalid, a.Database)
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	if _, ok := snap.Aliases[a.Name]; ok {
		return fmt.Errorf("alias %s: %w", a.Name, registry.ErrExists)
	}
	c, ok := snap.Clusters[a.Cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", a.Cluster, registry.ErrNotFound)
	}
	for _, other := range snap.Aliases {
		if other.Cluster == a.Cluster && other.Database == a.Database {
			return fmt.Errorf("alias %s: %w: database %s on cluster %s belongs to alias %s",
				a.Name, ErrInUse, a.Database, a.Cluster, other.Name)
		}
	}
	if err := s.ensureDatabase(ctx, c, a.Database); err != nil {
		return err
	}
	if s.cfg.PrepareDatabase != nil {
		conn, err := s.AdminConnect(ctx, c, a.Database)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		if err := s.cfg.PrepareDatabase(ctx, conn); err != nil {
			return fmt.Errorf("prepare database %s: %w", a.Database, err)
		}
	}
	return s.cfg.Store.CreateAlias(ctx, a)
}

func (s *Service) ensureDatabase(ctx context.Context, c *registry.Cluster, db string) error {
	conn, err := s.AdminConnect(ctx, c, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// NewTenant is the result of CreateTenant: the tenant and its API key,
// shown this once.
type NewTenant struct {
	Tenant *registry.Tenant `json:"tenant"`
	APIKey string           `json:"api_key"`
	KeyID  string           `json:"key_id"`
	// Ready reports that every live router routes by a registry version
	// that has the tenant. When false, PendingRouters are the live routers
	// seen behind when Config.ServeWait ran out (none named: the registry
	// could not be read to tell); they still serve the tenant (a router
	// refreshes before it says "not found"), a little later on its first
	// request.
	Ready          bool     `json:"ready"`
	PendingRouters []string `json:"pending_routers,omitempty"`
}

// CreateTenant provisions tenant id on alias: its database role (with the
// password derived from the platform secret; row-level security confines it
// to its rows), its registry placement, and an API key.
func (s *Service) CreateTenant(ctx context.Context, id, alias string) (*NewTenant, error) {
	if err := registry.ValidateNewTenantID(id); err != nil {
		return nil, err
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := snap.Tenants[id]; ok {
		return nil, fmt.Errorf("tenant %s: %w", id, registry.ErrExists)
	}
	a, ok := snap.Aliases[alias]
	if !ok {
		return nil, fmt.Errorf("alias %q: %w", alias, registry.ErrNotFound)
	}
	conn, err := s.AdminConnect(ctx, snap.Clusters[a.Cluster], a.Database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if err := provision.EnsureTenantRole(ctx, conn, id, provision.Password(s.cfg.Secret, id)); err != nil {
		return nil, fmt.Errorf("tenant role: %w", err)
	}
	t, err := s.cfg.Store.CreateTenant(ctx, id, alias)
	if err != nil {
		return nil, err
	}
	key, k, err := s.cfg.Store.CreateAPIKey(ctx, id)
	if err != nil {
		return nil, err
	}
	nt := &NewTenant{Tenant: t, APIKey: key, KeyID: k.ID}
	nt.Ready, nt.PendingRouters = s.waitServable(ctx)
	s.log.Info("tenant created", "tenant", id, "alias", alias, "ready", nt.Ready, "pending_routers", nt.PendingRouters)
	return nt, nil
}

// waitServable waits, at most Config.ServeWait, until every live router
// (heartbeat within RouterLive) reports routing by the current registry
// version, which has what the caller just wrote. Routers report their
// version with every heartbeat and beat at once after a new snapshot, so
// this takes milliseconds when they are healthy. It reports whether that
// was seen, and the routers seen behind when it gave up. It never fails the
// create — the tenant exists — so a registry it cannot read leaves the
// answer unconfirmed (not ready, no routers named).
func (s *Service) waitServable(ctx context.Context) (ready bool, pending []string) {
	v, err := s.cfg.Store.Version(ctx)
	if err != nil {
		s.log.Warn("tenant create: cannot read the registry version to wait for routers", "err", err)
		return false, nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ServeWait)
	defer cancel()
	behind, err := s.cfg.Store.WaitRouters(wctx, v, s.cfg.RouterLive)
	if err != nil {
		s.log.Warn("tenant create: routers not seen at the new registry version", "version", v, "routers", behind, "err", err)
		return false, behind
	}
	return true, nil
}

// Status summarises the platform.
type Status struct {
	Version  int64 `json:"registry_version"`
	Clusters int   `json:"clusters"`
	Aliases  int   `json:"aliases"`
	Tenants  int   `json:"tenants"`
	Stacks   int   `json:"stacks"`
	// Routers are the registered routers, each with when it was last seen.
	Routers []registry.RouterInstance `json:"routers"`
	// Expired are the routers this call removed: silent for longer than
	// Config.RouterExpiry, their processes taken for dead.
	Expired []string `json:"expired,omitempty"`
}

// Status returns counts and the routers, after expiring those not heard
// from within Config.RouterExpiry (processes that died without
// deregistering would otherwise be listed forever).
func (s *Service) Status(ctx context.Context) (*Status, error) {
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	expired, err := s.cfg.Store.ExpireRouters(ctx, s.cfg.RouterExpiry)
	if err != nil {
		return nil, err
	}
	if len(expired) > 0 {
		s.log.Info("routers expired", "routers", expired, "silent_for", s.cfg.RouterExpiry)
	}
	rs, err := s.cfg.Store.Routers(ctx)
	if err != nil {
		return nil, err
	}
	return &Status{Version: snap.Version, Clusters: len(snap.Clusters), Aliases: len(snap.Aliases),
		Tenants: len(snap.Tenants), Stacks: len(snap.Stacks), Routers: rs, Expired: expired}, nil
}
