package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"tenantry/control"
	"tenantry/pgtest"
	"tenantry/registry"
	"tenantry/stack"
)

// guardAPI is a control plane on loopback over a fresh registry, with
// external stacks "shared" (the default route's) and "spare" (no traffic),
// and tenants acme and globex served by the default route.
func guardAPI(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	store, err := registry.OpenStore(ctx, c.DSN(pgtest.MustDB(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	svc, err := control.NewService(control.Config{Store: store, Secret: []byte("cli-guard-test")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.NewServer(svc, "adm_cli")
	if err != nil {
		t.Fatal(err)
	}
	provider := &stack.ExternalProvider{Store: store}
	srv.EnableStacks(provider, store)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	for _, name := range []string{"shared", "spare"} {
		if _, err := provider.Deploy(ctx, stack.Spec{Name: name, Version: "v1", Instances: 1, URLs: []string{"http://127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.CreateCluster(ctx, registry.Cluster{Name: "main", Members: []registry.Member{
		{Name: "main-0", Host: c.Host, Port: c.Port, Role: registry.RolePrimary}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateAlias(ctx, registry.Alias{Name: "pool", Cluster: "main", Database: "pool"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme", "globex"} {
		if _, err := store.CreateTenant(ctx, id, "pool"); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SetRoute(ctx, registry.Route{Tenant: registry.DefaultRoute, Backends: []registry.Backend{{Stack: "shared", Weight: 100}}}, 0); err != nil {
		t.Fatal(err)
	}
	return hs.URL
}

// TestMain_TrafficGuard: `stack stop` of a stack that routes send traffic
// to, and `route delete default`, are refused without --force and say which
// routes and tenants would break (issue 16, item 8).
func TestMain_TrafficGuard(t *testing.T) {
	api := guardAPI(t)
	t.Setenv("TENANTRY_TOKEN", "adm_cli")
	tests := []struct {
		name string
		args []string
		code int
		want []string // in stdout (exit 0) or stderr
	}{
		{"stop the default route's stack", []string{"stack", "stop", "shared"}, exitFailure, []string{"route default", "acme, globex", "--force", "in_use"}},
		{"delete the default route", []string{"route", "delete", "default"}, exitFailure, []string{"route default", "acme, globex", "--force", "in_use"}},
		{"stop a stack without traffic", []string{"stack", "stop", "spare"}, exitOK, []string{"stack spare stopped"}},
		{"delete the default route, forced", []string{"route", "delete", "default", "--force"}, exitOK, []string{"route default deleted"}},
		{"stop with --force", []string{"stack", "stop", "shared", "--force"}, exitOK, []string{"stack shared stopped"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			t.Setenv("TENANTRY_TOKEN", "adm_cli")
			args := append([]string{"--api", api}, tc.args...)
			code := MainContext(context.Background(), args, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tc.code, out.String(), errb.String())
			}
			said := out.String()
			if code != exitOK {
				said = errb.String()
			}
			for _, w := range tc.want {
				if !strings.Contains(said, w) {
					t.Errorf("%q does not say %q", said, w)
				}
			}
		})
	}
}
