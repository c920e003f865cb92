package registry_test

import (
	"context"
	"testing"
	"time"

	"tenantry/registry"
)

// TestStore_TenantStats: gateways add each tenant's outcomes per stack and
// hour; histograms add bucket by bucket; TenantStats reads one tenant on
// one stack (not its traffic on another stack, not another tenant's), and
// TenantTraffic sums the hour over stacks.
func TestStore_TenantStats(t *testing.T) {
	s, _ := mustStore(t)
	ctx := context.Background()
	hist := func(pairs ...any) []int64 {
		out := make([]int64, registry.LatencyBuckets)
		for i := 0; i < len(pairs); i += 2 {
			out[registry.LatencyBucket(pairs[i].(time.Duration))] += int64(pairs[i+1].(int))
		}
		return out
	}
	now := time.Now().UTC()
	shared := registry.TenantStack{Tenant: "acme", Stack: "shared"}
	// Two gateways add to the same hour: 95 fast requests and 5 of 400 ms.
	must(t, s.AddTenantStats(ctx, now, map[registry.TenantStack]registry.StackStats{
		shared:                              {Requests: 60, Errors: 1, Buckets: hist(5*time.Millisecond, 60)},
		{Tenant: "acme", Stack: "acme-app"}: {Requests: 7, Buckets: hist(time.Second, 7)},
		{Tenant: "zeta", Stack: "shared"}:   {Requests: 50, Buckets: hist(2*time.Second, 50)},
	}))
	must(t, s.AddTenantStats(ctx, now, map[registry.TenantStack]registry.StackStats{
		shared: {Requests: 40, Errors: 2, Buckets: hist(5*time.Millisecond, 35, 400*time.Millisecond, 5)},
	}))
	// An older hour of the same tenant and stack, outside a window that
	// starts this hour.
	must(t, s.AddTenantStats(ctx, now.Add(-3*time.Hour), map[registry.TenantStack]registry.StackStats{
		shared: {Requests: 10, Buckets: hist(3*time.Second, 10)},
	}))
	st, err := s.TenantStats(ctx, "acme", "shared", now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 100 || st.Errors != 3 || st.Buckets[registry.LatencyBucket(400*time.Millisecond)] != 5 {
		t.Fatalf("acme on shared this hour: %+v", st)
	}
	if p99 := st.Quantile(0.99); p99 < 300*time.Millisecond || p99 > 500*time.Millisecond {
		t.Errorf("acme's p99 on shared: %v, want about 400ms (zeta's 2 s requests are not acme's)", p99)
	}
	all, err := s.TenantStats(ctx, "acme", "shared", now.Add(-4*time.Hour))
	if err != nil || all.Requests != 110 {
		t.Errorf("acme on shared over 4 hours: %+v %v", all, err)
	}
	none, err := s.TenantStats(ctx, "acme", "other", now.Add(-4*time.Hour))
	if err != nil || none.Requests != 0 || none.Quantile(0.99) != 0 {
		t.Errorf("acme on a stack it never used: %+v %v", none, err)
	}
	hours, err := s.TenantTraffic(ctx, "acme", now.Add(-4*time.Hour))
	if err != nil || len(hours) != 2 || hours[1].Requests != 107 || hours[0].Requests != 10 {
		t.Errorf("acme's hourly traffic over every stack: %+v %v", hours, err)
	}
	// Counts alone (no stack, no histogram) add to the same hour's figures.
	must(t, s.AddTenantTraffic(ctx, now, map[string]int64{"acme": 3}))
	if hours, err = s.TenantTraffic(ctx, "acme", now.Add(-time.Hour)); err != nil || len(hours) != 1 || hours[0].Requests != 110 {
		t.Errorf("acme's hourly traffic after counts: %+v %v", hours, err)
	}
	wantErr(t, s.AddTenantStats(ctx, now, map[registry.TenantStack]registry.StackStats{{Tenant: "Bad!", Stack: "x"}: {Requests: 1}}), registry.ErrInvalid)
}

// TestStore_SandboxTwin: a tenant's sandbox twin is set, read and cleared;
// bad ids, the tenant itself and an unknown tenant are refused.
func TestStore_SandboxTwin(t *testing.T) {
	s, _ := mustStore(t)
	ctx := context.Background()
	seed(t, s)
	if twin, err := s.SandboxTwin(ctx, "acme"); err != nil || twin != "" {
		t.Fatalf("twin before any mark: %q %v", twin, err)
	}
	must(t, s.SetSandboxTwin(ctx, "acme", "acme-rehearsal"))
	if twin, err := s.SandboxTwin(ctx, "acme"); err != nil || twin != "acme-rehearsal" {
		t.Errorf("twin: %q %v", twin, err)
	}
	wantErr(t, s.SetSandboxTwin(ctx, "acme", "acme"), registry.ErrInvalid)
	wantErr(t, s.SetSandboxTwin(ctx, "acme", "Bad Twin"), registry.ErrInvalid)
	wantErr(t, s.SetSandboxTwin(ctx, "nobody", "acme"), registry.ErrNotFound)
	_, err := s.SandboxTwin(ctx, "nobody")
	wantErr(t, err, registry.ErrNotFound)
	must(t, s.SetSandboxTwin(ctx, "acme", ""))
	if twin, err := s.SandboxTwin(ctx, "acme"); err != nil || twin != "" {
		t.Errorf("twin after clearing: %q %v", twin, err)
	}
}

// TestStore_SetAliasStandbys: the standbys an alias wants change, and show
// in the snapshot.
func TestStore_SetAliasStandbys(t *testing.T) {
	s, _ := mustStore(t)
	ctx := context.Background()
	seed(t, s)
	must(t, s.SetAliasStandbys(ctx, "pool-1", 2))
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := snap.Aliases["pool-1"]; a == nil || a.Standbys != 2 {
		t.Errorf("pool-1 after set: %+v", a)
	}
	wantErr(t, s.SetAliasStandbys(ctx, "pool-1", -1), registry.ErrInvalid)
	wantErr(t, s.SetAliasStandbys(ctx, "nope", 1), registry.ErrNotFound)
}
