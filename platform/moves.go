package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/backup"
	"tenantry/move"
	"tenantry/verify"
)

// MoveOptions tune the move workflow of a platform (tests shorten them).
type MoveOptions struct {
	// LeaseTTL of the workflow runner; default 10 s (a crashed control
	// plane's moves are taken over after it).
	LeaseTTL time.Duration
	// Config is the base move configuration; Registry, Secret, BackupDir,
	// Backup, VerifyBackup, Parity and Logger are filled in.
	Config move.Config
	// Manual creates the runner and the move service but does not start
	// the runner: the caller starts (and may stop and start again)
	// Running.Runner, e.g. while another control-plane replica
	// (RunMoveWorker) owns the moves.
	Manual bool
}

// StartMoves starts the workflow runner with the move workflow (unless
// opts.Manual) and adds the move endpoints to the API.
func (r *Running) StartMoves(ctx context.Context, opts MoveOptions) error {
	runner, svc, err := newMoveRunner(ctx, r.Store, r.Local.State.Secret, r.Local.Dir, opts, r.log)
	if err != nil {
		return err
	}
	r.Runner, r.Moves = runner, svc
	if !opts.Manual {
		runner.Start(context.Background())
	}
	r.OnClose(func(context.Context) { runner.Stop() })
	r.API.EnableMoves(r.Moves)
	return nil
}

// TakeBackup is move.Config.Backup on the backup package.
func TakeBackup(ctx context.Context, src *pgxpool.Pool, tenant, dir string) error {
	conn, err := src.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	_, err = backup.Create(ctx, conn.Conn(), tenant, dir, nil)
	return err
}

// VerifyBackup is move.Config.VerifyBackup on the backup package.
func VerifyBackup(dir string) error {
	_, err := backup.Verify(dir)
	return err
}

// Parity is move.Config.Parity on the verify package.
func Parity(ctx context.Context, src, dst *pgxpool.Pool, tenant string, tables []string,
	catchUp func(context.Context) error, progress func(rows int64, chunks int)) (move.VerifyResult, error) {
	start := time.Now()
	var chunks int
	perTable := map[string]int64{} // OnChunk reports a table's rows so far
	rep, err := verify.Compare(ctx, src, dst, tenant, verify.Options{
		CatchUp: catchUp,
		OnChunk: func(table string, chunk, total int, n int64, _ verify.Key) {
			perTable[table] = n
			var rows int64
			for _, v := range perTable {
				rows += v
			}
			chunks++
			progress(rows, chunks)
		},
	})
	var mm *verify.MismatchError
	if errors.As(err, &mm) {
		return move.VerifyResult{}, fmt.Errorf("%w: %v", move.ErrParity, err)
	}
	if err != nil {
		return move.VerifyResult{}, err
	}
	secs := time.Since(start).Seconds()
	res := move.VerifyResult{Rows: rep.Rows, Chunks: chunks, Seconds: secs, OK: rep.OK}
	if secs > 0 {
		res.RowsPerSec = float64(rep.Rows) / secs
	}
	return res, nil
}
