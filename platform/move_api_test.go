package platform

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/move"
	"tenantry/registry"
	"tenantry/workflow"
)

// TestMove_BadInputThroughAPI: every refused move request answers a clear
// 4xx with a stable code through the control plane API and changes nothing
// (no workflow, registry version unchanged); a second move of a tenant is
// refused with the existing move's id; commands that do not fit the move's
// state are refused.
func TestMove_BadInputThroughAPI(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	runMoves(t)
	c := &control.Client{BaseURL: plat.APIURL, Token: plat.Local.State.AdminToken}
	const tenant = "mv-api"
	if _, err := plat.Service.CreateTenant(ctx, tenant, PooledAlias); err != nil {
		t.Fatal(err)
	}
	// An alias on the pooled cluster itself, and one whose schema is ahead.
	if err := plat.Service.CreateAlias(ctx, registry.Alias{Name: "pool-1-other", Cluster: PooledCluster, Database: "pool_1_other"}); err != nil {
		t.Fatal(err)
	}
	if err := plat.Service.CreateAlias(ctx, registry.Alias{Name: "ahead", Cluster: "dedicated-1", Database: "ahead"}); err != nil {
		t.Fatal(err)
	}
	ahead := aliasPool(t, ctx, "ahead")
	if _, err := ahead.Exec(ctx, "INSERT INTO oms_schema_version (version) VALUES (999)"); err != nil {
		t.Fatal(err)
	}

	// A tenant whose delete has fenced its placement.
	const deleting = "mv-deleting"
	nt, err := plat.Service.CreateTenant(ctx, deleting, PooledAlias)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plat.Store.SetPlacement(ctx, deleting, nt.Tenant.Epoch, PooledAlias, registry.StateFenced); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := plat.Service.DeleteTenant(context.Background(), deleting); err != nil {
			t.Errorf("finish the delete of %s: %v", deleting, err)
		}
	})

	version := func() int64 {
		v, err := plat.Store.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	moves := func() int {
		ms, err := c.Moves(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	before := version()
	cases := []struct {
		name   string
		req    move.StartRequest
		status int
		code   string
		is     error
	}{
		{"invalid tenant id", move.StartRequest{Tenant: "Bad;Tenant", To: dedicatedAlias}, 400, "invalid_request", registry.ErrInvalid},
		{"invalid alias name", move.StartRequest{Tenant: tenant, To: "x'; drop table y;--"}, 400, "invalid_request", registry.ErrInvalid},
		{"unknown tenant", move.StartRequest{Tenant: "nobody-here", To: dedicatedAlias}, 404, "not_found", registry.ErrNotFound},
		{"unknown alias", move.StartRequest{Tenant: tenant, To: "nowhere"}, 404, "not_found", registry.ErrNotFound},
		{"same alias", move.StartRequest{Tenant: tenant, To: PooledAlias}, 400, "invalid_request", registry.ErrInvalid},
		{"same cluster", move.StartRequest{Tenant: tenant, To: "pool-1-other"}, 400, "invalid_request", registry.ErrInvalid},
		{"schema version mismatch", move.StartRequest{Tenant: tenant, To: "ahead"}, 409, "conflict", registry.ErrConflict},
		{"tenant being deleted", move.StartRequest{Tenant: deleting, To: dedicatedAlias}, 409, "conflict", registry.ErrConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.StartMove(ctx, tc.req)
			var ae *control.APIError
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
				t.Fatalf("StartMove = %v; want %d %s", err, tc.status, tc.code)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("client error %v does not unwrap to %v", err, tc.is)
			}
		})
	}
	if v := version(); v != before {
		t.Errorf("refused requests changed the registry: version %d -> %d", before, v)
	}
	if n := moves(); n != 0 {
		t.Fatalf("refused requests created %d moves", n)
	}

	first, err := c.StartMove(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.StartMove(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias})
	var ae *control.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "move_active" {
		t.Fatalf("second move = %v; want 409 move_active", err)
	}
	if !errors.Is(err, workflow.ErrActive) || ae.Details["existing_id"] != first.ID {
		t.Errorf("second move error %v (details %v): want ErrActive naming %s", err, ae.Details, first.ID)
	}
	if n := moves(); n != 1 {
		t.Fatalf("%d moves of %s, want 1", n, tenant)
	}
	// Cutback and complete before any promotion do not fit the move.
	for _, cmd := range []string{move.SignalCutback, move.SignalComplete, "explode"} {
		_, err := c.MoveCommand(ctx, first.ID, cmd)
		if !errors.As(err, &ae) || ae.Status/100 != 4 {
			t.Errorf("%s before promotion = %v; want a 4xx", cmd, err)
		}
	}
	st, err := c.MoveCommand(ctx, first.ID, move.SignalCancel)
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if st.Status != workflow.StatusCancelled {
		t.Fatalf("cancelled move is %s", st.Status)
	}
	if p := placement(t, ctx, tenant); p.Alias != PooledAlias || p.State != registry.StateActive {
		t.Fatalf("after cancel the tenant is %s on %s", p.State, p.Alias)
	}
	if n := countRows(t, ctx, dedicatedAlias, tenant, st.Data.Tables); n != 0 {
		t.Errorf("cancel left %d rows of %s on the target", n, tenant)
	}
}
