package control_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"tenantry/registry"
)

func TestServer_TenantLimits(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	if _, err := a.client.CreateTenant(ctx, "acme", testAlias); err != nil {
		t.Fatal(err)
	}
	before := a.version(t)
	auth := "Bearer " + testToken
	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"negative", "/v1/tenants/acme/limits", map[string]any{"rate": -1}, 400, "invalid_request"},
		{"too large", "/v1/tenants/acme/limits", map[string]any{"concurrency": registry.MaxLimit + 1}, 400, "invalid_request"},
		{"wrong type", "/v1/tenants/acme/limits", map[string]any{"rate": "fast"}, 400, "invalid_request"},
		{"unknown field", "/v1/tenants/acme/limits", map[string]any{"burst": 5}, 400, "invalid_request"},
		{"bad json", "/v1/tenants/acme/limits", `{"rate":`, 400, "invalid_request"},
		{"bad tenant", "/v1/tenants/Acme/limits", map[string]any{"rate": 1}, 400, "invalid_request"},
		{"unknown tenant", "/v1/tenants/nobody/limits", map[string]any{"rate": 1}, 404, "not_found"},
	} {
		got := a.send(t, http.MethodPut, tc.path, auth, tc.body)
		// 400s may carry a finer code (unknown_field, invalid_json).
		if got.status != tc.status || got.code == "" || (tc.status != 400 && got.code != tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, got.status, got.body, tc.status, tc.code)
		}
	}
	a.wantUnchanged(t, before)

	out, err := a.client.SetTenantLimits(ctx, "acme", registry.Limits{Rate: 50, Concurrency: 4})
	if err != nil || out.Tenant != "acme" || out.Rate != 50 || out.Concurrency != 4 {
		t.Fatalf("SetTenantLimits = %+v, %v", out, err)
	}
	snap, err := a.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Limits["acme"]; got != (registry.Limits{Rate: 50, Concurrency: 4}) {
		t.Fatalf("registry limits %+v", got)
	}
	if _, err := a.client.SetTenantLimits(ctx, "nobody", registry.Limits{Rate: 1}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown tenant through the client: %v, want ErrNotFound", err)
	}
}
