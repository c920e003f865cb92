package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/backup"
	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/oms"
	"tenantry/provision"
	"tenantry/verify"
)

// The move workflow knows neither backups nor parity nor the application's
// schema; these adapt the packages that do to move.Config's hooks, and are
// what every control plane wires in.

// PrepareDatabase brings a tenant database to the current OMS schema, adds
// the move marker table, and sets up tenant roles' grants and row-level
// security on its tables. It is Config.PrepareDatabase of every plane.
func PrepareDatabase(ctx context.Context, conn *pgx.Conn) error {
	if err := oms.Migrate(ctx, conn); err != nil {
		return err
	}
	if err := logrepl.EnsureMarkerTable(ctx, conn); err != nil {
		return err
	}
	return provision.SetupDatabase(ctx, conn)
}

// Backups are move.Config.Backup and VerifyBackup on the backup package.
type Backups struct {
	// Key is the backups' MAC key (backup.Key of the platform secret).
	Key []byte
}

// Take is move.Config.Backup.
func (b Backups) Take(ctx context.Context, src *pgxpool.Pool, tenant, dir string) error {
	conn, err := src.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	_, err = backup.Create(ctx, conn.Conn(), tenant, dir, b.Key, nil)
	return err
}

// Verify is move.Config.VerifyBackup.
func (b Backups) Verify(dir string) error {
	_, err := backup.Verify(dir, b.Key)
	return err
}

// Parity is move.Config.Parity on the verify package.
func Parity(ctx context.Context, src, dst *pgxpool.Pool, tenant string, tables []string,
	catchUp func(context.Context) error, progress func(rows int64, chunks int)) (move.VerifyResult, error) {
	start := time.Now()
	// OnChunk reports a table's ranges and rows so far.
	type sofar struct {
		chunks int
		rows   int64
	}
	perTable := map[string]sofar{}
	rep, err := verify.Compare(ctx, src, dst, tenant, verify.Options{
		CatchUp: catchUp,
		OnChunk: func(table string, chunk, total int, n int64, _ verify.Key) {
			perTable[table] = sofar{chunk, n}
			var all sofar
			for _, v := range perTable {
				all.chunks += v.chunks
				all.rows += v.rows
			}
			progress(all.rows, all.chunks)
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
	var chunks int
	for _, t := range rep.Tables {
		chunks += t.Chunks
	}
	res := move.VerifyResult{Rows: rep.Rows, Chunks: chunks, Seconds: secs, OK: rep.OK}
	if secs > 0 {
		res.RowsPerSec = float64(rep.Rows) / secs
	}
	return res, nil
}
