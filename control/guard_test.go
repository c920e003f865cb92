package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tenantry/control"
	"tenantry/pgtest"
	"tenantry/registry"
)

// TestServer_AliasDatabaseRefused: an alias on one of PostgreSQL's own
// databases, or on a database another alias of the cluster already uses, is
// refused before anything is created or recorded (issue 16, item 5).
func TestServer_AliasDatabaseRefused(t *testing.T) {
	a := newAPI(t)
	auth := "Bearer " + testToken
	tests := []struct {
		name       string
		alias      map[string]any
		status     int
		code, want string // want: in the message
	}{
		{"template0", map[string]any{"name": "t0", "cluster": "main", "database": "template0"}, 400, "invalid_request", "system database"},
		{"template1", map[string]any{"name": "t1", "cluster": "main", "database": "template1"}, 400, "invalid_request", "system database"},
		{"postgres", map[string]any{"name": "pg", "cluster": "main", "database": "postgres"}, 400, "invalid_request", "system database"},
		{"alias named postgres, database defaulted", map[string]any{"name": "postgres", "cluster": "main"}, 400, "invalid_request", "system database"},
		{"database of another alias", map[string]any{"name": "second", "cluster": "main", "database": a.db}, 409, "in_use", "belongs to alias " + testAlias},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.version(t)
			got := a.send(t, "POST", "/v1/aliases", auth, tc.alias)
			if got.status != tc.status || got.code != tc.code || !strings.Contains(got.body, tc.want) {
				t.Fatalf("%d %s, want %d %s saying %q", got.status, got.body, tc.status, tc.code, tc.want)
			}
			a.wantUnchanged(t, before)
		})
	}
	// Nothing reached PostgreSQL's own databases.
	conn, err := pgx.Connect(context.Background(), pgtest.MustCluster(t).DSN("template1"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var tables int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Error("template1 has an orders table: the OMS schema was applied to it")
	}
	// The client maps the code back to the sentinel.
	_, err = a.client.CreateAlias(context.Background(), registry.Alias{Name: "third", Cluster: "main", Database: a.db})
	if !errors.Is(err, control.ErrInUse) {
		t.Errorf("client: alias on a used database: err = %v, want control.ErrInUse", err)
	}
}

// TestServer_TrafficGuard: stopping a stack that routes send traffic to, or
// deleting the default route, is refused without force, and the refusal
// names the routes and tenants that would break (issue 16, item 8).
func TestServer_TrafficGuard(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	auth := "Bearer " + testToken
	for _, name := range []string{"blue", "green", "spare", "idle"} {
		if got := a.send(t, "POST", "/v1/stacks", auth, map[string]any{"name": name, "version": "v1", "instances": 1, "urls": []string{"http://127.0.0.1:1"}}); got.status != http.StatusCreated {
			t.Fatalf("deploy %s: %d %s", name, got.status, got.body)
		}
	}
	for _, id := range []string{"acme", "globex", "initech"} {
		if _, err := a.client.CreateTenant(ctx, id, testAlias); err != nil {
			t.Fatal(err)
		}
	}
	setRoute := func(t *testing.T, tenant string, backends ...registry.Backend) {
		t.Helper()
		if err := a.client.SetRoute(ctx, tenant, backends); err != nil {
			t.Fatal(err)
		}
	}
	setRoute(t, control.DefaultRouteName, registry.Backend{Stack: "blue", Weight: 100})
	setRoute(t, "acme", registry.Backend{Stack: "green", Weight: 90}, registry.Backend{Stack: "spare", Weight: 10})
	setRoute(t, "initech", registry.Backend{Stack: "blue", Weight: 100}, registry.Backend{Stack: "idle", Weight: 0})

	tests := []struct {
		name         string
		method, path string
		status       int
		code         string
		routes       []string // details of a refusal
		tenants      []string
	}{
		{"stop the default route's stack", "POST", "/v1/stacks/blue/stop", 409, "in_use", []string{"default", "initech"}, []string{"globex", "initech"}},
		{"stop a tenant's main stack", "POST", "/v1/stacks/green/stop", 409, "in_use", []string{"acme"}, []string{"acme"}},
		{"stop a stack with a small weight", "POST", "/v1/stacks/spare/stop", 409, "in_use", []string{"acme"}, []string{"acme"}},
		{"delete the default route", "DELETE", "/v1/routes/default", 409, "in_use", []string{"default"}, []string{"globex"}},
		{"bad force", "POST", "/v1/stacks/blue/stop?force=maybe", 400, "invalid_request", nil, nil},
		{"stop a stack routed with weight 0", "POST", "/v1/stacks/idle/stop", 200, "", nil, nil},
		{"delete a tenant's own route", "DELETE", "/v1/routes/acme", 200, "", nil, nil},
		{"stop with force", "POST", "/v1/stacks/green/stop?force=true", 200, "", nil, nil},
		{"delete the default route with force", "DELETE", "/v1/routes/default?force=true", 200, "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.version(t)
			got := a.send(t, tc.method, tc.path, auth, nil)
			if got.status != tc.status || got.code != tc.code {
				t.Fatalf("%d %s, want %d %q", got.status, got.body, tc.status, tc.code)
			}
			if tc.status < 300 {
				return
			}
			a.wantUnchanged(t, before)
			if tc.code != "in_use" {
				return
			}
			var e struct {
				Error struct {
					Message string              `json:"message"`
					Details map[string][]string `json:"details"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(got.body), &e); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(e.Error.Details["routes"], tc.routes) || !reflect.DeepEqual(e.Error.Details["tenants"], tc.tenants) {
				t.Errorf("details %v, want routes %v and tenants %v", e.Error.Details, tc.routes, tc.tenants)
			}
			for _, s := range append(append([]string{"force"}, tc.routes...), tc.tenants...) {
				if !strings.Contains(e.Error.Message, s) {
					t.Errorf("message %q does not name %q", e.Error.Message, s)
				}
			}
		})
	}
	snap, err := a.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"blue": registry.StackReady, "spare": registry.StackReady, "green": registry.StackStopped, "idle": registry.StackStopped} {
		if got := snap.Stacks[name].Status; got != want {
			t.Errorf("stack %s is %s, want %s", name, got, want)
		}
	}
	if _, ok := snap.Routes[registry.DefaultRoute]; ok {
		t.Error("the default route is still there after a forced delete")
	}
}
