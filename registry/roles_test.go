package registry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/dbconn"
	"tenantry/pgtest"
	"tenantry/registry"
)

// TestStore_GrantReader: the reader role reads snapshots, listens, and
// registers, heartbeats and acknowledges as a router — and can change
// nothing else, nor read clusters' credentials.
func TestStore_GrantReader(t *testing.T) {
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	owner, _ := mustStore(t)
	seed(t, owner)
	v, err := registry.NewVault(owner, []byte("secret"))
	must(t, err)
	must(t, v.CreateCluster(ctx, registry.Cluster{Name: "c9"}, dbconn.Credential{User: "admin", Password: "hunter2"}))
	role := fmt.Sprintf("reader_%d", time.Now().UnixNano())
	admin, err := c.Connect(ctx, "postgres")
	must(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'rpw'")
	must(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = admin.Exec(context.Background(), "DROP ROLE "+role)
	})
	// Idempotent, and safe from replicas starting at once.
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- owner.GrantReader(ctx, role) }()
	}
	for range 4 {
		must(t, <-errs)
	}

	var db string
	must(t, owner.Pool().QueryRow(ctx, "SELECT current_database()").Scan(&db))
	cfg := c.Config(db)
	cfg.Credential = dbconn.Credential{User: role, Password: "rpw"}
	reader, err := registry.ConnectStore(ctx, cfg.String(), nil)
	must(t, err)
	defer reader.Close()
	snap, err := reader.Snapshot(ctx)
	must(t, err)
	if snap.Tenants["acme"] == nil || snap.Clusters["c1"] == nil {
		t.Fatalf("reader snapshot misses the registry: %+v", snap)
	}
	must(t, reader.RegisterRouter(ctx, "r1"))
	must(t, reader.Heartbeat(ctx, "r1", 1))
	must(t, reader.AckEpoch(ctx, "r1", "acme", 1))
	must(t, reader.DeregisterRouter(ctx, "r1"))
	must(t, reader.WriteStackStats(ctx, "g1", map[string]registry.StackStats{"blue": {Requests: 3}}))

	denied := func(what string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as the reader: %v, want permission denied", what, err)
		}
	}
	denied("set limits", reader.SetTenantLimits(ctx, "acme", registry.Limits{Rate: 1}))
	_, err = reader.SetPlacement(ctx, "acme", 1, "pool-1", registry.StatePaused)
	denied("set placement", err)
	_, _, err = reader.CreateAPIKey(ctx, "acme")
	denied("create api key", err)
	denied("create cluster", reader.CreateCluster(ctx, registry.Cluster{Name: "evil"}))
	var n int
	denied("read credentials", reader.Pool().QueryRow(ctx, "SELECT count(*) FROM cluster_credentials").Scan(&n))
	_, err = reader.Pool().Exec(ctx, "CREATE TABLE public.mine (x int)")
	denied("create table", err)
	_, err = reader.Pool().Exec(ctx, "CREATE TEMP TABLE mine (x int)")
	denied("create temp table", err)
	if _, err := reader.Pool().Exec(ctx, "LISTEN "+pgx.Identifier{registry.NotifyChannel}.Sanitize()); err != nil {
		t.Errorf("listen as the reader: %v", err)
	}
}
