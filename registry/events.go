package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Event is one entry of the registry's event log: what an operator (or the
// control plane) did, to which subject, when. Tenant and key changes record
// their events in the transaction of the change; other subsystems add theirs
// with AddEvent. Workflows keep their own per-workflow events
// (workflow_events); this log is for operations that are not workflows.
type Event struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`              // "tenant.created", "api_key.revoked", ...
	Subject string    `json:"subject,omitempty"` // a tenant id, a cluster name, ...
	Message string    `json:"message,omitempty"`
	// Data is any JSON value with the event's details.
	Data json.RawMessage `json:"data,omitempty"`
}

// Event kinds recorded by the registry and the control plane.
const (
	EventTenantCreated = "tenant.created"
	EventTenantPurged  = "tenant.purged"
	EventTenantDeleted = "tenant.deleted"
	EventTenantLimits  = "tenant.limits"
	EventKeyCreated    = "api_key.created"
	EventKeyRevoked    = "api_key.revoked"
)

var eventKindRe = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

// AddEvent appends e to the event log (its ID and At are set by the
// database; data, if not nil, is marshalled to JSON). It does not bump the
// registry version: events are not routing configuration.
func (s *Store) AddEvent(ctx context.Context, kind, subject, message string, data any) error {
	return addEvent(ctx, s.pool, kind, subject, message, data)
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func addEvent(ctx context.Context, db execer, kind, subject, message string, data any) error {
	if !eventKindRe.MatchString(kind) {
		return fmt.Errorf("%w: event kind %q", ErrInvalid, kind)
	}
	// pgx encodes data to jsonb with encoding/json; nil is NULL.
	_, err := db.Exec(ctx, "INSERT INTO events (kind, subject, message, data) VALUES ($1, $2, $3, $4)",
		kind, subject, message, data)
	return dbErr("record event "+kind, err)
}

// EventFilter selects events. Zero values select everything.
type EventFilter struct {
	Subject string
	// AfterID pages forwards: only events with a larger id.
	AfterID int64
	// Kind, when set, selects events of that kind, or of kinds under it
	// ("tenant" selects "tenant.created" and the other "tenant." kinds).
	Kind string
	// Limit defaults to 100 and is at most 1000.
	Limit int
	// Newest returns the last Limit matching events (newest first) instead
	// of the first ones.
	Newest bool
}

// Events returns the events matching f, oldest first (newest first with
// f.Newest).
func (s *Store) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	order := "id"
	if f.Newest {
		order = "id DESC"
	}
	rows, _ := s.pool.Query(ctx, `SELECT id, at, kind, subject, message, data FROM events
		WHERE ($1 = '' OR subject = $1) AND id > $2 AND ($4 = '' OR kind = $4 OR starts_with(kind, $4 || '.'))
		ORDER BY `+order+` LIMIT $3`, f.Subject, f.AfterID, f.Limit, f.Kind)
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		var data []byte
		err := r.Scan(&e.ID, &e.At, &e.Kind, &e.Subject, &e.Message, &data)
		e.Data = data
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return evs, nil
}
