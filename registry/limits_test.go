package registry_test

import (
	"context"
	"testing"

	"tenantry/registry"
)

func TestStore_SetTenantLimits(t *testing.T) {
	s, _ := mustStore(t)
	seed(t, s)
	ctx := context.Background()
	v0, err := s.Version(ctx)
	must(t, err)
	for _, tc := range []struct {
		name   string
		tenant string
		l      registry.Limits
		want   error
	}{
		{"negative rate", "acme", registry.Limits{Rate: -1}, registry.ErrInvalid},
		{"huge concurrency", "acme", registry.Limits{Concurrency: registry.MaxLimit + 1}, registry.ErrInvalid},
		{"bad tenant", "Acme", registry.Limits{Rate: 1}, registry.ErrInvalid},
		{"unknown tenant", "nobody", registry.Limits{Rate: 1}, registry.ErrNotFound},
	} {
		wantErr(t, s.SetTenantLimits(ctx, tc.tenant, tc.l), tc.want)
	}
	if v, _ := s.Version(ctx); v != v0 {
		t.Fatalf("refused limits moved the registry version %d -> %d", v0, v)
	}

	must(t, s.SetTenantLimits(ctx, "acme", registry.Limits{Rate: 5, Concurrency: 2}))
	snap, err := s.Snapshot(ctx)
	must(t, err)
	if got := snap.Limits["acme"]; got != (registry.Limits{Rate: 5, Concurrency: 2}) || snap.Version != v0+1 {
		t.Fatalf("snapshot v%d limits %+v", snap.Version, snap.Limits)
	}
	must(t, s.SetTenantLimits(ctx, "acme", registry.Limits{}))
	snap, err = s.Snapshot(ctx)
	must(t, err)
	if _, ok := snap.Limits["acme"]; ok {
		t.Fatalf("limits back to defaults still listed: %+v", snap.Limits)
	}
	evs, err := s.Events(ctx, registry.EventFilter{Subject: "acme"})
	must(t, err)
	n := 0
	for _, e := range evs {
		if e.Kind == registry.EventTenantLimits {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d limit events, want 2: %+v", n, evs)
	}
}
