package route

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/localpg"
	"tenantry/pgtest"
	"tenantry/registry"
)

// benchSetup makes a database with kv and the tenant's role on the shared
// cluster and returns the cluster and the database.
func benchSetup(tb testing.TB, tenant string) (*localpg.Cluster, string) {
	tb.Helper()
	c := pgtest.MustCluster(tb)
	db := mustKV(tb, c, "A")
	mustRole(tb, c, tenant)
	return c, db
}

// readOne is the one-row read both benchmarks run in a transaction.
func readOne(tx pgx.Tx) error {
	var v string
	return tx.QueryRow(context.Background(), "SELECT v FROM kv WHERE k = 1").Scan(&v)
}

func BenchmarkRouterTx(b *testing.B) {
	const tenant = "bench-router"
	c, db := benchSetup(b, tenant)
	src := &fakeSource{}
	src.publish(newTopo().cluster("bench", c).alias("bench", "bench", db).tenant(tenant, "bench", registry.StateActive, 1).snap())
	r := newRouter(b, src, nil, nil)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.Tx(ctx, tenant, readOne); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDirectPool(b *testing.B) {
	const tenant = "bench-direct"
	c, db := benchSetup(b, tenant)
	user, pw := credentials(tenant)
	pcfg, err := pgxpool.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=%s user=%s password=%s sslmode=disable",
		c.Host, c.Port, db, user, pw))
	if err != nil {
		b.Fatal(err)
	}
	pcfg.MaxConns = DefaultTenantMaxConns
	p, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := pgx.BeginTxFunc(ctx, p, pgx.TxOptions{}, readOne); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
