package control_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/gateway"
	"tenantry/pgtest"
	"tenantry/registry"
	"tenantry/tenantsig"
	"tenantry/tenanttable"
	"tenantry/workflow"
)

// gatewayFor serves a real gateway that follows the registry of a through a
// watcher, in front of one stack instance (a loopback server that answers
// 200) that the default route sends every tenant to.
func gatewayFor(t *testing.T, a *api) (url string, w *registry.Watcher) {
	t.Helper()
	ctx := context.Background()
	instance := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(instance.Close)
	if err := a.store.PutStack(ctx, registry.Stack{Name: "blue", Status: registry.StackReady,
		Instances: []registry.Instance{{URL: instance.URL, Healthy: true}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.store.SetRoute(ctx, registry.Route{Tenant: registry.DefaultRoute,
		Backends: []registry.Backend{{Stack: "blue", Weight: 1}}}, 0); err != nil {
		t.Fatal(err)
	}
	w = registry.NewWatcher(a.store.Pool().Config().ConnString(), registry.WatcherOptions{PollInterval: time.Second})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	g, err := gateway.New(gateway.Config{Source: w, HeaderKey: tenantsig.RootKey(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	t.Cleanup(g.Stop)
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	return hs.URL, w
}

// eventKinds lists the kinds of subject's events, read through the API.
func eventKinds(t *testing.T, a *api, subject string) []string {
	t.Helper()
	evs, err := a.client.Events(context.Background(), subject, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// statusWith sends GET /v1/products through the gateway with key.
func statusWith(t *testing.T, url, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/v1/products", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls the gateway until key answers want.
func waitStatus(t *testing.T, url, key string, want int) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		got := statusWith(t, url, key)
		if got == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway answers %d for the key, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Several keys per tenant: a second key is created, the first revoked; the
// gateway refuses the revoked key (401) from its next snapshot while the
// second keeps working.
func TestTenantKeys_rotateThroughGateway(t *testing.T) {
	ctx := context.Background()
	a := newAPI(t)
	gw, watcher := gatewayFor(t, a)
	nt, err := a.client.CreateTenant(ctx, "acme", testAlias)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := a.client.CreateAPIKey(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if k2.KeyID == nt.KeyID || registry.ValidateAPIKey(k2.APIKey) != nil {
		t.Fatalf("second key %+v", k2)
	}
	waitStatus(t, gw, nt.APIKey, http.StatusOK)
	waitStatus(t, gw, k2.APIKey, http.StatusOK)

	keys, err := a.client.APIKeys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != nt.KeyID || keys[1].ID != k2.KeyID || keys[0].RevokedAt != nil {
		t.Fatalf("keys = %+v", keys)
	}

	if err := a.client.RevokeAPIKey(ctx, "acme", nt.KeyID); err != nil {
		t.Fatal(err)
	}
	v, err := a.store.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	took := waitStatus(t, gw, nt.APIKey, http.StatusUnauthorized)
	if snap := watcher.Current(); snap.Version < v {
		t.Fatalf("the gateway refused the key before its watcher saw version %d (at %d)", v, snap.Version)
	}
	t.Logf("revoked key refused by the gateway %v after the revocation", took)
	if got := statusWith(t, gw, k2.APIKey); got != http.StatusOK {
		t.Fatalf("the second key answers %d after the first was revoked, want 200", got)
	}

	keys, err = a.client.APIKeys(ctx, "acme")
	if err != nil || len(keys) != 2 || keys[0].RevokedAt == nil || keys[1].RevokedAt != nil {
		t.Fatalf("keys after revocation = %+v, %v", keys, err)
	}
	for _, c := range []struct {
		name, tenant, key string
		want              error
	}{
		{"again", "acme", nt.KeyID, registry.ErrNotFound},
		{"malformed id", "acme", "not-a-key-id", registry.ErrInvalid},
		{"unknown tenant", "nobody", k2.KeyID, registry.ErrNotFound},
	} {
		if err := a.client.RevokeAPIKey(ctx, c.tenant, c.key); !errors.Is(err, c.want) {
			t.Errorf("revoke %s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := a.client.CreateAPIKey(ctx, "nobody"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("key for an unknown tenant: %v, want ErrNotFound", err)
	}
	want := []string{registry.EventTenantCreated, registry.EventKeyCreated, registry.EventKeyCreated, registry.EventKeyRevoked}
	if kinds := eventKinds(t, a, "acme"); !slices.Equal(kinds, want) {
		t.Fatalf("events = %v, want %v", kinds, want)
	}
}

// Tenant delete is refused while a workflow of the move family runs for the
// tenant, and changes nothing then; afterwards it leaves no row, role, key,
// placement or route of the tenant, and the other tenant's rows and role
// stay.
func TestDeleteTenant(t *testing.T) {
	ctx := context.Background()
	a := newAPI(t)
	gw, _ := gatewayFor(t, a)
	acme, err := a.client.CreateTenant(ctx, "acme", testAlias)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.CreateTenant(ctx, "globex", testAlias); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.CreateAPIKey(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := a.client.SetRoute(ctx, "acme", []registry.Backend{{Stack: "blue", Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	db := pgtest.MustPool(t, pgtest.MustCluster(t), a.db)
	// More rows than one purge batch, in tables linked by foreign keys.
	if _, err := db.Exec(ctx, `
INSERT INTO products (tenant_id, sku, name) SELECT t, 'sku-' || g, 'p' FROM generate_series(1, 6000) g, unnest(ARRAY['acme', 'globex']) t;
INSERT INTO locations (tenant_id, code, name) SELECT t, 'main', 'Main' FROM unnest(ARRAY['acme', 'globex']) t;
INSERT INTO inventory (tenant_id, product_id, location_id, on_hand)
  SELECT p.tenant_id, p.id, l.id, 5 FROM products p JOIN locations l USING (tenant_id);`); err != nil {
		t.Fatal(err)
	}
	rowsOf := func(tenant string) int64 {
		t.Helper()
		tables, err := tenanttable.Names(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, tbl := range tables {
			var n int64
			if err := db.QueryRow(ctx, "SELECT count(*) FROM "+tbl+" WHERE tenant_id = $1", tenant).Scan(&n); err != nil {
				t.Fatal(err)
			}
			total += n
		}
		return total
	}
	roleExists := func(tenant string) bool {
		t.Helper()
		var ok bool
		if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 't_' || $1)", tenant).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	globexRows := rowsOf("globex")

	t.Run("refused while a move runs", func(t *testing.T) {
		hold := &workflow.Def{Kind: "hold", Family: "move", Start: "hold",
			Steps: map[string]workflow.Step{"hold": func(context.Context, *workflow.Run) (string, error) { return "", nil }}}
		if err := a.runner.Register(hold); err != nil {
			t.Fatal(err)
		}
		id, err := a.runner.Create(ctx, "hold", "acme", nil)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := a.store.Snapshot(ctx)
		_, err = a.client.DeleteTenant(ctx, "acme")
		var ae *control.APIError
		if !errors.Is(err, workflow.ErrActive) || !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Details["existing_id"] != id {
			t.Fatalf("delete during a move = %v (%+v), want 409 move_active naming %s", err, ae, id)
		}
		after, _ := a.store.Snapshot(ctx)
		if after.Version != before.Version || *after.Tenants["acme"] != *before.Tenants["acme"] {
			t.Fatalf("refused delete changed the registry: version %d -> %d", before.Version, after.Version)
		}
		if statusWith(t, gw, acme.APIKey) != http.StatusOK || !roleExists("acme") || rowsOf("acme") == 0 {
			t.Fatal("refused delete changed keys, role or rows")
		}
		if n, err := a.runner.Tick(ctx); err != nil || n != 1 {
			t.Fatalf("finish the move: Tick = %d, %v", n, err)
		}
	})

	d, err := a.client.DeleteTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.KeysRevoked) != 2 || d.Rows["products"] != 6000 || d.Rows["inventory"] != 6000 || d.Database != a.db {
		t.Fatalf("delete = %+v", d)
	}
	if n := rowsOf("acme"); n != 0 {
		t.Fatalf("%d rows of acme left", n)
	}
	if roleExists("acme") {
		t.Fatal("role t_acme left")
	}
	if rowsOf("globex") != globexRows || !roleExists("globex") {
		t.Fatal("delete of acme changed globex's rows or role")
	}
	var keys, routes, tenants int
	if err := a.store.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM api_keys WHERE tenant = 'acme'),
		(SELECT count(*) FROM routes WHERE tenant = 'acme'), (SELECT count(*) FROM tenants WHERE id = 'acme')`).Scan(&keys, &routes, &tenants); err != nil {
		t.Fatal(err)
	}
	if keys != 0 || routes != 0 || tenants != 0 {
		t.Fatalf("registry keeps %d keys, %d routes, %d placements of acme", keys, routes, tenants)
	}
	waitStatus(t, gw, acme.APIKey, http.StatusUnauthorized)
	if _, err := a.client.Tenant(ctx, "acme"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("show deleted tenant: %v, want ErrNotFound", err)
	}
	if _, err := a.client.DeleteTenant(ctx, "acme"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("delete again: %v, want ErrNotFound", err)
	}
	if _, err := a.client.DeleteTenant(ctx, "Bad'; --"); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("delete of a bad id: %v, want ErrInvalid", err)
	}
	kinds := eventKinds(t, a, "acme")
	if len(kinds) < 2 || kinds[len(kinds)-2] != registry.EventTenantPurged || kinds[len(kinds)-1] != registry.EventTenantDeleted {
		t.Fatalf("events of acme end %v, want ... %s %s", kinds, registry.EventTenantPurged, registry.EventTenantDeleted)
	}
}
