package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tenantry/ha"
	"tenantry/move"
	"tenantry/registry"
)

// Client calls the control plane API. Errors answered by the server are
// *APIError values that unwrap to the sentinel their code names.
type Client struct {
	BaseURL string
	Token   string
	// HTTP is the client used; nil means a client with a 60 s timeout.
	HTTP *http.Client
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("control plane %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error *APIError `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == nil {
			return &APIError{Status: resp.StatusCode, Code: "http_" + fmt.Sprint(resp.StatusCode), Message: strings.TrimSpace(string(b))}
		}
		e.Error.Status = resp.StatusCode
		return e.Error
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Status returns the platform status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.Do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Clusters lists clusters.
func (c *Client) Clusters(ctx context.Context) ([]*registry.Cluster, error) {
	var out struct {
		Clusters []*registry.Cluster `json:"clusters"`
	}
	return out.Clusters, c.Do(ctx, http.MethodGet, "/v1/clusters", nil, &out)
}

// ClusterStatus returns a cluster with each member's probe and each
// standby's replay lag.
func (c *Client) ClusterStatus(ctx context.Context, name string) (*ClusterStatus, error) {
	var st ClusterStatus
	return &st, c.Do(ctx, http.MethodGet, "/v1/clusters/"+url.PathEscape(name), nil, &st)
}

// WaitFollows reads cluster's status every 20 ms until primary (empty: the
// member the registry names) is its only primary and every other member
// streams from it (ClusterStatus.Follows), as after a switchover, a
// failover or a restart of the platform, and returns that status. When ctx
// ends first it returns the last status read with an error saying so.
func (c *Client) WaitFollows(ctx context.Context, cluster, primary string) (*ClusterStatus, error) {
	var last error
	for {
		st, err := c.ClusterStatus(ctx, cluster)
		if err == nil && st.Follows(primary) {
			return st, nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("cluster %s: %s not the primary of streaming standbys: %w (last error: %v)", cluster, primary, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// AddStandby adds a streaming standby to a cluster (local clusters).
func (c *Client) AddStandby(ctx context.Context, cluster string, req AddStandbyRequest) (*registry.Member, error) {
	var m registry.Member
	return &m, c.Do(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/standbys", req, &m)
}

// RemoveStandby removes a standby of a cluster.
func (c *Client) RemoveStandby(ctx context.Context, cluster, member string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/clusters/"+url.PathEscape(cluster)+"/standbys/"+url.PathEscape(member), nil, nil)
}

// SetSync turns a cluster's synchronous replication on or off.
func (c *Client) SetSync(ctx context.Context, cluster string, sync bool) (*registry.Cluster, error) {
	var out registry.Cluster
	return &out, c.Do(ctx, http.MethodPut, "/v1/clusters/"+url.PathEscape(cluster)+"/sync", SetSyncRequest{Sync: sync}, &out)
}

// Aliases lists aliases.
func (c *Client) Aliases(ctx context.Context) ([]*registry.Alias, error) {
	var out struct {
		Aliases []*registry.Alias `json:"aliases"`
	}
	return out.Aliases, c.Do(ctx, http.MethodGet, "/v1/aliases", nil, &out)
}

// CreateAlias creates an alias (and its database, prepared).
func (c *Client) CreateAlias(ctx context.Context, a registry.Alias) (*registry.Alias, error) {
	var out registry.Alias
	return &out, c.Do(ctx, http.MethodPost, "/v1/aliases", a, &out)
}

// Tenants lists every tenant, following the pages of GET /v1/tenants.
func (c *Client) Tenants(ctx context.Context) ([]*registry.Tenant, error) {
	var all []*registry.Tenant
	for after := ""; ; {
		var page struct {
			Tenants   []*registry.Tenant `json:"tenants"`
			NextAfter *string            `json:"next_after"`
		}
		path := fmt.Sprintf("/v1/tenants?limit=%d", MaxTenantPage)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		if err := c.Do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Tenants...)
		if page.NextAfter == nil {
			return all, nil
		}
		after = *page.NextAfter
	}
}

// CreateTenant creates a tenant on alias and returns its API key.
func (c *Client) CreateTenant(ctx context.Context, id, alias string) (*NewTenant, error) {
	var out NewTenant
	return &out, c.Do(ctx, http.MethodPost, "/v1/tenants", createTenantRequest{ID: id, Alias: alias}, &out)
}

// Tenant returns one tenant and where it is served from.
func (c *Client) Tenant(ctx context.Context, id string) (*TenantInfo, error) {
	var out TenantInfo
	return &out, c.Do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id), nil, &out)
}

// CreateCluster provisions a cluster (local mode).
func (c *Client) CreateCluster(ctx context.Context, req CreateClusterRequest) (*registry.Cluster, error) {
	var out registry.Cluster
	return &out, c.Do(ctx, http.MethodPost, "/v1/clusters", req, &out)
}

// RegisterCluster registers a cluster tenantry did not create, after the
// control plane has checked it (a *ClusterCheckError's problems are in the
// APIError's details).
func (c *Client) RegisterCluster(ctx context.Context, req RegisterClusterRequest) (*registry.Cluster, error) {
	var out registry.Cluster
	return &out, c.Do(ctx, http.MethodPost, "/v1/clusters/register", req, &out)
}

// StartMove starts a move.
func (c *Client) StartMove(ctx context.Context, req move.StartRequest) (*move.Info, error) {
	var out move.Info
	return &out, c.Do(ctx, http.MethodPost, "/v1/moves", req, &out)
}

// Move returns one move, with its events when events is true.
func (c *Client) Move(ctx context.Context, id string, events bool) (*move.Info, error) {
	var out move.Info
	return &out, c.Do(ctx, http.MethodGet, "/v1/moves/"+url.PathEscape(id)+"?events="+fmt.Sprint(events), nil, &out)
}

// Moves lists moves, of one tenant when tenant is not empty.
func (c *Client) Moves(ctx context.Context, tenant string) ([]*move.Info, error) {
	var out struct {
		Moves []*move.Info `json:"moves"`
	}
	return out.Moves, c.Do(ctx, http.MethodGet, "/v1/moves?tenant="+url.QueryEscape(tenant), nil, &out)
}

// MoveCommand sends promote, cutback, complete or cancel to a move and
// waits until the move has acted on it.
func (c *Client) MoveCommand(ctx context.Context, id, command string) (*move.Info, error) {
	var out move.Info
	return &out, c.Do(ctx, http.MethodPost, "/v1/moves/"+url.PathEscape(id)+"/"+url.PathEscape(command), nil, &out)
}

// SetRoute sets the route of tenant (DefaultRouteName for the default route).
func (c *Client) SetRoute(ctx context.Context, tenant string, backends []registry.Backend) error {
	return c.Do(ctx, http.MethodPut, "/v1/routes/"+url.PathEscape(tenant), RouteRequest{Backends: backends}, nil)
}

// Routes lists the routes and the registry version they were read at.
func (c *Client) Routes(ctx context.Context) ([]*registry.Route, int64, error) {
	var out struct {
		Routes  []*registry.Route `json:"routes"`
		Version int64             `json:"version"`
	}
	return out.Routes, out.Version, c.Do(ctx, http.MethodGet, "/v1/routes", nil, &out)
}

// DeleteRoute removes a tenant's own route (it falls back to the default).
// The default route (DefaultRouteName) is deleted only with force: without
// it the answer is ErrInUse naming the tenants it serves.
func (c *Client) DeleteRoute(ctx context.Context, tenant string, force bool) error {
	return c.Do(ctx, http.MethodDelete, "/v1/routes/"+url.PathEscape(tenant)+forceQuery(force), nil, nil)
}

// StopStack stops a stack's instances. A stack that routes send traffic to
// is stopped only with force: without it the answer is ErrInUse naming the
// routes and tenants it serves.
func (c *Client) StopStack(ctx context.Context, name string, force bool) error {
	return c.Do(ctx, http.MethodPost, "/v1/stacks/"+url.PathEscape(name)+"/stop"+forceQuery(force), nil, nil)
}

func forceQuery(force bool) string {
	if force {
		return "?force=true"
	}
	return ""
}

// CreateAPIKey adds an API key to tenant; its secret is in the answer only.
func (c *Client) CreateAPIKey(ctx context.Context, tenant string) (*NewKey, error) {
	var out NewKey
	return &out, c.Do(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(tenant)+"/keys", nil, &out)
}

// APIKeys lists tenant's keys, revoked ones included.
func (c *Client) APIKeys(ctx context.Context, tenant string) ([]registry.APIKey, error) {
	var out struct {
		Keys []registry.APIKey `json:"keys"`
	}
	return out.Keys, c.Do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(tenant)+"/keys", nil, &out)
}

// RevokeAPIKey revokes tenant's key id.
func (c *Client) RevokeAPIKey(ctx context.Context, tenant, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(tenant)+"/keys/"+url.PathEscape(id), nil, nil)
}

// DeleteTenant deletes tenant: its keys, rows, role, placement and route.
// Refused with workflow.ErrActive while a move runs for it.
func (c *Client) DeleteTenant(ctx context.Context, tenant string) (*DeletedTenant, error) {
	var out DeletedTenant
	return &out, c.Do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(tenant), nil, &out)
}

// Events returns the registry's event log of subject (all when empty), after
// the event id after, oldest first.
func (c *Client) Events(ctx context.Context, subject string, after int64) ([]registry.Event, error) {
	var out struct {
		Events []registry.Event `json:"events"`
	}
	q := url.Values{}
	if subject != "" {
		q.Set("subject", subject)
	}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	return out.Events, c.Do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, &out)
}

// Switchover starts a switchover of cluster to its standby to (empty: the
// least behind).
func (c *Client) Switchover(ctx context.Context, cluster, to string) (*ha.Info, error) {
	var in ha.Info
	return &in, c.Do(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/switchover", ha.SwitchoverRequest{To: to}, &in)
}

// Upgrade starts an upgrade of cluster: settings applied to the standby
// to (empty: the least behind), a switchover to it, then to the old
// primary.
func (c *Client) Upgrade(ctx context.Context, cluster, to string, settings map[string]string) (*ha.Info, error) {
	var in ha.Info
	return &in, c.Do(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/upgrade",
		ha.UpgradeRequest{To: to, Settings: settings}, &in)
}

// SwitchoverInfo returns a switchover or an upgrade.
func (c *Client) SwitchoverInfo(ctx context.Context, id string) (*ha.Info, error) {
	var in ha.Info
	return &in, c.Do(ctx, http.MethodGet, "/v1/switchovers/"+url.PathEscape(id), nil, &in)
}

// Rejoin rebuilds a fenced former primary (or a standby) of cluster as a
// streaming standby of its primary.
func (c *Client) Rejoin(ctx context.Context, cluster, member string) error {
	return c.Do(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/members/"+url.PathEscape(member)+"/rejoin", nil, nil)
}
