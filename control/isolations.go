package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"

	"tenantry/backup"
	"tenantry/isolate"
	"tenantry/registry"
	"tenantry/tenanttable"
)

// isolationProvisioner is isolate.Provisioner on a plane's Service: its
// clusters, aliases, admin connections and backups.
type isolationProvisioner struct{ p *Plane }

var _ isolate.Provisioner = isolationProvisioner{}

func (a isolationProvisioner) CreateCluster(ctx context.Context, name string, standbys int) error {
	_, err := a.p.Service.CreateCluster(ctx, CreateClusterRequest{Name: name, Standbys: standbys})
	if errors.Is(err, registry.ErrExists) {
		return nil
	}
	return err
}

func (a isolationProvisioner) CreateAlias(ctx context.Context, alias, cluster string, standbys int) error {
	err := a.p.Service.CreateAlias(ctx, registry.Alias{Name: alias, Cluster: cluster, Database: alias, Standbys: standbys})
	if errors.Is(err, registry.ErrExists) {
		return a.p.Store.SetAliasStandbys(ctx, alias, standbys)
	}
	return err
}

// DiskProvisioner is a Provisioner whose clusters' data lives under a
// directory of this machine (the local platform): isolations check its
// free space before they make a cluster there.
type DiskProvisioner interface {
	// ClusterDir is where new clusters' data directories go.
	ClusterDir() string
}

// DeployChecker is a stack.Provider that can tell, before deploying,
// whether a deploy could start (a binary to run, a free port).
type DeployChecker interface {
	CanDeploy(ctx context.Context) error
}

// Capacity weighs the tenant's rows on alias (the sum of their sizes), the
// free space of the Provisioner's cluster directory (DiskProvisioner) and
// whether the stack provider can deploy (DeployChecker).
func (a isolationProvisioner) Capacity(ctx context.Context, tenant, alias string) (isolate.Capacity, error) {
	var c isolate.Capacity
	conn, err := a.connectAlias(ctx, alias)
	if err != nil {
		return c, err
	}
	defer conn.Close(ctx)
	if c.TenantBytes, err = tenantBytes(ctx, conn, tenant); err != nil {
		return c, err
	}
	if dp, ok := a.p.cfg.Provisioner.(DiskProvisioner); ok {
		c.Dir = dp.ClusterDir()
		if c.FreeBytes, err = freeBytes(c.Dir); err != nil {
			return c, err
		}
	}
	if dc, ok := a.p.stacks().(DeployChecker); ok {
		if err := dc.CanDeploy(ctx); err != nil {
			c.Stacks = err.Error()
		}
	}
	return c, nil
}

// tenantBytes sums the sizes of the tenant's rows in every tenant table.
func tenantBytes(ctx context.Context, conn *pgx.Conn, tenant string) (int64, error) {
	tables, err := tenanttable.Names(ctx, conn)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tables {
		var n int64
		q := fmt.Sprintf("SELECT COALESCE(sum(pg_column_size(t.*)), 0)::bigint FROM %s t WHERE tenant_id = $1", pgx.Identifier{t}.Sanitize())
		if err := conn.QueryRow(ctx, q, tenant).Scan(&n); err != nil {
			return 0, fmt.Errorf("size of %s's rows in %s: %w", tenant, t, err)
		}
		total += n
	}
	return total, nil
}

// StandbysStreaming counts the physical walsenders of cluster's primary
// that stream (a move's logical walsenders, which pg_stat_replication lists
// too, are left out by their logical slot).
func (a isolationProvisioner) StandbysStreaming(ctx context.Context, cluster string) (int, error) {
	conn, err := a.connect(ctx, cluster, "postgres")
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication r WHERE r.state = 'streaming'
		AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_type = 'logical')`).Scan(&n)
	return n, err
}

// Backup takes the tenant's backup into dir and verifies it; a complete
// backup left there by an earlier attempt is verified and kept, a broken
// one taken again.
func (a isolationProvisioner) Backup(ctx context.Context, tenant, alias, dir string) (int64, error) {
	key := backup.Key(a.p.cfg.Secret)
	if _, err := os.Stat(dir); err == nil {
		if m, err := backup.Verify(dir, key); err == nil {
			return backupRows(m), nil
		}
		if err := os.RemoveAll(dir); err != nil {
			return 0, err
		}
	}
	conn, err := a.connectAlias(ctx, alias)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	if _, err := backup.Create(ctx, conn, tenant, dir, key, nil); err != nil {
		return 0, err
	}
	m, err := backup.Verify(dir, key)
	if err != nil {
		return 0, fmt.Errorf("verify backup %s: %w", dir, err)
	}
	return backupRows(m), nil
}

// connectAlias opens an admin connection to alias's database.
func (a isolationProvisioner) connectAlias(ctx context.Context, alias string) (*pgx.Conn, error) {
	snap, err := a.p.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	al, ok := snap.Aliases[alias]
	if !ok {
		return nil, fmt.Errorf("alias %q: %w", alias, registry.ErrNotFound)
	}
	return a.connect(ctx, al.Cluster, al.Database)
}

// connect opens an admin connection to database db on cluster's primary.
func (a isolationProvisioner) connect(ctx context.Context, cluster, db string) (*pgx.Conn, error) {
	snap, err := a.p.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	c, ok := snap.Clusters[cluster]
	if !ok {
		return nil, fmt.Errorf("cluster %q: %w", cluster, registry.ErrNotFound)
	}
	return a.p.Service.AdminConnect(ctx, c, db)
}

func backupRows(m *backup.Manifest) int64 {
	var n int64
	for _, t := range m.Tables {
		n += t.Rows
	}
	return n
}

// TwinRequest marks Twin as Tenant's sandbox twin ("" clears it).
type TwinRequest struct {
	Tenant string `json:"tenant,omitempty"`
	Twin   string `json:"twin"`
	By     string `json:"by,omitempty"`
}

// EnvRequest marks the environment.
type EnvRequest struct {
	Env string `json:"env"`
	By  string `json:"by,omitempty"`
}

// EnableIsolations adds the isolation and environment endpoints.
func (s *Server) EnableIsolations(is *isolate.Service) {
	s.Handle("POST /v1/isolations", func(r *http.Request) (int, any, error) {
		var req isolate.Request
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		if req.DryRun {
			p, err := is.Plan(r.Context(), req)
			return http.StatusOK, p, withActive(err)
		}
		in, err := is.Start(r.Context(), req)
		if err != nil {
			return 0, nil, withActive(err)
		}
		return http.StatusCreated, in, nil
	})
	s.Handle("GET /v1/isolations", func(r *http.Request) (int, any, error) {
		tenant := r.URL.Query().Get("tenant")
		if tenant != "" {
			if err := registry.ValidateTenantID(tenant); err != nil {
				return 0, nil, err
			}
		}
		list, err := is.List(r.Context(), tenant)
		return http.StatusOK, map[string]any{"isolations": list}, err
	})
	s.Handle("GET /v1/isolations/{tenant}", func(r *http.Request) (int, any, error) {
		in, err := is.Latest(r.Context(), r.PathValue("tenant"))
		return http.StatusOK, in, err
	})
	s.Handle("POST /v1/isolations/{tenant}/{command}", func(r *http.Request) (int, any, error) {
		tenant := r.PathValue("tenant")
		if err := registry.ValidateTenantID(tenant); err != nil {
			return 0, nil, err
		}
		in, err := is.Command(r.Context(), tenant, r.PathValue("command"))
		return http.StatusOK, in, err
	})
	s.Handle("POST /v1/isolations/{tenant}/resume", func(r *http.Request) (int, any, error) {
		var req isolate.ResumeRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		in, err := is.Resume(r.Context(), r.PathValue("tenant"), req.Until)
		return http.StatusOK, in, err
	})
	s.Handle("PUT /v1/tenants/{id}/sandbox-twin", func(r *http.Request) (int, any, error) {
		var req TwinRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		req.Tenant = r.PathValue("id")
		return http.StatusOK, req, is.SetTwin(r.Context(), req.Tenant, req.Twin, req.By)
	})
	s.Handle("GET /v1/env", func(r *http.Request) (int, any, error) {
		env, err := is.Env(r.Context())
		return http.StatusOK, EnvRequest{Env: env}, err
	})
	s.Handle("PUT /v1/env", func(r *http.Request) (int, any, error) {
		var req EnvRequest
		if err := DecodeJSON(r, &req); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, req, is.SetEnv(r.Context(), req.Env, req.By)
	})
}

// StartIsolation starts an isolation (or, with DryRun, returns nothing and
// fills plan).
func (c *Client) StartIsolation(ctx context.Context, req isolate.Request) (*isolate.Info, error) {
	var out isolate.Info
	return &out, c.Do(ctx, http.MethodPost, "/v1/isolations", req, &out)
}

// PlanIsolation returns the plan of an isolation (a dry run).
func (c *Client) PlanIsolation(ctx context.Context, req isolate.Request) (*isolate.Plan, error) {
	req.DryRun = true
	var out isolate.Plan
	return &out, c.Do(ctx, http.MethodPost, "/v1/isolations", req, &out)
}

// Isolation returns the tenant's newest isolation.
func (c *Client) Isolation(ctx context.Context, tenant string) (*isolate.Info, error) {
	var out isolate.Info
	return &out, c.Do(ctx, http.MethodGet, "/v1/isolations/"+url.PathEscape(tenant), nil, &out)
}

// IsolationCommand sends cutback or complete to the tenant's isolation.
func (c *Client) IsolationCommand(ctx context.Context, tenant, command string) (*isolate.Info, error) {
	var out isolate.Info
	return &out, c.Do(ctx, http.MethodPost, "/v1/isolations/"+url.PathEscape(tenant)+"/"+url.PathEscape(command), nil, &out)
}

// ResumeIsolation resumes the tenant's isolation held by --until, to stop
// again after until ("" runs to the end).
func (c *Client) ResumeIsolation(ctx context.Context, tenant, until string) (*isolate.Info, error) {
	var out isolate.Info
	return &out, c.Do(ctx, http.MethodPost, "/v1/isolations/"+url.PathEscape(tenant)+"/resume", isolate.ResumeRequest{Until: until}, &out)
}

// SetSandboxTwin marks twin as tenant's sandbox twin ("" clears it).
func (c *Client) SetSandboxTwin(ctx context.Context, tenant, twin, by string) (*TwinRequest, error) {
	var out TwinRequest
	return &out, c.Do(ctx, http.MethodPut, "/v1/tenants/"+url.PathEscape(tenant)+"/sandbox-twin", TwinRequest{Twin: twin, By: by}, &out)
}

// Env returns the environment's kind ("" unmarked).
func (c *Client) Env(ctx context.Context) (string, error) {
	var out EnvRequest
	err := c.Do(ctx, http.MethodGet, "/v1/env", nil, &out)
	return out.Env, err
}

// SetEnv marks the environment sandbox or production.
func (c *Client) SetEnv(ctx context.Context, env, by string) error {
	return c.Do(ctx, http.MethodPut, "/v1/env", EnvRequest{Env: env, By: by}, nil)
}
