// Package registry is the configuration registry of tenantry: which clusters
// exist and which member of each is primary, which alias names which cluster
// and database, where every tenant is placed (alias, state, epoch), which
// stacks serve which tenants (routes), API keys, and the router instances that
// acknowledge placement epochs.
//
// The registry lives in a control database (Store). Every change is one
// transaction that bumps the registry version and NOTIFYs it. Readers never
// query the store on a hot path: they hold an immutable *Snapshot, kept
// current by a Watcher (LISTEN/NOTIFY with a periodic poll as fallback).
// A Snapshot and everything reachable from it must never be mutated.
package registry

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"tenantry/dbconn"
)

// Errors callers branch on. The control plane maps them to HTTP statuses.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict means a compare-and-set failed: the version or epoch the
	// writer read is no longer current. Re-read and retry.
	ErrConflict = errors.New("conflict: registry changed since it was read")
	// ErrExists means a create found an object of that name.
	ErrExists = errors.New("already exists")
	// ErrInvalid means a name or value failed validation; nothing was written.
	ErrInvalid = errors.New("invalid")
)

// NotifyChannel is the LISTEN/NOTIFY channel every registry change is
// announced on; the payload is the new registry version.
const NotifyChannel = "tenantry_registry"

var (
	// At most 61 characters: the tenant's database role is "t_" + id, and
	// PostgreSQL truncates identifiers past 63 bytes, so two longer ids
	// differing only at the end would share one role (found by
	// FuzzValidateName).
	tenantRe = regexp.MustCompile(`^[a-z][a-z0-9-]{1,60}$`)
	nameRe   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
)

// ValidateTenantID checks a tenant id against ^[a-z][a-z0-9-]{1,60}$.
func ValidateTenantID(id string) error {
	if !tenantRe.MatchString(id) {
		return fmt.Errorf("%w: tenant id %q must match %s", ErrInvalid, id, tenantRe)
	}
	return nil
}

// ReservedTenantIDs are the words the platform gives a meaning where a tenant
// id stands: "default" names the default route (`tenantry route set|delete
// default`, /v1/routes/default). A tenant with such an id could never be
// given a route of its own, so none can be created.
var ReservedTenantIDs = []string{"default"}

// ValidateNewTenantID is ValidateTenantID plus the reserved words: the check
// every path that creates a tenant runs before any side effect. Existing
// tenants are never checked against it, so reserving a word later strands
// nobody.
func ValidateNewTenantID(id string) error {
	if err := ValidateTenantID(id); err != nil {
		return err
	}
	if slices.Contains(ReservedTenantIDs, id) {
		return fmt.Errorf("%w: tenant id %q is reserved by the platform (reserved: %s)", ErrInvalid, id, strings.Join(ReservedTenantIDs, ", "))
	}
	return nil
}

// ValidateName checks a cluster, alias, member, stack or database name against
// ^[a-z][a-z0-9_-]{0,62}$. Such names reach DDL; they are quoted there too.
func ValidateName(kind, name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("%w: %s name %q must match %s", ErrInvalid, kind, name, nameRe)
	}
	return nil
}

// Role of a cluster member.
type Role string

const (
	RolePrimary Role = "primary"
	RoleStandby Role = "standby"
	// RoleFenced marks a former primary that must never be routed to again
	// until it is rebuilt as a standby.
	RoleFenced Role = "fenced"
)

// Member is one PostgreSQL server of a cluster.
type Member struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Port int    `json:"port"`
	Zone string `json:"zone,omitempty"`
	Role Role   `json:"role"`
	// DataDir is set for clusters run by localpg, empty for external ones.
	DataDir string `json:"data_dir,omitempty"`
}

// Cluster is a PostgreSQL cluster: one primary and zero or more standbys.
type Cluster struct {
	Name    string   `json:"name"`
	Members []Member `json:"members"`
	// Local is true for clusters the control plane runs with localpg.
	Local bool `json:"local"`
	// TLS secures every connection to the cluster's members, subscription
	// connections between clusters included. Local clusters use sslmode
	// disable (loopback only); the zero value is libpq's "prefer".
	TLS dbconn.TLS `json:"tls"`
	// Sync: a commit on the primary is acknowledged once a standby has
	// flushed it (synchronous_standby_names = ANY 1 of its standbys); with
	// no standby left the primary runs asynchronously (`cluster set-sync`).
	Sync bool `json:"sync,omitempty"`
	// FailoverPaused are the tenants (id -> epoch) a failover of the cluster
	// paused and has not resumed: not empty only while a failover runs, or
	// after one was cut short (Store.PauseForFailover).
	FailoverPaused map[string]int64 `json:"failover_paused,omitempty"`
	// FollowPending: a failover made a new primary, and the cluster's
	// standbys may still follow the old one (and a sync cluster commit
	// asynchronously) until the failover monitor has made them follow it
	// (Store.Switch with RoleFenced sets it, Store.FollowDone clears it).
	FollowPending bool `json:"follow_pending,omitempty"`
}

// MemberConfig is the connection config of database db on member m of c as
// cred, with the cluster's TLS settings.
func (c *Cluster) MemberConfig(m Member, db string, cred dbconn.Credential) dbconn.Config {
	return dbconn.Config{Host: m.Host, Port: m.Port, Database: db, Credential: cred, TLS: c.TLS}
}

// Primary returns the member in role primary.
func (c *Cluster) Primary() (Member, bool) {
	for _, m := range c.Members {
		if m.Role == RolePrimary {
			return m, true
		}
	}
	return Member{}, false
}

// Member returns the member called name.
func (c *Cluster) Member(name string) (Member, bool) {
	for _, m := range c.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Alias is a named database reference: a cluster and a database on it.
// Tenants point at aliases, never at hosts.
type Alias struct {
	Name     string `json:"name"`
	Cluster  string `json:"cluster"`
	Database string `json:"database"`
	// Standbys is how many streaming standbys the alias wants its cluster
	// to have: a move that completes on the alias adds the missing ones
	// (`alias create --standbys N`). 0: no wish.
	Standbys int `json:"standbys,omitempty"`
}

// State of a tenant's placement.
type State string

const (
	// StateActive: routers admit the tenant's transactions.
	StateActive State = "active"
	// StatePaused: routers hold new transactions (buffered, up to their
	// buffer window) and acknowledge the epoch once in-flight ones finish.
	StatePaused State = "paused"
	// StateFenced: routers refuse the tenant's transactions.
	StateFenced State = "fenced"
)

// Tenant is a customer account and its placement.
type Tenant struct {
	ID    string `json:"id"`
	Alias string `json:"alias"`
	State State  `json:"state"`
	// Epoch increases on every placement change; routers acknowledge epochs.
	Epoch     int64     `json:"epoch"`
	CreatedAt time.Time `json:"created_at"`
}

// Instance is one running process of a stack.
type Instance struct {
	URL     string `json:"url"`
	Healthy bool   `json:"healthy"`
	// PID is set for instances started by the local provider.
	PID int `json:"pid,omitempty"`
}

// Stack statuses.
const (
	StackDeploying = "deploying"
	StackReady     = "ready"
	StackStopped   = "stopped"
	StackFailed    = "failed"
)

// Stack is one deployed version of the application.
type Stack struct {
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	Status    string     `json:"status"`
	Instances []Instance `json:"instances"`
}

// Backend is one weighted stack of a route.
type Backend struct {
	Stack  string `json:"stack"`
	Weight int    `json:"weight"`
}

// DefaultRoute is the Route.Tenant of the route that serves tenants with no
// route of their own.
const DefaultRoute = ""

// Route sends a tenant's requests to weighted stacks.
type Route struct {
	Tenant   string    `json:"tenant"`
	Backends []Backend `json:"backends"`
}

// APIKey authenticates a tenant's requests at the gateway. Only a hash of the
// secret is stored; the secret is shown once, at creation.
type APIKey struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	// RevokedAt is set on a revoked key (Store.APIKeys lists them; a
	// snapshot holds only keys in force).
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// RouterInstance is a live tenant router (one per stack instance or
// process) with its heartbeat and the placement epochs it has acknowledged.
type RouterInstance struct {
	ID        string    `json:"id"`
	Heartbeat time.Time `json:"heartbeat"`
	// LastSeenSeconds is the time since the last heartbeat, by the control
	// database's clock (so a client's clock does not matter).
	LastSeenSeconds float64 `json:"last_seen_seconds"`
	// Version is the registry version the router routes by, as of its
	// last heartbeat.
	Version int64            `json:"registry_version"`
	Acks    map[string]int64 `json:"acks,omitempty"`
}

// Snapshot is an immutable view of the whole registry at one version.
type Snapshot struct {
	Version  int64               `json:"version"`
	Clusters map[string]*Cluster `json:"clusters"`
	Aliases  map[string]*Alias   `json:"aliases"`
	Tenants  map[string]*Tenant  `json:"tenants"`
	Stacks   map[string]*Stack   `json:"stacks"`
	// Routes by tenant; DefaultRoute ("") is the default route.
	Routes map[string]*Route `json:"routes"`
	// KeysByHash maps an API key hash to its key.
	KeysByHash map[string]*APIKey `json:"-"`
	// Limits are the tenants' own request limits; a tenant not in it has
	// the gateway's defaults.
	Limits   map[string]Limits `json:"limits"`
	LoadedAt time.Time         `json:"loaded_at"`
}

// Endpoint is where a tenant's transactions go: the alias, its database, and
// the primary member of the alias's cluster.
type Endpoint struct {
	Alias    string
	Cluster  string
	Database string
	Host     string
	Port     int
	// TLS is the cluster's.
	TLS dbconn.TLS
}

// Config is the connection config of the endpoint's database as cred.
func (e Endpoint) Config(cred dbconn.Credential) dbconn.Config {
	return dbconn.Config{Host: e.Host, Port: e.Port, Database: e.Database, Credential: cred, TLS: e.TLS}
}

// Resolve returns the tenant and the endpoint of its alias.
func (s *Snapshot) Resolve(tenant string) (*Tenant, Endpoint, error) {
	t, ok := s.Tenants[tenant]
	if !ok {
		return nil, Endpoint{}, fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
	}
	ep, err := s.AliasEndpoint(t.Alias)
	return t, ep, err
}

// AliasEndpoint returns the primary endpoint of an alias.
func (s *Snapshot) AliasEndpoint(alias string) (Endpoint, error) {
	a, ok := s.Aliases[alias]
	if !ok {
		return Endpoint{}, fmt.Errorf("alias %q: %w", alias, ErrNotFound)
	}
	c, ok := s.Clusters[a.Cluster]
	if !ok {
		return Endpoint{}, fmt.Errorf("cluster %q of alias %q: %w", a.Cluster, alias, ErrNotFound)
	}
	m, ok := c.Primary()
	if !ok {
		return Endpoint{}, fmt.Errorf("cluster %q has no primary: %w", c.Name, ErrNotFound)
	}
	return Endpoint{Alias: a.Name, Cluster: c.Name, Database: a.Database, Host: m.Host, Port: m.Port, TLS: c.TLS}, nil
}

// RouteFor returns the tenant's route, or the default route, or nil.
func (s *Snapshot) RouteFor(tenant string) *Route {
	if r, ok := s.Routes[tenant]; ok {
		return r
	}
	return s.Routes[DefaultRoute]
}

// StaticSource serves one snapshot that never changes: the snapshot source
// (of routers and gateways) for tools, benchmarks and tests that route
// without a control database.
type StaticSource struct{ Snapshot *Snapshot }

// Current returns the snapshot.
func (s StaticSource) Current() *Snapshot { return s.Snapshot }

// Subscribe returns a channel that never receives.
func (s StaticSource) Subscribe() (<-chan *Snapshot, func()) {
	return make(chan *Snapshot), func() {}
}
