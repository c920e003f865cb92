package route

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tenantry/localpg"
	"tenantry/pgtest"
	"tenantry/registry"
)

// mustManyRoles creates login roles t_<prefix>-1 .. t_<prefix>-n sharing one
// SCRAM verifier made here with one PBKDF2 iteration: hashing 2,000
// passwords on the server, and 4,096 iterations at every login on both
// sides, would spend the test's time on authentication, not routing.
func mustManyRoles(tb testing.TB, c *localpg.Cluster, prefix string, n int) []string {
	tb.Helper()
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	verifier := scramVerifier(tb, password(prefix+"-1"), 1)
	var tenants []string
	var b strings.Builder
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		tenants = append(tenants, id)
		fmt.Fprintf(&b, "CREATE ROLE %s LOGIN PASSWORD %s;\n", pgx.Identifier{"t_" + id}.Sanitize(), quoteLiteral(verifier))
	}
	if _, err := conn.Exec(ctx, b.String()); err != nil {
		tb.Fatalf("create roles: %v", err)
	}
	return tenants
}

// scramVerifier returns a SCRAM-SHA-256 secret as pg_authid stores it.
func scramVerifier(tb testing.TB, password string, iterations int) string {
	tb.Helper()
	salt := make([]byte, 16)
	_, _ = crand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		tb.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key")))
}

// Every tenant's role has the same password (see mustManyRoles).
func sharedPassword(prefix string) func(string) (string, string) {
	return func(tenant string) (string, string) { return "t_" + tenant, password(prefix + "-1") }
}

// manyTenants is how many tenants TestRouter_ThousandsOfTenantsShareCap
// serves: 2,000, as the issue asks. Every tenant needs its own server
// session (its own role), so the test runs at the server's connection setup
// rate: about 30 s on an idle 2-core machine, two minutes on a busy one.
// TENANTRY_ROUTE_TENANTS overrides it for quick local runs.
func manyTenants(tb testing.TB) int {
	if s := os.Getenv("TENANTRY_ROUTE_TENANTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			tb.Fatalf("TENANTRY_ROUTE_TENANTS=%q: want a positive number", s)
		}
		return n
	}
	return 2000
}

func TestRouter_ThousandsOfTenantsShareCap(t *testing.T) {
	const (
		connCap = 20
		workers = 32
	)
	tenantCount := manyTenants(t)
	c := pgtest.MustCluster(t)
	db := mustKV(t, c, "pool")
	tenants := mustManyRoles(t, c, "many", tenantCount)
	tp := newTopo().cluster("c1", c).alias("pool", "c1", db)
	for _, id := range tenants {
		tp.tenant(id, "pool", registry.StateActive, 1)
	}
	src := &fakeSource{}
	src.publish(tp.snap())
	r := newRouter(t, src, nil, func(cfg *Config) {
		cfg.Credentials = sharedPassword("many")
		cfg.ClusterConnCap = connCap
		cfg.TenantMaxConns = 2
		cfg.IdleTimeout = 300 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(tenantCount)*200*time.Millisecond)
	defer cancel()

	// Sample the server's sessions of these roles throughout the run.
	var (
		maxSessions, samples atomic.Int64
		sampling             sync.WaitGroup
		stopSampling         = make(chan struct{})
	)
	mon := pgtest.MustPool(t, c, "postgres")
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var n int64
			if err := mon.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 't\_many-%'`).Scan(&n); err == nil {
				samples.Add(1)
				if n > maxSessions.Load() {
					maxSessions.Store(n)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	served := make([]atomic.Bool, tenantCount)
	var (
		next     atomic.Int64
		failures atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				// Most workers walk all tenants once; a few keep hammering a
				// handful of hot tenants, which must not starve the rest.
				var i int
				if w%4 == 3 {
					if next.Load() >= int64(tenantCount) {
						return
					}
					i = rand.IntN(10)
				} else if i = int(next.Add(1) - 1); i >= tenantCount {
					return
				}
				if _, err := readV(ctx, r, tenants[i]); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				served[i].Store(true)
			}
		}()
	}
	wg.Wait()
	close(stopSampling)
	sampling.Wait()
	elapsed := time.Since(start)

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d transactions failed; first: %v", n, firstErr.Load())
	}
	for i := range served {
		if !served[i].Load() {
			t.Errorf("tenant %s never served", tenants[i])
		}
	}
	if samples.Load() < 10 {
		t.Fatalf("only %d samples of pg_stat_activity", samples.Load())
	}
	if m := maxSessions.Load(); m > connCap {
		t.Errorf("server saw %d sessions of the tenants' roles, cap %d", m, connCap)
	}
	t.Logf("%d tenants served in %s by %d workers; max sessions %d (cap %d) over %d samples",
		tenantCount, elapsed, workers, maxSessions.Load(), connCap, samples.Load())

	r.Reap(time.Now().Add(time.Hour))
	eventually(t, 10*time.Second, "idle pools reaped", func() bool {
		var n int
		_ = mon.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 't\_many-%'`).Scan(&n)
		return n == 0
	})
}

func TestRouter_Metrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := activeTenantRouter(t, "metered", "A", func(cfg *Config) { cfg.Registerer = reg })
	for range 3 {
		if _, err := readV(context.Background(), r, "metered"); err != nil {
			t.Fatal(err)
		}
	}
	var m dto.Metric
	if err := r.m.transactions.WithLabelValues("metered", resultOK).Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 3 {
		t.Errorf("transactions_total{ok} = %v, want 3", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, f := range families {
		series[f.GetName()] = len(f.GetMetric())
	}
	want := map[string]int{
		"tenantry_router_transactions_total":      5,
		"tenantry_router_pool_connections":        3,
		"tenantry_router_cluster_connections":     1,
		"tenantry_router_cluster_connections_cap": 1,
		"tenantry_router_buffered":                1,
	}
	for name, n := range want {
		if series[name] != n {
			t.Errorf("%s: %d series, want %d (all: %v)", name, series[name], n, series)
		}
	}
}
