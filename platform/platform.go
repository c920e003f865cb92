// Package platform runs the embedded local default: every part of tenantry on
// one machine, in one data directory, with PostgreSQL clusters made by
// localpg. `tenantry up` and `tenantry demo` use it; nothing else in tenantry
// depends on running locally.
package platform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"tenantry/control"
	"tenantry/dbconn"
	"tenantry/localpg"
	"tenantry/registry"
	"tenantry/tenantsig"
)

// StateFile is the file in the data directory that records the platform:
// secrets (mode 0600), where its clusters live and where its services listen.
const StateFile = "platform.json"

// ControlDatabase is the database of the registry on the control cluster.
const ControlDatabase = "tenantry_control"

// controlCluster names the control cluster in State.Passwords.
const controlCluster = "control"

// State is what a data directory remembers between runs.
type State struct {
	Secret     string              `json:"secret"`
	AdminToken string              `json:"admin_token"`
	ControlDir string              `json:"control_dir"`
	Clusters   map[string][]string `json:"clusters"` // cluster name -> member dirs, primary first
	// Passwords of the clusters' superusers, by cluster name ("control" for
	// the control cluster): kept here (mode 0600) and nowhere else, and
	// handed to the control plane as each cluster's admin credential.
	Passwords map[string]string `json:"cluster_passwords,omitempty"`
	// RolePasswords are the passwords of the registry's roles
	// (RegistryOwner, RegistryReader) on the control cluster.
	RolePasswords map[string]string `json:"registry_role_passwords,omitempty"`
	// ReaderDSN is the control database as RegistryReader: what the gateway
	// and the stack instances get. ControlDSN is the control plane's, as
	// RegistryOwner.
	ReaderDSN  string `json:"reader_dsn,omitempty"`
	APIURL     string `json:"api_url,omitempty"`
	GatewayURL string `json:"gateway_url,omitempty"`
	ControlDSN string `json:"control_dsn,omitempty"`
	// SampleAPIKey is the API key of the sample tenant (local platform only).
	SampleAPIKey string `json:"sample_api_key,omitempty"`
	// GatewayAdminURL is the gateway's admin listener (/metrics).
	GatewayAdminURL string `json:"gateway_admin_url,omitempty"`
}

// ReadState loads the state of the platform in dir.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", StateFile, err)
	}
	return &s, nil
}

// Local owns the local clusters of one data directory.
type Local struct {
	Dir     string
	State   *State
	Control *localpg.Cluster
	log     *slog.Logger

	mu       sync.Mutex
	clusters map[string][]*localpg.Cluster
}

// OpenLocal creates the data directory on first use (a control cluster and
// fresh secrets) or reopens it, and starts every cluster recorded in it.
func OpenLocal(ctx context.Context, dir string, log *slog.Logger) (*Local, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	l := &Local{Dir: abs, log: log, clusters: map[string][]*localpg.Cluster{}}
	st, err := ReadState(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		st = &State{Secret: randomHex(32), AdminToken: "adm_" + randomHex(24), Clusters: map[string][]string{},
			Passwords: map[string]string{controlCluster: localpg.GeneratePassword()}}
		st.ControlDir = filepath.Join(abs, "clusters", "control")
		log.Info("creating control cluster", "dir", st.ControlDir)
		c, err := localpg.Create(ctx, localpg.Config{Dir: st.ControlDir, Name: "control", Password: st.Passwords[controlCluster]})
		if err != nil {
			return nil, err
		}
		l.Control = c
	case err != nil:
		return nil, err
	default:
		if l.Control, err = localpg.Open(st.ControlDir); err != nil {
			return nil, err
		}
		l.Control.Password = st.Passwords[controlCluster]
	}
	if st.Passwords == nil {
		st.Passwords = map[string]string{} // a data directory from before passwords: trust
	}
	l.State = st
	if err := l.startCluster(ctx, l.Control); err != nil {
		return nil, err
	}
	if err := l.ensureControlDB(ctx); err != nil {
		return nil, err
	}
	if err := l.ensureRegistryRoles(ctx); err != nil {
		return nil, err
	}
	for name, dirs := range st.Clusters {
		for _, d := range dirs {
			c, err := localpg.Open(d)
			if err != nil {
				return nil, fmt.Errorf("cluster %s: %w", name, err)
			}
			c.Password = st.Passwords[name]
			if err := l.startCluster(ctx, c); err != nil {
				return nil, err
			}
			l.clusters[name] = append(l.clusters[name], c)
		}
	}
	return l, l.Save()
}

func (l *Local) startCluster(ctx context.Context, c *localpg.Cluster) error {
	if c.Running() {
		return nil
	}
	return c.Start(ctx)
}

func (l *Local) ensureControlDB(ctx context.Context) error {
	conn, err := l.Control.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "select exists(select 1 from pg_database where datname=$1)", ControlDatabase).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+ControlDatabase)
	}
	return err
}

// Save writes the state file (mode 0600: it holds the secrets).
func (l *Local) Save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, _ := json.MarshalIndent(l.State, "", "  ")
	tmp := filepath.Join(l.Dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, StateFile))
}

// Cluster returns the running members of a local cluster, primary first.
func (l *Local) Cluster(name string) []*localpg.Cluster {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*localpg.Cluster(nil), l.clusters[name]...)
}

// ClusterDir is where ProvisionCluster puts its clusters' data directories
// (control.DiskProvisioner: isolations check its free space first).
func (l *Local) ClusterDir() string { return filepath.Join(l.Dir, "clusters") }

// ProvisionCluster creates and starts a local cluster with standbys
// streaming standbys, and returns its registry description (members named
// control.MemberName: NAME-0 for the primary, NAME-1... for the standbys)
// and its superuser's credential (the password generated for the cluster,
// kept in platform.json). It is idempotent for a cluster that already exists
// in this data directory. Every name is checked before anything is made; on
// a failure after that, the members this call made are stopped and removed,
// and the data directory's state is left as it was.
func (l *Local) ProvisionCluster(ctx context.Context, name string, standbys int) (registry.Cluster, dbconn.Credential, error) {
	c, err := l.provisionCluster(ctx, name, standbys)
	if err != nil {
		return registry.Cluster{}, dbconn.Credential{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return c, dbconn.Credential{User: localpg.Superuser, Password: l.State.Passwords[name]}, nil
}

func (l *Local) provisionCluster(ctx context.Context, name string, standbys int) (_ registry.Cluster, err error) {
	if err := registry.ValidateName("cluster", name); err != nil {
		return registry.Cluster{}, err
	}
	for i := 0; i <= standbys; i++ {
		if err := registry.ValidateName("member", control.MemberName(name, i)); err != nil {
			return registry.Cluster{}, err
		}
	}
	l.mu.Lock()
	before := l.clusters[name]
	_, hadPassword := l.State.Passwords[name]
	l.mu.Unlock()
	existing := append([]*localpg.Cluster(nil), before...)
	var made []*localpg.Cluster // undone, newest first, if this call fails
	defer func() {
		if err == nil {
			return
		}
		if !hadPassword {
			l.mu.Lock()
			delete(l.State.Passwords, name)
			l.mu.Unlock()
		}
		uctx := context.WithoutCancel(ctx)
		for i := len(made) - 1; i >= 0; i-- {
			if derr := made[i].Destroy(uctx); derr != nil {
				err = errors.Join(err, fmt.Errorf("undo: remove %s: %w", made[i].Name, derr))
			}
		}
	}()
	// member makes member i in a directory of its own, which is removed
	// again if making the member fails half way.
	member := func(i int, mk func(dir, name string) (*localpg.Cluster, error)) error {
		mname := control.MemberName(name, i)
		dir := filepath.Join(l.Dir, "clusters", mname)
		_, statErr := os.Stat(dir)
		fresh := errors.Is(statErr, os.ErrNotExist)
		c, err := mk(dir, mname)
		if c != nil {
			made = append(made, c)
		} else if err != nil && fresh {
			_ = os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		existing = append(existing, c)
		return nil
	}
	if len(existing) == 0 {
		err := member(0, func(dir, mname string) (*localpg.Cluster, error) {
			l.log.Info("creating cluster", "cluster", name, "dir", dir)
			pw := localpg.GeneratePassword()
			l.mu.Lock()
			l.State.Passwords[name] = pw // saved with the member's directory below
			l.mu.Unlock()
			c, err := localpg.Create(ctx, localpg.Config{Dir: dir, Name: mname, Password: pw})
			if err != nil {
				return nil, err
			}
			return c, c.Start(ctx)
		})
		if err != nil {
			return registry.Cluster{}, err
		}
	}
	for i := len(existing); i <= standbys; i++ {
		err := member(i, func(dir, mname string) (*localpg.Cluster, error) {
			l.log.Info("adding standby", "cluster", name, "dir", dir)
			return existing[0].AddStandby(ctx, dir, mname)
		})
		if err != nil {
			return registry.Cluster{}, err
		}
	}
	if len(made) == 0 {
		return describe(name, existing), nil
	}
	l.mu.Lock()
	prevDirs, hadDirs := l.State.Clusters[name]
	l.clusters[name] = existing
	dirs := make([]string, len(existing))
	for i, c := range existing {
		dirs[i] = c.Dir
	}
	l.State.Clusters[name] = dirs
	l.mu.Unlock()
	if err := l.Save(); err != nil {
		l.mu.Lock()
		l.clusters[name] = before
		if hadDirs {
			l.State.Clusters[name] = prevDirs
		} else {
			delete(l.State.Clusters, name)
		}
		l.mu.Unlock()
		return registry.Cluster{}, err
	}
	return describe(name, existing), nil
}

// RemoveCluster stops and removes every member of a local cluster (standbys
// first) and forgets it in the data directory's state. The control plane
// calls it to undo a cluster it provisioned but could not record.
func (l *Local) RemoveCluster(ctx context.Context, name string) error {
	l.mu.Lock()
	members := l.clusters[name]
	delete(l.clusters, name)
	delete(l.State.Clusters, name)
	delete(l.State.Passwords, name)
	l.mu.Unlock()
	var errs []error
	for i := len(members) - 1; i >= 0; i-- {
		if err := members[i].Destroy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", members[i].Name, err))
		}
	}
	errs = append(errs, l.Save())
	return errors.Join(errs...)
}

func describe(name string, members []*localpg.Cluster) registry.Cluster {
	// Loopback only: no TLS.
	rc := registry.Cluster{Name: name, Local: true, TLS: dbconn.TLS{Mode: dbconn.SSLDisable}}
	for _, m := range members {
		role := registry.RoleStandby
		if m.IsPrimary() {
			role = registry.RolePrimary
		}
		rc.Members = append(rc.Members, registry.Member{Name: m.Name, Host: m.Host, Port: m.Port,
			Zone: "local", Role: role, DataDir: m.Dir})
	}
	return rc
}

// Stop stops every cluster of the platform (standbys first).
func (l *Local) Stop(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, ms := range l.clusters {
		for i := len(ms) - 1; i >= 0; i-- {
			if err := ms[i].Stop(ctx); err != nil {
				l.log.Warn("stop cluster member", "cluster", name, "member", ms[i].Name, "err", err)
			}
		}
	}
	if err := l.Control.Stop(ctx); err != nil {
		l.log.Warn("stop control cluster", "err", err)
	}
}

// Destroy stops and removes every cluster and the data directory.
func (l *Local) Destroy(ctx context.Context) error {
	l.Stop(ctx)
	return os.RemoveAll(l.Dir)
}

// headerRoot is the tenant-header root key of the platform: the gateway
// holds it, each stack's instances only the key derived from it for their
// stack.
func headerRoot(st *State) []byte { return tenantsig.RootKey([]byte(st.Secret)) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
