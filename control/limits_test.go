package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	if info, err := a.client.Tenant(ctx, "acme"); err != nil || info.Limits != (registry.Limits{Rate: 50, Concurrency: 4}) {
		t.Fatalf("GET /v1/tenants/acme limits %+v, %v", info, err)
	}
	if _, err := a.client.SetTenantLimits(ctx, "nobody", registry.Limits{Rate: 1}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown tenant through the client: %v, want ErrNotFound", err)
	}
}

// TestServer_TenantPages: GET /v1/tenants answers pages of at most limit
// tenants with a cursor; the client follows them.
func TestServer_TenantPages(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("page-%d", i)
		if _, err := a.client.CreateTenant(ctx, id, testAlias); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	auth := "Bearer " + testToken
	var got []string
	for after, pages := "", 0; ; pages++ {
		path := "/v1/tenants?limit=2"
		if after != "" {
			path += "&after=" + after
		}
		ans := a.send(t, http.MethodGet, path, auth, nil)
		var page struct {
			Tenants   []registry.Tenant `json:"tenants"`
			NextAfter *string           `json:"next_after"`
		}
		if ans.status != http.StatusOK || json.Unmarshal([]byte(ans.body), &page) != nil || len(page.Tenants) > 2 || pages > 3 {
			t.Fatalf("%s: %d %s", path, ans.status, ans.body)
		}
		for _, tn := range page.Tenants {
			got = append(got, tn.ID)
		}
		if page.NextAfter == nil {
			break
		}
		after = *page.NextAfter
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages listed %v, want %v", got, want)
	}
	all, err := a.client.Tenants(ctx)
	if err != nil || len(all) != len(want) {
		t.Fatalf("client.Tenants = %d tenants, %v", len(all), err)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after=Bad_Id"} {
		if ans := a.send(t, http.MethodGet, "/v1/tenants?"+q, auth, nil); ans.status != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, ans.status, ans.body)
		}
	}
}
