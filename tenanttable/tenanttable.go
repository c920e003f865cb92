// Package tenanttable is the one source of a database's tenant tables: the
// tables of schema public that have a tenant_id column, with their primary
// key and columns, ordered parents before the tables whose foreign keys
// reference them. It reads them from the catalog, so no caller needs a
// compiled-in list.
//
// move (what to publish, count and purge), backup (what to dump, and the
// restore order), verify (what to compare), check (which primary keys to
// look for duplicates in) and provision (which tables get row-level
// security) all use it. Every tenant table must follow the
// tenant data rules (DESIGN.md): a tenant_id column and a primary key that
// starts with tenant_id.
//
// Foreign-key cycles: the foreign keys between tenant tables must not form
// a cycle. Every caller relies on a parents-first order (a restore inserts,
// a purge deletes, one table at a time, and a move's purge runs long after
// its copy), and a cycle has none; breaking it at an arbitrary table would
// only move the failure to a foreign-key violation halfway through a purge
// or a restore. So List refuses such a database with ErrRules naming the
// tables of the cycle, before anything is copied, restored or purged. A
// table referencing itself is not a cycle here: its rows are dumped and
// restored in one statement.
package tenanttable

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrRules means the tenant tables break the tenant data rules: a table has
// a tenant_id column but no primary key, or one that does not start with
// tenant_id; or foreign keys between tenant tables form a cycle.
var ErrRules = errors.New("tenant table breaks the tenant data rules")

// Table is one tenant table of schema public.
type Table struct {
	Name string `json:"name"`
	// PK is the primary key's columns in key order; PK[0] is "tenant_id".
	PK []string `json:"pk"`
	// Columns are the stored (not generated) columns in attribute order.
	Columns []string `json:"columns"`
}

// Ident returns the table's quoted, schema-qualified name for SQL.
func (t Table) Ident() string { return pgx.Identifier{"public", t.Name}.Sanitize() }

// Querier is what List reads the catalog through: a *pgx.Conn, a
// *pgxpool.Pool or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const tablesSQL = `
SELECT c.relname,
  array(SELECT a.attname::text FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY a.attnum),
  array(SELECT a.attname::text
        FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary
        ORDER BY k.ord)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND EXISTS (SELECT 1 FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
ORDER BY c.relname`

// fkSQL lists foreign keys between tables of schema public as (child, parent).
const fkSQL = `
SELECT ch.relname, pa.relname
FROM pg_constraint f
JOIN pg_class ch ON ch.oid = f.conrelid JOIN pg_namespace chn ON chn.oid = ch.relnamespace
JOIN pg_class pa ON pa.oid = f.confrelid JOIN pg_namespace pan ON pan.oid = pa.relnamespace
WHERE f.contype = 'f' AND chn.nspname = 'public' AND pan.nspname = 'public'
ORDER BY 1, 2`

// List returns the tenant tables of schema public, parents before children
// (ties by name), or an error wrapping ErrRules naming the first table that
// breaks the rules, or the tables of a foreign-key cycle.
func List(ctx context.Context, q Querier) ([]Table, error) {
	rows, err := q.Query(ctx, tablesSQL)
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.Name, &t.Columns, &t.PK)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	for _, t := range tables {
		if len(t.PK) == 0 || t.PK[0] != "tenant_id" {
			return nil, fmt.Errorf("%w: table %s: primary key (%s) must start with tenant_id", ErrRules, t.Name, strings.Join(t.PK, ", "))
		}
	}
	rows, err = q.Query(ctx, fkSQL)
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	parents := map[string][]string{}
	var child, parent string
	_, err = pgx.ForEachRow(rows, []any{&child, &parent}, func() error {
		if child != parent {
			parents[child] = append(parents[child], parent)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	return parentsFirst(tables, parents)
}

// Names returns the names of List's tables, in its order: what the
// replication functions of package logrepl take.
func Names(ctx context.Context, q Querier) ([]string, error) {
	tables, err := List(ctx, q)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Name
	}
	return names, nil
}

// parentsFirst orders tables so that every table comes after the tables it
// references; among tables whose parents are all placed, by name. A cycle
// is ErrRules.
func parentsFirst(tables []Table, parents map[string][]string) ([]Table, error) {
	sort.Slice(tables, func(i, j int) bool { return tables[i].Name < tables[j].Name })
	placed := make(map[string]bool, len(tables))
	known := make(map[string]bool, len(tables))
	for _, t := range tables {
		known[t.Name] = true
	}
	out := make([]Table, 0, len(tables))
	for len(out) < len(tables) {
		progress := false
		for _, t := range tables {
			if placed[t.Name] || !ready(t.Name, parents, placed, known) {
				continue
			}
			placed[t.Name], progress = true, true
			out = append(out, t)
		}
		if !progress {
			return nil, fmt.Errorf("%w: foreign keys between tenant tables form a cycle: %s",
				ErrRules, strings.Join(cycle(tables, parents, placed, known), " -> "))
		}
	}
	return out, nil
}

// cycle returns one cycle among the tables not placed, as a path that ends
// where it starts. Every such table has a parent not placed (or it would
// have been), so following the first one from any of them must come back to
// a table already on the path.
func cycle(tables []Table, parents map[string][]string, placed, known map[string]bool) []string {
	var path []string
	at := map[string]int{}
	for _, t := range tables {
		if !placed[t.Name] {
			path = append(path, t.Name)
			break
		}
	}
	for {
		cur := path[len(path)-1]
		at[cur] = len(path) - 1
		for _, p := range parents[cur] {
			if known[p] && !placed[p] {
				if i, seen := at[p]; seen {
					return append(path[i:], p)
				}
				path = append(path, p)
				break
			}
		}
	}
}

func ready(name string, parents map[string][]string, placed, known map[string]bool) bool {
	for _, p := range parents[name] {
		if known[p] && !placed[p] {
			return false
		}
	}
	return true
}

// Find returns the table named name from tables.
func Find(tables []Table, name string) (Table, bool) {
	for _, t := range tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}
