package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"tenantry/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestRoute(t *testing.T) {
	res, err := Route(context.Background(), RouteConfig{Cluster: pgtest.MustCluster(t),
		Workers: 4, Duration: 600 * time.Millisecond, Rounds: 2, Warmup: 100 * time.Millisecond,
		Tenants: 500, Active: 30, Swaps: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.RouterTx == 0 || res.DirectTx == 0 || res.Ratio <= 0 || len(res.RoundRatios) != 2 {
		t.Fatalf("result %+v: want transactions on both sides in 2 rounds", res)
	}
	if res.Tenants != 500 || res.Active != 30 || res.Swaps != 5 || res.SnapshotSwapMs <= 0 || res.SnapshotSwapMaxMs < res.SnapshotSwapMs || res.RSSMB <= 0 {
		t.Fatalf("result %+v: want 5 timed swaps of 500 tenants and the memory", res)
	}
	t.Logf("router %.0f tx/s, direct %.0f tx/s, ratio %.3f; swap %.3f ms median, %.3f max; rss %.1f MB (%s)",
		res.RouterTPS, res.DirectTPS, res.Ratio, res.SnapshotSwapMs, res.SnapshotSwapMaxMs, res.RSSMB, res.RSSSource)
}

func TestOMS(t *testing.T) {
	res, err := OMS(context.Background(), OMSConfig{Cluster: pgtest.MustCluster(t), Workers: 2, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Orders == 0 || res.Errors != 0 || res.P99Ms < res.P50Ms || res.P50Ms <= 0 {
		t.Fatalf("result %+v: want orders, no errors, p50 <= p99", res)
	}
	t.Logf("%.0f orders/s, p50 %.2f ms, p99 %.2f ms", res.OrdersPerS, res.P50Ms, res.P99Ms)
}

func TestGateway(t *testing.T) {
	res, err := Gateway(context.Background(), GatewayConfig{Cluster: pgtest.MustCluster(t),
		Workers: 2, Duration: 600 * time.Millisecond, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.GatewayRPS <= 0 || res.DirectRPS <= 0 || res.RelayRPS <= 0 || res.RelayRatio <= 0 ||
		res.GatewayErrors != 0 || res.DirectErrors != 0 || res.RelayErrors != 0 || len(res.RoundRatios) != 2 {
		t.Fatalf("result %+v: want reads on every side (gateway, direct, relay) in 2 rounds, no errors", res)
	}
	t.Logf("gateway %.0f req/s, direct %.0f req/s, relay %.0f req/s, ratio %.2f, relay ratio %.2f", res.GatewayRPS, res.DirectRPS, res.RelayRPS, res.Ratio, res.RelayRatio)
}

func TestGateway_static(t *testing.T) {
	res, err := Gateway(context.Background(), GatewayConfig{Backend: BackendStatic,
		Workers: 2, Duration: 400 * time.Millisecond, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != BackendStatic || res.GatewayRPS <= 0 || res.DirectRPS <= 0 || res.RelayRPS <= 0 ||
		res.GatewayErrors != 0 || res.DirectErrors != 0 || res.RelayErrors != 0 || len(res.RoundRatios) != 2 {
		t.Fatalf("result %+v: want static reads on every side (gateway, direct, relay) in 2 rounds, no errors", res)
	}
	if _, err := Gateway(context.Background(), GatewayConfig{Backend: "nginx"}); !errors.Is(err, ErrUnknownBackend) {
		t.Fatalf("backend nginx: err %v, want ErrUnknownBackend", err)
	}
	t.Logf("gateway %.0f req/s, direct %.0f req/s, relay %.0f req/s, ratio %.2f, relay ratio %.2f", res.GatewayRPS, res.DirectRPS, res.RelayRPS, res.Ratio, res.RelayRatio)
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
