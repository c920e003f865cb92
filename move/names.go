package move

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/registry"
)

// Errors callers branch on.
var (
	// ErrSlotLost means a replication slot a link depends on is gone or was
	// invalidated (wal_status 'lost'): the link cannot resume where it was and
	// must be rebuilt from a fresh copy.
	ErrSlotLost = errors.New("replication slot lost")
	// ErrSubscriptionBroken means a subscription's workers are failing (its
	// error counters grew while we waited) or it does not exist.
	ErrSubscriptionBroken = errors.New("subscription broken")
	// ErrTableNotEligible means a table cannot be published with a tenant
	// row filter: no tenant_id column, or tenant_id not in its replica
	// identity (PostgreSQL would then reject every UPDATE and DELETE on the
	// table, for all tenants).
	ErrTableNotEligible = errors.New("table not eligible for a tenant move")
)

// Querier is what every function here runs SQL through: a *pgx.Conn, a
// *pgxpool.Pool or a pgx.Tx. Functions that must not run inside a
// transaction block (CREATE/DROP SUBSCRIPTION with a slot) need a Conn or a
// Pool. A *pgx.Conn must not be shared by concurrent calls.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var moveIDRe = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

// ValidateMoveID checks a move id against ^[a-z0-9_]{1,40}$; replication
// object names are derived from it.
func ValidateMoveID(id string) error {
	if !moveIDRe.MatchString(id) {
		return fmt.Errorf("%w: move id %q must match %s", registry.ErrInvalid, id, moveIDRe)
	}
	return nil
}

// Names are the replication objects of one move. The forward link runs from
// the source (publication and slot there) to the target (subscription); the
// reverse link the other way.
type Names struct {
	Publication     string // on the source
	Slot            string // on the source
	Subscription    string // on the target
	RevPublication  string // on the target
	RevSlot         string // on the target
	RevSubscription string // on the source
}

// NamesFor derives the replication object names of move id:
// tenantry_mv_<id> forward, tenantry_mv_<id>_rev reverse.
func NamesFor(id string) (Names, error) {
	if err := ValidateMoveID(id); err != nil {
		return Names{}, err
	}
	fwd := "tenantry_mv_" + id
	rev := fwd + "_rev"
	return Names{
		Publication: fwd, Slot: fwd, Subscription: fwd,
		RevPublication: rev, RevSlot: rev, RevSubscription: rev,
	}, nil
}

var identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// validIdent checks a replication object name (publication, subscription,
// slot): lowercase letters, digits and underscores, at most 63 bytes, which
// is also what PostgreSQL accepts for slot names.
func validIdent(kind, name string) error {
	if !identRe.MatchString(name) {
		return fmt.Errorf("%w: %s name %q must match %s", registry.ErrInvalid, kind, name, identRe)
	}
	return nil
}

// table is a validated tenant table name: "name" (schema public) or
// "schema.name".
type table struct{ schema, name string }

func (t table) ident() string { return pgx.Identifier{t.schema, t.name}.Sanitize() }

// String is the name as callers gave it: bare for public tables.
func (t table) String() string {
	if t.schema == "public" {
		return t.name
	}
	return t.schema + "." + t.name
}

func parseTables(names []string) ([]table, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no tenant tables", registry.ErrInvalid)
	}
	seen := make(map[table]bool, len(names))
	out := make([]table, 0, len(names))
	for _, n := range names {
		t := table{schema: "public", name: n}
		if s, rest, ok := strings.Cut(n, "."); ok {
			t = table{schema: s, name: rest}
		}
		if !identRe.MatchString(t.schema) || !identRe.MatchString(t.name) {
			return nil, fmt.Errorf("%w: table name %q must be [schema.]name, each matching %s", registry.ErrInvalid, n, identRe)
		}
		if seen[t] {
			return nil, fmt.Errorf("%w: table %q listed twice", registry.ErrInvalid, n)
		}
		seen[t] = true
		out = append(out, t)
	}
	return out, nil
}

// quoteLiteral quotes s as an SQL string literal, for the few places that
// cannot take parameters (DDL). Like libpq's PQescapeLiteral it doubles
// quotes and, when s holds a backslash, uses the E” form with backslashes
// doubled, so the result is correct whatever standard_conforming_strings is.
func quoteLiteral(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("%w: string literal contains a NUL byte", registry.ErrInvalid)
	}
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q, nil
}

// Endpoint is how a subscription reaches its publisher, and how this package
// connects to either side.
type Endpoint struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
	// SSLMode is libpq's sslmode; empty leaves libpq's default (prefer).
	SSLMode string
}

// ConnString renders e as a libpq keyword/value connection string, every
// value quoted, as CREATE SUBSCRIPTION ... CONNECTION expects.
func (e Endpoint) ConnString() string {
	kv := []string{"host", e.Host, "port", strconv.Itoa(e.Port), "dbname", e.Database, "user", e.User}
	if e.Password != "" {
		kv = append(kv, "password", e.Password)
	}
	if e.SSLMode != "" {
		kv = append(kv, "sslmode", e.SSLMode)
	}
	parts := make([]string, 0, len(kv)/2)
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	for i := 0; i < len(kv); i += 2 {
		parts = append(parts, kv[i]+"='"+r.Replace(kv[i+1])+"'")
	}
	return strings.Join(parts, " ")
}

// Connect opens a connection to e. The replication functions need a
// superuser (or a role with REPLICATION and ownership of the tables).
func Connect(ctx context.Context, e Endpoint) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, e.ConnString())
	if err != nil {
		return nil, fmt.Errorf("connect %s:%d/%s: %w", e.Host, e.Port, e.Database, err)
	}
	return c, nil
}

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

// ParseLSN parses the text form "X/X".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("%w: lsn %q", registry.ErrInvalid, s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: lsn %q", registry.ErrInvalid, s)
	}
	return LSN(h<<32 | l), nil
}

// String renders l as PostgreSQL does ("16/B374D848").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// scanLSN reads a nullable pg_lsn selected as text; NULL is 0.
func scanLSN(s *string) (LSN, error) {
	if s == nil {
		return 0, nil
	}
	return ParseLSN(*s)
}

// CurrentLSN returns the server's pg_current_wal_lsn().
func CurrentLSN(ctx context.Context, q Querier) (LSN, error) {
	var s string
	if err := q.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		return 0, fmt.Errorf("read current lsn: %w", err)
	}
	return ParseLSN(s)
}
