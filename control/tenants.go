package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/tenanttable"
	"tenantry/workflow"
)

// Workflows lists workflows; *workflow.Runner implements it. Safe for
// concurrent use.
type Workflows interface {
	List(ctx context.Context, f workflow.Filter) ([]workflow.Workflow, error)
}

var _ Workflows = (*workflow.Runner)(nil)

// moveFamily is the workflow family of moves (move's Def has no Family of
// its own, so its family is its kind). A running workflow of this family
// holds its subject, a tenant: the tenant cannot be deleted meanwhile.
const moveFamily = move.Kind

// purgeBatch is how many rows of a deleted tenant one purge transaction
// deletes.
const purgeBatch = 5000

// NewKey is a new API key: its secret is shown this once.
type NewKey struct {
	Tenant    string    `json:"tenant"`
	KeyID     string    `json:"key_id"`
	APIKey    string    `json:"api_key"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateAPIKey adds a key to tenant. A tenant may hold several keys at once,
// so that a key is rotated without downtime: create the new one, move the
// clients, revoke the old one.
func (s *Service) CreateAPIKey(ctx context.Context, tenant string) (*NewKey, error) {
	secret, k, err := s.cfg.Store.CreateAPIKey(ctx, tenant)
	if err != nil {
		return nil, err
	}
	s.log.Info("api key created", "tenant", tenant, "key_id", k.ID)
	return &NewKey{Tenant: tenant, KeyID: k.ID, APIKey: secret, CreatedAt: k.CreatedAt}, nil
}

// APIKeys lists tenant's keys, revoked ones included (never their secrets).
func (s *Service) APIKeys(ctx context.Context, tenant string) ([]registry.APIKey, error) {
	return s.cfg.Store.APIKeys(ctx, tenant)
}

// RevokeAPIKey revokes one of tenant's keys. Gateways refuse it (401) from
// their next registry snapshot on: at once on the registry's NOTIFY, at the
// latest after their poll interval.
func (s *Service) RevokeAPIKey(ctx context.Context, tenant, id string) error {
	if err := s.cfg.Store.RevokeAPIKey(ctx, tenant, id); err != nil {
		return err
	}
	s.log.Info("api key revoked", "tenant", tenant, "key_id", id)
	return nil
}

// DeletedTenant reports what DeleteTenant removed.
type DeletedTenant struct {
	Tenant      string           `json:"tenant"`
	Alias       string           `json:"alias"`
	Database    string           `json:"database"`
	KeysRevoked []string         `json:"keys_revoked"`
	Rows        map[string]int64 `json:"rows_purged"`
}

// DeleteTenant removes a tenant: it is refused (ErrActive) while a move
// runs for the tenant. Otherwise the placement is fenced (routers stop
// serving the tenant, and the epoch a move would need is gone), every key is
// revoked, the tenant's role is fenced on its cluster (its sessions end),
// its rows are purged from its alias's database in batches, the role is
// dropped, and the placement, route and keys leave the registry. Each step is
// idempotent: a delete that fails half-way is finished by running it again.
// The purge and the deletion are recorded as events.
func (s *Service) DeleteTenant(ctx context.Context, id string) (*DeletedTenant, error) {
	if err := registry.ValidateTenantID(id); err != nil {
		return nil, err
	}
	if s.cfg.Workflows == nil {
		return nil, fmt.Errorf("tenant delete needs the workflow runner to see active moves: %w", ErrNotSupported)
	}
	snap, err := s.cfg.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	t, ok := snap.Tenants[id]
	if !ok {
		return nil, fmt.Errorf("tenant %s: %w", id, registry.ErrNotFound)
	}
	if err := s.refuseActiveMove(ctx, id); err != nil {
		return nil, err
	}
	if t.State != registry.StateFenced {
		fenced, err := s.cfg.Store.SetPlacement(ctx, id, t.Epoch, t.Alias, registry.StateFenced)
		if err != nil {
			return nil, fmt.Errorf("fence placement of %s: %w", id, err)
		}
		// A move created between the check and the fence still holds the
		// tenant: give the placement back and refuse.
		if err := s.refuseActiveMove(ctx, id); err != nil {
			if _, uerr := s.cfg.Store.SetPlacement(ctx, id, fenced.Epoch, t.Alias, t.State); uerr != nil {
				return nil, errors.Join(err, fmt.Errorf("restore placement of %s: %w", id, uerr))
			}
			return nil, err
		}
	}
	out := &DeletedTenant{Tenant: id, Alias: t.Alias}
	if out.KeysRevoked, err = s.cfg.Store.RevokeTenantKeys(ctx, id); err != nil {
		return nil, err
	}
	a, ok := snap.Aliases[t.Alias]
	if !ok {
		return nil, fmt.Errorf("alias %s of tenant %s: %w", t.Alias, id, registry.ErrNotFound)
	}
	out.Database = a.Database
	if out.Rows, err = s.purgeTenant(ctx, snap.Clusters[a.Cluster], a.Database, id); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.DeleteTenant(ctx, id); err != nil {
		return nil, err
	}
	s.log.Info("tenant deleted", "tenant", id, "alias", t.Alias, "keys_revoked", len(out.KeysRevoked))
	return out, nil
}

// refuseActiveMove returns an *workflow.ActiveError when a workflow of the
// move family runs for tenant.
func (s *Service) refuseActiveMove(ctx context.Context, tenant string) error {
	ws, err := s.cfg.Workflows.List(ctx, workflow.Filter{Family: moveFamily, Subject: tenant, Status: workflow.StatusRunning, Limit: 1})
	if err != nil {
		return err
	}
	if len(ws) > 0 {
		return fmt.Errorf("tenant %s cannot be deleted while move %s runs (cancel or complete it first): %w",
			tenant, ws[0].ID, &workflow.ActiveError{Family: moveFamily, Subject: tenant, ExistingID: ws[0].ID})
	}
	return nil
}

// purgeTenant fences the tenant's role on c (ending its sessions), deletes
// its rows from every tenant table of db in batches, records the purge, and
// drops the role.
func (s *Service) purgeTenant(ctx context.Context, c *registry.Cluster, db, tenant string) (map[string]int64, error) {
	if c == nil {
		return nil, fmt.Errorf("cluster of database %s: %w", db, registry.ErrNotFound)
	}
	conn, err := s.AdminConnect(ctx, c, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := provision.Fence(ctx, conn, tenant); err != nil && !errors.Is(err, provision.ErrNoRole) {
		return nil, err
	}
	tables, err := tenanttable.Names(ctx, conn)
	if err != nil {
		return nil, err
	}
	rows, err := logrepl.PurgeTenant(ctx, conn, tenant, tables, purgeBatch, nil)
	if err != nil {
		return rows, err
	}
	var total int64
	for _, n := range rows {
		total += n
	}
	if err := s.cfg.Store.AddEvent(ctx, registry.EventTenantPurged, tenant,
		fmt.Sprintf("%d rows purged from %s/%s, role dropped", total, c.Name, db),
		map[string]any{"cluster": c.Name, "database": db, "rows": rows}); err != nil {
		return rows, err
	}
	if err := provision.DropTenantRole(ctx, conn, tenant); err != nil {
		return rows, err
	}
	return rows, nil
}

// Events returns the registry's event log, of one subject when subject is
// not empty, after afterID, oldest first.
func (s *Service) Events(ctx context.Context, f registry.EventFilter) ([]registry.Event, error) {
	return s.cfg.Store.Events(ctx, f)
}

// tenantRoutes adds the key, tenant-delete and event endpoints.
func (s *Server) tenantRoutes() {
	s.Handle("POST /v1/tenants/{id}/keys", func(r *http.Request) (int, any, error) {
		k, err := s.svc.CreateAPIKey(r.Context(), r.PathValue("id"))
		return http.StatusCreated, k, err
	})
	s.Handle("GET /v1/tenants/{id}/keys", func(r *http.Request) (int, any, error) {
		keys, err := s.svc.APIKeys(r.Context(), r.PathValue("id"))
		return http.StatusOK, map[string]any{"keys": keys}, err
	})
	s.Handle("DELETE /v1/tenants/{id}/keys/{key}", func(r *http.Request) (int, any, error) {
		id, key := r.PathValue("id"), r.PathValue("key")
		err := s.svc.RevokeAPIKey(r.Context(), id, key)
		return http.StatusOK, map[string]string{"tenant": id, "revoked": key}, err
	})
	s.Handle("DELETE /v1/tenants/{id}", func(r *http.Request) (int, any, error) {
		d, err := s.svc.DeleteTenant(r.Context(), r.PathValue("id"))
		if err != nil {
			return 0, nil, withActive(err)
		}
		return http.StatusOK, d, nil
	})
	s.Handle("GET /v1/events", func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		f := registry.EventFilter{Subject: q.Get("subject")}
		if v := q.Get("after"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return 0, nil, fmt.Errorf("%w: after=%q is not a non-negative integer", registry.ErrInvalid, v)
			}
			f.AfterID = n
		}
		evs, err := s.svc.Events(r.Context(), f)
		return http.StatusOK, map[string]any{"events": evs}, err
	})
}
