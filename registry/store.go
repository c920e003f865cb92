package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is the registry in its control database. Every write method is one
// transaction that bumps the registry version and NOTIFYs NotifyChannel with
// the new version; router heartbeats and acknowledgements are not routing
// configuration and do not bump it. A Store is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// OpenStore connects to the control database at dsn and applies the
// registry's schema migrations. A nil logger discards.
func OpenStore(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	s, err := ConnectStore(ctx, dsn, logger)
	if err != nil {
		return nil, err
	}
	applied, err := schema.Apply(ctx, s.pool)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate control database: %w", err)
	}
	if applied > 0 {
		s.logger.Info("registry migrations applied", "count", applied, "schema_version", schema.Latest())
	}
	return s, nil
}

// ConnectStore connects to the control database at dsn without migrating
// it: for the processes that only route — gateways and application
// instances — which connect as a reader role (GrantReader) that may not
// change the schema. The registry must have been migrated (by the control
// plane's OpenStore). A nil logger discards.
func ConnectStore(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open control database: %w", err)
	}
	return &Store{pool: pool, logger: logger}, nil
}

// Close closes the store's connections.
func (s *Store) Close() { s.pool.Close() }

// Pool is the control database pool; other packages (the workflow runner)
// keep their own tables in the same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Version returns the current registry version.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, "SELECT version FROM registry_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read registry version: %w", err)
	}
	return v, nil
}

// Snapshot reads the whole registry at one version.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	return readSnapshot(ctx, s.pool)
}

// write runs fn in one transaction that first locks the registry version
// (serialising all writers, so versions follow commit order), then bumps it
// and notifies. fn receives the version it runs against.
func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx, version int64) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var v int64
		if err := tx.QueryRow(ctx, "SELECT version FROM registry_version FOR UPDATE").Scan(&v); err != nil {
			return fmt.Errorf("lock registry version: %w", err)
		}
		if err := fn(tx, v); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE registry_version SET version = $1", v+1); err != nil {
			return fmt.Errorf("bump registry version: %w", err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, strconv.FormatInt(v+1, 10)); err != nil {
			return fmt.Errorf("notify registry version: %w", err)
		}
		return nil
	})
}

// dbErr maps constraint violations to the registry's sentinels; nil stays nil.
func dbErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch pe.Code {
	case "23505": // unique_violation
		return fmt.Errorf("%s: %w (%s)", what, ErrExists, pe.ConstraintName)
	case "23503": // foreign_key_violation
		if strings.HasPrefix(pe.Message, "update or delete") {
			return fmt.Errorf("%s: %w: still referenced (%s)", what, ErrConflict, pe.Detail)
		}
		return fmt.Errorf("%s: %w: %s", what, ErrNotFound, pe.Detail)
	case "23514", "22P02": // check_violation, invalid_text_representation
		return fmt.Errorf("%s: %w: %s", what, ErrInvalid, pe.Message)
	case "40001": // serialization_failure
		return fmt.Errorf("%s: %w", what, ErrConflict)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// mustAffect turns "no row matched" into ErrNotFound.
func mustAffect(tag pgconn.CommandTag, err error, what string) error {
	if err != nil {
		return dbErr(what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}
