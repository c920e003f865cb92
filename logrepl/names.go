package logrepl

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tenantry/dbconn"
	"tenantry/registry"
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

var linkIDRe = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

// Link names the replication objects of one direction of a tenant's
// replication: a publication and a slot on the publisher, a subscription on
// the subscriber.
type Link struct {
	Publication  string `json:"publication"`
	Slot         string `json:"slot"`
	Subscription string `json:"subscription"`
}

// Names are the two links of one move: Forward from the source (publication
// and slot there) to the target (subscription), Reverse the other way.
type Names struct {
	Forward, Reverse Link
}

// NamesFor derives the replication object names of the links of id (a move
// id, which must match ^[a-z0-9_]{1,40}$): tenantry_mv_<id> forward,
// tenantry_mv_<id>_rev reverse.
func NamesFor(id string) (Names, error) {
	if !linkIDRe.MatchString(id) {
		return Names{}, fmt.Errorf("%w: move id %q must match %s", registry.ErrInvalid, id, linkIDRe)
	}
	fwd := "tenantry_mv_" + id
	rev := fwd + "_rev"
	return Names{
		Forward: Link{Publication: fwd, Slot: fwd, Subscription: fwd},
		Reverse: Link{Publication: rev, Slot: rev, Subscription: rev},
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
// connects to either side: a cluster member's database as the cluster's
// admin credential, with the cluster's TLS settings (String renders the
// CONNECTION of a subscription).
type Endpoint = dbconn.Config

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

// CurrentLSN returns the server's pg_current_wal_lsn(): how far WAL has
// been written out. A transaction committed without waiting for the flush
// (a subscription's apply worker, by default) is visible before that
// position passes its commit record: see InsertLSN.
func CurrentLSN(ctx context.Context, q Querier) (LSN, error) {
	return readLSN(ctx, q, "pg_current_wal_lsn")
}

// InsertLSN returns the server's pg_current_wal_insert_lsn(): past the
// commit record of every transaction visible when it is read, however it
// committed.
func InsertLSN(ctx context.Context, q Querier) (LSN, error) {
	return readLSN(ctx, q, "pg_current_wal_insert_lsn")
}

func readLSN(ctx context.Context, q Querier, fn string) (LSN, error) {
	var s string
	if err := q.QueryRow(ctx, "SELECT "+fn+"()::text").Scan(&s); err != nil {
		return 0, fmt.Errorf("read %s: %w", fn, err)
	}
	return ParseLSN(s)
}
