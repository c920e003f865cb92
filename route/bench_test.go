package route

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/pgtest"
)

// benchSetup makes a database with kv and a tenant role "bench-<n>" and
// returns the BenchConfig to reach it.
func benchSetup(tb testing.TB, tenant string) BenchConfig {
	tb.Helper()
	c := pgtest.MustCluster(tb)
	db := mustKV(tb, c, "A")
	mustRole(tb, c, tenant)
	user, pw := credentials(tenant)
	return BenchConfig{Host: c.Host, Port: c.Port, Database: db, Tenant: tenant, User: user, Password: pw}
}

func BenchmarkRouterTx(b *testing.B) {
	cfg := benchSetup(b, "bench-router")
	src := &fakeSource{}
	src.publish(SingleTenantSnapshot(cfg.Host, cfg.Port, cfg.Database, cfg.Tenant))
	r := newRouter(b, src, nil, nil)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.Tx(ctx, cfg.Tenant, readOne); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDirectPool(b *testing.B) {
	cfg := benchSetup(b, "bench-direct")
	pcfg, err := pgxpool.ParseConfig("host=" + cfg.Host + " dbname=" + cfg.Database + " user=" + cfg.User +
		" password=" + cfg.Password + " sslmode=disable")
	if err != nil {
		b.Fatal(err)
	}
	pcfg.ConnConfig.Port = uint16(cfg.Port)
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

func TestBench(t *testing.T) {
	cfg := benchSetup(t, "bench-func")
	cfg.Workers, cfg.Duration, cfg.Rounds = 4, 600*time.Millisecond, 2
	res, err := Bench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.RouterTx == 0 || res.DirectTx == 0 || res.Ratio <= 0 {
		t.Fatalf("result %+v: want transactions on both sides", res)
	}
	t.Logf("router %.0f tx/s, direct %.0f tx/s, ratio %.3f", res.RouterTPS, res.DirectTPS, res.Ratio)
}
