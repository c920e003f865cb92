// Package migrate applies versioned schema migrations to a PostgreSQL
// database. The registry, the workflow engine and the OMS each keep their
// schema as a Schema: an ordered list of SQL steps, a table recording which
// versions are applied, and an advisory lock key that serialises concurrent
// migrators (two control-plane replicas, several OMS instances starting at
// once) of that one schema.
package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrTooNew means the database records a schema version newer than the
// binary knows: an older binary must not run against a newer schema.
var ErrTooNew = errors.New("schema is newer than this binary")

// Beginner starts a transaction; *pgx.Conn, *pgxpool.Pool and pgx.Tx are Beginners.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Querier runs a query returning one row; connections, pools and
// transactions are Queriers.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Schema is one component's versioned schema.
type Schema struct {
	// Name names the component in errors ("registry", "workflow", "oms").
	Name string
	// Table records the applied versions, one row each:
	// (version int primary key, applied_at timestamptz). It is created by
	// the first Apply.
	Table string
	// LockKey is the pg_advisory_xact_lock key that serialises migrators of
	// this schema. Each schema has its own, so that a database holding two
	// schemas does not serialise them against each other, and keeps it
	// forever, so that an older and a newer binary starting at once still
	// exclude each other.
	LockKey int64
	// Steps are the migrations in order: step i (0-based) is version i+1.
	// Never edit an applied step; append a new one.
	Steps []string
}

// Latest is the version Apply brings a database to.
func (s *Schema) Latest() int { return len(s.Steps) }

// Apply applies every step the database lacks, in order, each in its own
// transaction that holds the schema's advisory lock, re-reads the applied
// version, applies the next step and records it. A failing step rolls back
// alone: the steps before it stay applied and recorded. Concurrent calls on
// one database are safe; each step is applied exactly once, by whichever
// caller gets the lock first. It returns how many steps this call applied,
// and an error wrapping ErrTooNew when the database is ahead of Steps.
func (s *Schema) Apply(ctx context.Context, db Beginner) (applied int, err error) {
	for {
		done, err := s.applyNext(ctx, db)
		if err != nil || done {
			return applied, err
		}
		applied++
	}
}

// applyNext applies the first missing step in one transaction; done reports
// that there was none.
func (s *Schema) applyNext(ctx context.Context, db Beginner) (done bool, err error) {
	table := pgx.Identifier{s.Table}.Sanitize()
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.LockKey); err != nil {
			return fmt.Errorf("lock %s migrations: %w", s.Name, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
	version    int         PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
			return fmt.Errorf("create %s: %w", s.Table, err)
		}
		current, err := s.Version(ctx, tx)
		if err != nil {
			return err
		}
		if current > s.Latest() {
			return fmt.Errorf("%s schema version %d, this binary knows %d: %w", s.Name, current, s.Latest(), ErrTooNew)
		}
		if current == s.Latest() {
			done = true
			return nil
		}
		v := current + 1
		if _, err := tx.Exec(ctx, s.Steps[v-1]); err != nil {
			return fmt.Errorf("apply %s migration %d: %w", s.Name, v, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (version) VALUES ($1)", v); err != nil {
			return fmt.Errorf("record %s migration %d: %w", s.Name, v, err)
		}
		return nil
	})
	return done, err
}

// Version returns the highest applied version, 0 when the database has none
// (not even the version table).
func (s *Schema) Version(ctx context.Context, q Querier) (int, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{s.Table}.Sanitize()).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read %s schema version: %w", s.Name, err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+pgx.Identifier{s.Table}.Sanitize()).Scan(&v); err != nil {
		return 0, fmt.Errorf("read %s schema version: %w", s.Name, err)
	}
	return v, nil
}
