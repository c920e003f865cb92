// Package bench holds tenantry's benchmark harnesses, the ones `tenantry
// bench` runs. Each measures one part against a baseline measured in the
// same run, because on a shared machine only a ratio from one run means
// much: the tenant router against a bare connection pool (Route), the
// gateway against calling the OMS instances directly (Gateway), the OMS
// alone (OMS), and a move's copy against a raw COPY pipe with the pause at
// promotion under load (Move). The HTTP harnesses send their requests with
// load's client and summarise latencies with load's histogram.
//
// The `go test -bench` benchmarks of route, gateway and verify are separate
// and use nothing from here.
package bench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"tenantry/localpg"
)

// tenant is the one tenant every harness works as.
const tenant = "bench"

// clusterFor returns c, or when c is nil a temporary local cluster in a new
// temporary directory; release destroys what clusterFor created.
func clusterFor(ctx context.Context, c *localpg.Cluster, name string, log *slog.Logger) (_ *localpg.Cluster, release func(), err error) {
	if c != nil {
		return c, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "tenantry-"+name+"-")
	if err != nil {
		return nil, nil, err
	}
	// When we are root the cluster runs as an unprivileged user, which
	// must reach the cluster directory inside this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	log.Info("starting temporary cluster", "dir", dir)
	c, err = localpg.Create(ctx, localpg.Config{Dir: filepath.Join(dir, "pg"), Name: name})
	if err == nil {
		err = c.Start(ctx)
	}
	release = func() {
		if c != nil {
			_ = c.Destroy(context.WithoutCancel(ctx))
		}
		os.RemoveAll(dir)
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return c, release, nil
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// median of xs (0 for none); xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
