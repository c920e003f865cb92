package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/control"
	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/platform"
	"tenantry/registry"
	"tenantry/tenanttable"
	"tenantry/verify"
)

// MoveConfig configures Move. Zero values mean the documented defaults.
type MoveConfig struct {
	// Orders of history for the moved tenant; each order is three rows
	// (order, line, fulfilment). Default 350,000 (over a million rows).
	Orders int
	// Binary is the tenantry executable for stack instances.
	Binary string
	// Rate of the load during the promotion; default 200 requests/s.
	Rate     float64
	Progress io.Writer
}

// MoveResult is what Move measured.
type MoveResult struct {
	Rows            int64   `json:"rows"`
	CopySeconds     float64 `json:"copy_seconds"`
	CopyPipeSeconds float64 `json:"copy_pipe_seconds"`
	CopyRatio       float64 `json:"copy_ratio"`

	// CopyPipeBinarySeconds is the same pipe in binary format, rows
	// batched into 60 KiB messages as psql's pipes do; CopyRatioBinary is
	// CopySeconds over it (the goal: ≤ 1.0).
	CopyPipeBinarySeconds float64 `json:"copy_pipe_binary_seconds"`
	CopyRatioBinary       float64 `json:"copy_ratio_binary"`
	// CopyIndexesBuilt are the indexes the move's copy built after loading
	// their tables instead of during the load (logrepl.CopyOptions
	// .DeferIndexPages); the pipes load into every index.
	CopyIndexesBuilt int `json:"copy_indexes_built"`

	PauseMS        float64 `json:"pause_ms"`
	PausePhasesMS  any     `json:"pause_phases_ms"`
	FailedRequests int64   `json:"failed_requests"`
	Requests       int64   `json:"requests"`
	VerifyRows     int64   `json:"verify_rows"`
	VerifyRowsPerS float64 `json:"verify_rows_per_s"`
	// VerifyBareRowsPerS is the bare scan verify is measured against: the
	// hash statement verify runs per key range, run instead over each
	// table's whole tenant on both sides at once, as comparing the two
	// copies by hand takes (verify.Checksum). VerifyAgainRowsPerS is
	// verify.Compare between the same copies, as the move's verify step
	// runs it, in rounds alternating with the bare scan; VerifyRatio is the
	// median of the rounds' Compare / bare ratios (see verifyBare).
	// VerifyBareOneSideRowsPerS is the bare statement on the source alone,
	// half the work. VerifyRowsPerS above is the move's own verify step,
	// right after the copy (the target's autovacuum may be running then),
	// one run: VerifyRatioMove is it over VerifyBareRowsPerS.
	VerifyBareRowsPerS        float64 `json:"verify_bare_rows_per_s"`
	VerifyAgainRowsPerS       float64 `json:"verify_again_rows_per_s"`
	VerifyRatio               float64 `json:"verify_ratio"`
	VerifyRatioMove           float64 `json:"verify_ratio_move"`
	VerifyBareOneSideRowsPerS float64 `json:"verify_bare_one_side_rows_per_s"`

	// PauseMS and PausePhasesMS are medians over the flips under load
	// (promote, cutback, promote, ...); PauseMSMax is the longest pause
	// and PauseMSFlips each flip's in order.
	PauseMSMax   float64   `json:"pause_ms_max"`
	PauseMSFlips []float64 `json:"pause_ms_flips"`
}

// Move measures a move on a fresh local platform: copy-to-parity time
// of a tenant of over a million rows against a raw COPY TO STDOUT | COPY
// FROM STDIN of the same rows between the same clusters (the same tables in
// parallel, as many at once as the subscription's sync workers), the pause
// of five flips under load (promote, cutback, promote, cutback, promote; the
// first two seconds into the load, right after verify) with the failed
// requests, and verify throughput.
func Move(ctx context.Context, opts MoveConfig) (*MoveResult, error) {
	if opts.Orders == 0 {
		opts.Orders = 350_000
	}
	if opts.Rate == 0 {
		opts.Rate = 200
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	r, _, stop, err := startPlatform(ctx, "move", opts.Binary)
	if err != nil {
		return nil, err
	}
	defer stop()
	fmt.Fprintln(out, "platform up")
	lcfg, cat, err := stockedTenant(ctx, r, tenant, platform.PooledAlias, opts.Rate, 7)
	if err != nil {
		return nil, err
	}
	if err := r.SeedHistory(ctx, tenant, opts.Orders, cat[tenant]); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "tenant seeded with %d orders\n", opts.Orders)
	if _, err := r.Service.CreateCluster(ctx, control.CreateClusterRequest{Name: "bench-dedicated", Standbys: 0}); err != nil {
		return nil, err
	}
	for _, a := range []string{"bench-target", "bench-pipe", "bench-pipe-binary"} {
		if err := r.Service.CreateAlias(ctx, registry.Alias{Name: a, Cluster: "bench-dedicated", Database: a}); err != nil {
			return nil, err
		}
	}
	res := &MoveResult{}
	snap, err := r.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	// Every copy starts from the same quiet state: the rows loaded before
	// it vacuumed (else autovacuum of them runs during the next copy, on
	// the same cluster) and both clusters checkpointed.
	if err := settleCopy(ctx, r, snap, platform.PooledAlias); err != nil {
		return nil, err
	}
	if res.CopyPipeSeconds, res.Rows, err = copyPipe(ctx, r, snap, tenant, platform.PooledAlias, "bench-pipe", textPipe); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "raw COPY pipe: %d rows in %.2f s\n", res.Rows, res.CopyPipeSeconds)
	if err := settleCopy(ctx, r, snap, "bench-pipe", platform.PooledAlias); err != nil {
		return nil, err
	}
	if res.CopyPipeBinarySeconds, _, err = copyPipe(ctx, r, snap, tenant, platform.PooledAlias, "bench-pipe-binary", binaryPipe); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "raw binary COPY pipe: %.2f s\n", res.CopyPipeBinarySeconds)
	if err := settleCopy(ctx, r, snap, "bench-pipe-binary", platform.PooledAlias); err != nil {
		return nil, err
	}

	mv, err := r.Moves.Start(ctx, move.StartRequest{Tenant: tenant, To: "bench-target"})
	if err != nil {
		return nil, err
	}
	st, err := r.Moves.Wait(ctx, mv.ID, func(i *move.Info) bool { return i.Step == "ready" && i.Data.Phase == move.PhaseReady })
	if err != nil {
		return nil, err
	}
	res.CopySeconds = round2(st.Data.CopySeconds)
	res.CopyRatio = round2(st.Data.CopySeconds / res.CopyPipeSeconds)
	res.CopyRatioBinary = round2(st.Data.CopySeconds / res.CopyPipeBinarySeconds)
	for _, t := range st.Data.Copy {
		res.CopyIndexesBuilt += t.IndexesBuilt
	}
	if v := st.Data.Verify; v != nil {
		res.VerifyRows, res.VerifyRowsPerS = v.Rows, float64(int64(v.RowsPerSec))
	}
	fmt.Fprintf(out, "move copy to parity: %.2f s (%d indexes built after their tables' load); verify %.0f rows/s\n",
		res.CopySeconds, res.CopyIndexesBuilt, res.VerifyRowsPerS)
	if err := verifyBare(ctx, r, snap, res); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "bare hash scan: %.0f rows/s both sides at once (%.0f on the source alone); verify again %.0f rows/s, ratio %.2f\n",
		res.VerifyBareRowsPerS, res.VerifyBareOneSideRowsPerS, res.VerifyAgainRowsPerS, res.VerifyRatio)

	pause, summary, err := flipsUnderLoad(ctx, r.Moves, mv.ID, lcfg, cat, out)
	if err != nil {
		return nil, err
	}
	res.PauseMS, res.PauseMSMax, res.PauseMSFlips, res.PausePhasesMS = pause.MS, pause.MaxMS, pause.FlipsMS, pause.PhasesMS
	res.FailedRequests, res.Requests = summary.Failures, summary.Requests
	fmt.Fprintf(out, "%d flips under load: pause median %.1f ms, max %.1f ms; %d requests, %d failed\n",
		len(pause.FlipsMS), res.PauseMS, res.PauseMSMax, res.Requests, res.FailedRequests)
	return res, nil
}

// verifyRounds is how many times verifyBare measures each figure.
const verifyRounds = 3

// verifyBare measures, in verifyRounds alternating rounds after the move's
// verify: verify.Checksum of the tenant on the source and the move's
// target at once (the bare scan; the copies must agree) and on the source
// alone, and verify.Compare between them as the move runs it (the copies
// must agree). It sets res's bare figures and VerifyAgainRowsPerS to the
// medians and VerifyRatio to the median of the rounds' Compare / bare
// ratios: on a shared machine one pair of runs says little.
func verifyBare(ctx context.Context, r *platform.Running, snap *registry.Snapshot, res *MoveResult) error {
	var pools [2]*pgxpool.Pool
	for i, alias := range []string{platform.PooledAlias, "bench-target"} {
		ep, err := snap.AliasEndpoint(alias)
		if err != nil {
			return err
		}
		if pools[i], err = r.AdminPool(ctx, ep); err != nil {
			return err
		}
		defer pools[i].Close()
	}
	rows := func(sums []verify.TableSum) (n int64) {
		for _, s := range sums {
			n += s.Rows
		}
		return n
	}
	both := func() (float64, error) {
		var sums [2][]verify.TableSum
		var errs [2]error
		var wg sync.WaitGroup
		start := time.Now()
		for i, p := range pools {
			wg.Go(func() { sums[i], errs[i] = verify.Checksum(ctx, p, tenant) })
		}
		wg.Wait()
		secs := time.Since(start).Seconds()
		if err := errors.Join(errs[:]...); err != nil {
			return 0, fmt.Errorf("bare scan: %w", err)
		}
		if !slices.Equal(sums[0], sums[1]) {
			return 0, fmt.Errorf("bare scan: the copies differ: %v against %v", sums[0], sums[1])
		}
		return float64(rows(sums[0])) / secs, nil
	}
	one := func() (float64, error) {
		start := time.Now()
		sums, err := verify.Checksum(ctx, pools[0], tenant)
		if err != nil {
			return 0, fmt.Errorf("bare scan: %w", err)
		}
		return float64(rows(sums)) / time.Since(start).Seconds(), nil
	}
	compare := func() (float64, error) {
		rep, err := verify.Compare(ctx, pools[0], pools[1], tenant, verify.Options{})
		if err != nil {
			return 0, fmt.Errorf("verify again: %w", err)
		}
		return rep.RowsPerSec, nil
	}
	var bare, single, again, ratios []float64
	for round := range verifyRounds {
		var b, v float64
		var err error
		// Alternate which goes first, so that neither always finds the
		// other's pages in the caches.
		if round%2 == 0 {
			if b, err = both(); err == nil {
				v, err = compare()
			}
		} else if v, err = compare(); err == nil {
			b, err = both()
		}
		if err != nil {
			return err
		}
		s, err := one()
		if err != nil {
			return err
		}
		bare, again, single, ratios = append(bare, b), append(again, v), append(single, s), append(ratios, v/b)
	}
	res.VerifyBareRowsPerS = float64(int64(median(bare)))
	res.VerifyBareOneSideRowsPerS = float64(int64(median(single)))
	res.VerifyAgainRowsPerS = float64(int64(median(again)))
	res.VerifyRatio = round2(median(ratios))
	res.VerifyRatioMove = round2(res.VerifyRowsPerS / res.VerifyBareRowsPerS)
	return nil
}

// copyPipe copies tenant's rows of every tenant table from alias src to
// alias dst with COPY ... TO STDOUT piped into COPY ... FROM STDIN in format
// f, tables in parallel (at most logrepl.DefaultCopyWorkers at once, as the
// move's copy), and times it.
func copyPipe(ctx context.Context, r *platform.Running, snap *registry.Snapshot, tenant, src, dst string, f pipeFormat) (float64, int64, error) {
	open := func(alias string) (*pgxpool.Pool, error) {
		ep, err := snap.AliasEndpoint(alias)
		if err != nil {
			return nil, err
		}
		return r.AdminPool(ctx, ep)
	}
	sp, err := open(src)
	if err != nil {
		return 0, 0, err
	}
	defer sp.Close()
	dp, err := open(dst)
	if err != nil {
		return 0, 0, err
	}
	defer dp.Close()
	tables, err := tenanttable.Names(ctx, sp)
	if err != nil {
		return 0, 0, err
	}
	// Foreign keys would make parallel loads wait on each other's parents;
	// a raw pipe into an empty copy is measured without them, as the
	// subscription's table sync also loads tables independently.
	if _, err := dp.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var mu sync.Mutex
	var total int64
	var firstErr error
	sem := make(chan struct{}, logrepl.DefaultCopyWorkers)
	var wg sync.WaitGroup
	for _, t := range tables {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := pipeTable(ctx, sp, dp, tenant, t, f)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return round2(time.Since(start).Seconds()), total, firstErr
}

// settleCopy runs VACUUM (ANALYZE) on the tenant tables of alias loaded,
// then a CHECKPOINT on the clusters of loaded and of every alias of
// checkpoint.
func settleCopy(ctx context.Context, r *platform.Running, snap *registry.Snapshot, loaded string, checkpoint ...string) error {
	for i, alias := range append([]string{loaded}, checkpoint...) {
		ep, err := snap.AliasEndpoint(alias)
		if err != nil {
			return err
		}
		p, err := r.AdminPool(ctx, ep)
		if err != nil {
			return err
		}
		if i == 0 {
			err = vacuumTenantTables(ctx, p)
		}
		if err == nil {
			_, err = p.Exec(ctx, "CHECKPOINT")
		}
		p.Close()
		if err != nil {
			return fmt.Errorf("settle %s: %w", alias, err)
		}
	}
	return nil
}

func vacuumTenantTables(ctx context.Context, p *pgxpool.Pool) error {
	tables, err := tenanttable.Names(ctx, p)
	if err != nil {
		return err
	}
	return logrepl.Vacuum(ctx, p, tables)
}

// pipeFormat is how copyPipe pipes: binary or text COPY format; buffered
// batches the rows, which pgconn's COPY TO hands over one per write, into
// 60 KiB messages for COPY FROM (pgconn sends one message per read).
type pipeFormat struct{ binary, buffered bool }

var (
	// textPipe is the pipe copy_pipe_seconds has always timed.
	textPipe   = pipeFormat{}
	binaryPipe = pipeFormat{binary: true, buffered: true}
)

func pipeTable(ctx context.Context, sp, dp *pgxpool.Pool, tenant, table string, f pipeFormat) (int64, error) {
	sc, err := sp.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer sc.Release()
	dc, err := dp.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer dc.Release()
	if _, err := dc.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		return 0, err
	}
	id := pgx.Identifier{table}.Sanitize()
	lit, err := tenantLiteral(tenant)
	if err != nil {
		return 0, err
	}
	opt := ""
	if f.binary {
		opt = " (FORMAT binary)"
	}
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		var w io.Writer = pw
		bw := bufio.NewWriterSize(pw, 60<<10)
		if f.buffered {
			w = bw
		}
		_, err := sc.Conn().PgConn().CopyTo(ctx, w,
			"COPY (SELECT * FROM "+id+" WHERE tenant_id = "+lit+") TO STDOUT"+opt)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		errc <- err
	}()
	tag, err := dc.Conn().PgConn().CopyFrom(ctx, pr, "COPY "+id+" FROM STDIN"+opt)
	if err != nil {
		pr.CloseWithError(err)
		<-errc
		return 0, fmt.Errorf("copy %s: %w", table, err)
	}
	if err := <-errc; err != nil {
		return 0, fmt.Errorf("copy %s out: %w", table, err)
	}
	return tag.RowsAffected(), nil
}

// tenantLiteral quotes a tenant id as an SQL literal (COPY takes no
// parameters); ids are validated first, and cannot hold a quote.
func tenantLiteral(s string) (string, error) {
	if err := registry.ValidateTenantID(s); err != nil {
		return "", err
	}
	return "'" + s + "'", nil
}
