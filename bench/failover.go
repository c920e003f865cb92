package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"tenantry/check"
	"tenantry/control"
	"tenantry/ha"
	"tenantry/load"
	"tenantry/platform"
	"tenantry/registry"
	"tenantry/workflow"
)

// FailoverConfig configures Failover. Zero values mean the documented
// defaults.
type FailoverConfig struct {
	// Binary is the tenantry executable for stack instances and the
	// gateway.
	Binary string
	// Rate of the load; default 100 requests/s.
	Rate     float64
	Progress io.Writer
}

// FailoverResult is what Failover measured.
type FailoverResult struct {
	// A kill -9 of the primary (asynchronous replication): DetectS from the
	// kill to the monitor declaring the primary dead, PromoteS from then to
	// the standby taking writes, FirstWriteS from the kill to the first
	// write acknowledged through the gateway (probed every 20 ms, no
	// retries).
	DetectS     float64 `json:"detect_s"`
	PromoteS    float64 `json:"promote_s"`
	FirstWriteS float64 `json:"first_write_s"`
	// FailoverFailedRequests are the load's failed requests across that
	// failover (the load retries what the platform calls retryable).
	FailoverFailedRequests int64 `json:"failover_failed_requests"`
	// A planned switchover under load: the tenants' pause and the load's
	// failed requests.
	SwitchoverPauseMS        float64 `json:"switchover_pause_ms"`
	SwitchoverRequests       int64   `json:"switchover_requests"`
	SwitchoverFailedRequests int64   `json:"switchover_failed_requests"`
	// Acknowledged writes the checker did not find after a kill -9 of the
	// primary: with the cluster's synchronous replication on (`cluster
	// set-sync`: commits wait for the standby's flush), and without.
	LostWritesSync  int `json:"lost_writes_sync"`
	LostWritesAsync int `json:"lost_writes_async"`
	// Acknowledged writes checked in each case.
	CheckedSync  int     `json:"checked_writes_sync"`
	CheckedAsync int     `json:"checked_writes_async"`
	Rate         float64 `json:"rate"`
}

const (
	haCluster = "bench-ha"
	haTenant  = "bench-ha"
)

// Failover measures, on a fresh local platform with a cluster of a primary
// and one standby: a switchover under load, then a kill -9 of the primary
// under load with asynchronous and with synchronous replication.
func Failover(ctx context.Context, opts FailoverConfig) (*FailoverResult, error) {
	if opts.Rate == 0 {
		opts.Rate = 100
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	r, dir, stop, err := startPlatform(ctx, "failover", opts.Binary)
	if err != nil {
		return nil, err
	}
	defer stop()
	if _, err := r.Service.CreateCluster(ctx, control.CreateClusterRequest{Name: haCluster, Standbys: 1}); err != nil {
		return nil, err
	}
	if err := r.Service.CreateAlias(ctx, registry.Alias{Name: haCluster, Cluster: haCluster}); err != nil {
		return nil, err
	}
	lcfg, cat, err := stockedTenant(ctx, r, haTenant, haCluster, opts.Rate, 11)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "platform up; cluster %s with a standby; load %.0f req/s\n", haCluster, opts.Rate)
	res := &FailoverResult{Rate: opts.Rate}
	b := &haBench{r: r, lcfg: lcfg, cat: cat, dir: dir}

	// A planned switchover.
	var in *ha.Info
	sum, _, err := b.underLoad(ctx, "switchover", func() error {
		in, err = b.switchover(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.SwitchoverPauseMS, res.SwitchoverRequests, res.SwitchoverFailedRequests = round2(in.Data.PauseMS), sum.Requests, sum.Failures
	fmt.Fprintf(out, "switchover %s -> %s: paused %.1f ms; %d requests, %d failed\n", in.Data.From, in.Data.To,
		in.Data.PauseMS, sum.Requests, sum.Failures)

	// kill -9, asynchronous replication.
	var rec ha.FailoverRecord
	sum, rep, err := b.underLoad(ctx, "async", func() (err error) {
		rec, err = b.killPrimary(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.FailoverFailedRequests = sum.Failures
	res.LostWritesAsync, res.CheckedAsync = lost(rep), rep.Orders+rep.Fulfils+rep.Cancels
	fmt.Fprintf(out, "kill -9 of %s: %s promoted; first write %.2f s after the kill; %d requests, %d failed; %d of %d acknowledged writes lost\n",
		rec.Old, rec.New, b.firstWriteS, sum.Requests, sum.Failures, res.LostWritesAsync, res.CheckedAsync)
	res.DetectS, res.PromoteS, res.FirstWriteS = b.detectS, round2(rec.PromotedAt.Sub(rec.DetectedAt).Seconds()), b.firstWriteS

	// Rejoin the old primary, make replication synchronous, kill -9 again.
	if err := r.Plane.HA.Rejoin(ctx, haCluster, rec.Old); err != nil {
		return nil, fmt.Errorf("rejoin %s: %w", rec.Old, err)
	}
	if err := b.setSync(ctx); err != nil {
		return nil, err
	}
	_, rep, err = b.underLoad(ctx, "sync", func() (err error) {
		rec, err = b.killPrimary(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.LostWritesSync, res.CheckedSync = lost(rep), rep.Orders+rep.Fulfils+rep.Cancels
	fmt.Fprintf(out, "kill -9 of %s with synchronous replication: %d of %d acknowledged writes lost\n", rec.Old, res.LostWritesSync, res.CheckedSync)
	return res, nil
}

// lost counts acknowledged writes the checker did not find: missing
// orders and state changes.
func lost(rep *check.Report) int {
	n := 0
	for _, v := range rep.Violations {
		if v.Kind == check.KindMissingOrder || v.Kind == check.KindStatus {
			n++
		}
	}
	return n
}

type haBench struct {
	r    *platform.Running
	lcfg load.Config
	cat  load.Catalog
	dir  string

	detectS, firstWriteS float64
}

// underLoad runs load with a ledger for a second, then fn, then a second
// more, and returns the load's summary and the checker's report.
func (b *haBench) underLoad(ctx context.Context, name string, fn func() error) (load.Summary, *check.Report, error) {
	path := filepath.Join(b.dir, name+".ledger")
	f, err := os.Create(path)
	if err != nil {
		return load.Summary{}, nil, err
	}
	defer f.Close()
	cfg := b.lcfg
	cfg.Ledger = f
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	var sum load.Summary
	var lerr error
	go func() {
		defer close(done)
		sum, lerr = load.Run(lctx, cfg, b.cat, nil)
	}()
	pause(ctx, time.Second)
	ferr := fn()
	pause(ctx, time.Second)
	stop()
	<-done
	if ferr != nil {
		return sum, nil, ferr
	}
	if lerr != nil && lctx.Err() == nil {
		return sum, nil, lerr
	}
	rep, err := b.r.CheckLedger(ctx, path)
	return sum, rep, err
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (b *haBench) switchover(ctx context.Context) (*ha.Info, error) {
	in, err := b.r.Plane.HA.Switchover(ctx, ha.SwitchoverRequest{Cluster: haCluster})
	if err != nil {
		return nil, err
	}
	for in.Status == workflow.StatusRunning {
		pause(ctx, 50*time.Millisecond)
		if in, err = b.r.Plane.HA.Get(ctx, in.ID); err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if in.Status != workflow.StatusSucceeded {
		return nil, fmt.Errorf("switchover %s: %s", in.Status, in.Error)
	}
	return in, nil
}

// killPrimary kills the cluster's primary, probes writes until one is
// acknowledged, and waits for the monitor's failover record.
func (b *haBench) killPrimary(ctx context.Context) (ha.FailoverRecord, error) {
	snap, err := b.r.Store.Snapshot(ctx)
	if err != nil {
		return ha.FailoverRecord{}, err
	}
	p, _ := snap.Clusters[haCluster].Primary()
	n := len(b.r.Plane.Monitor.Failovers())
	killed := time.Now()
	if err := b.r.Local.KillMember(haCluster, p.Name); err != nil {
		return ha.FailoverRecord{}, err
	}
	first, err := firstWrite(ctx, b.lcfg)
	if err != nil {
		return ha.FailoverRecord{}, err
	}
	for len(b.r.Plane.Monitor.Failovers()) == n {
		pause(ctx, 20*time.Millisecond)
		if ctx.Err() != nil {
			return ha.FailoverRecord{}, ctx.Err()
		}
	}
	rec := b.r.Plane.Monitor.Failovers()[n]
	b.detectS = round2(rec.DetectedAt.Sub(killed).Seconds())
	b.firstWriteS = round2(first.Sub(killed).Seconds())
	return rec, nil
}

// firstWrite writes a product every 20 ms, one attempt each, until one is
// acknowledged, and returns when.
func firstWrite(ctx context.Context, lcfg load.Config) (time.Time, error) {
	cfg := lcfg
	cfg.Retry = load.RetryPolicy{MaxAttempts: 1, AttemptTimeout: 2 * time.Second}
	lc, err := load.NewClient(cfg)
	if err != nil {
		return time.Time{}, err
	}
	tg := cfg.Targets[0]
	for i := 0; ctx.Err() == nil; i++ {
		sku := fmt.Sprintf("first-write-%d-%d", time.Now().UnixNano(), i)
		resp, err := lc.Do(ctx, tg, http.MethodPost, "/v1/products", sku, map[string]any{"sku": sku, "name": "first write"})
		if err == nil && resp.Status/100 == 2 {
			return time.Now(), nil
		}
		pause(ctx, 20*time.Millisecond)
	}
	return time.Time{}, ctx.Err()
}

// setSync turns the cluster's synchronous replication on (`cluster
// set-sync`): commits on its primary wait for the standby's flush.
func (b *haBench) setSync(ctx context.Context) error {
	_, err := b.r.Service.SetSync(ctx, haCluster, control.SetSyncRequest{Sync: true})
	return err
}
