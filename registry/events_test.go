package registry_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"tenantry/registry"
)

func TestStore_APIKeys(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	seed(t, s)
	_, k1, err := s.CreateAPIKey(ctx, "acme")
	must(t, err)
	secret2, k2, err := s.CreateAPIKey(ctx, "acme")
	must(t, err)

	wantErr(t, s.RevokeAPIKey(ctx, "acme", "not-an-id"), registry.ErrInvalid)
	if _, err := s.CreateTenant(ctx, "globex", "pool-1"); err != nil {
		t.Fatal(err)
	}
	// A key is revoked only through its own tenant.
	wantErr(t, s.RevokeAPIKey(ctx, "globex", k1.ID), registry.ErrNotFound)
	must(t, s.RevokeAPIKey(ctx, "acme", k1.ID))

	keys, err := s.APIKeys(ctx, "acme")
	must(t, err)
	if len(keys) != 2 || keys[0].ID != k1.ID || keys[0].RevokedAt == nil || keys[1].ID != k2.ID || keys[1].RevokedAt != nil {
		t.Fatalf("keys = %+v, want %s revoked and %s in force", keys, k1.ID, k2.ID)
	}
	snap, err := s.Snapshot(ctx)
	must(t, err)
	if len(snap.KeysByHash) != 1 || snap.KeysByHash[registry.HashAPIKey(secret2)] == nil {
		t.Fatalf("snapshot keys = %v, want only the second key", snap.KeysByHash)
	}
	if _, err := s.APIKeys(ctx, "nobody"); err == nil {
		t.Fatal("APIKeys of an unknown tenant succeeded")
	}

	ids, err := s.RevokeTenantKeys(ctx, "acme")
	must(t, err)
	if !slices.Equal(ids, []string{k2.ID}) {
		t.Fatalf("RevokeTenantKeys = %v, want [%s]", ids, k2.ID)
	}
	must(t, s.DeleteTenant(ctx, "acme"))
	if _, err := s.APIKeys(ctx, "acme"); err == nil {
		t.Fatal("keys of a deleted tenant are still listed")
	}

	evs, err := s.Events(ctx, registry.EventFilter{Subject: "acme"})
	must(t, err)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	want := []string{registry.EventTenantCreated, registry.EventKeyCreated, registry.EventKeyCreated,
		registry.EventKeyRevoked, registry.EventKeyRevoked, registry.EventTenantDeleted}
	if !slices.Equal(kinds, want) {
		t.Fatalf("events of acme = %v, want %v", kinds, want)
	}
	var d struct {
		KeyID string `json:"key_id"`
	}
	must(t, json.Unmarshal(evs[3].Data, &d))
	if d.KeyID != k1.ID {
		t.Fatalf("first revocation event names key %q, want %s", d.KeyID, k1.ID)
	}
}

func TestStore_AddEvent(t *testing.T) {
	ctx := context.Background()
	s, _ := mustStore(t)
	v0, err := s.Version(ctx)
	must(t, err)
	must(t, s.AddEvent(ctx, "cluster.registered", "c9", "registered", map[string]int{"members": 2}))
	must(t, s.AddEvent(ctx, "cluster.checked", "c9", "", nil))
	wantErr(t, s.AddEvent(ctx, "Bad Kind", "c9", "", nil), registry.ErrInvalid)
	if v, _ := s.Version(ctx); v != v0 {
		t.Fatalf("AddEvent bumped the registry version %d -> %d", v0, v)
	}
	evs, err := s.Events(ctx, registry.EventFilter{Subject: "c9"})
	must(t, err)
	if len(evs) != 2 || evs[0].Kind != "cluster.registered" || string(evs[0].Data) != `{"members": 2}` || evs[1].Data != nil {
		t.Fatalf("events = %+v", evs)
	}
	next, err := s.Events(ctx, registry.EventFilter{Subject: "c9", AfterID: evs[0].ID})
	must(t, err)
	if len(next) != 1 || next[0].ID != evs[1].ID {
		t.Fatalf("events after %d = %+v", evs[0].ID, next)
	}
	must(t, s.AddEvent(ctx, "clusterx", "c9", "", nil))
	// Kind selects a kind and the kinds under it, not others it prefixes.
	byKind, err := s.Events(ctx, registry.EventFilter{Kind: "cluster"})
	must(t, err)
	if len(byKind) != 2 || byKind[0].Kind != "cluster.registered" || byKind[1].Kind != "cluster.checked" {
		t.Fatalf("events of kind cluster = %+v", byKind)
	}
	newest, err := s.Events(ctx, registry.EventFilter{Subject: "c9", Limit: 2, Newest: true})
	must(t, err)
	if len(newest) != 2 || newest[0].Kind != "clusterx" || newest[1].Kind != "cluster.checked" {
		t.Fatalf("newest two events = %+v", newest)
	}
}
