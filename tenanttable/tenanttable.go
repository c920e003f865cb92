// Package tenanttable discovers a database's tenant tables from the catalog:
// the tables of schema public that have a tenant_id column, with their
// primary key and columns, ordered parents before children by foreign keys.
//
// backup and verify use it so that they need no compiled-in list of tables;
// every tenant table must follow the tenant data rules (DESIGN.md): a
// tenant_id column and a primary key that starts with tenant_id.
package tenanttable

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrRules means a table has a tenant_id column but breaks the tenant data
// rules (no primary key, or one that does not start with tenant_id).
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
WHERE f.contype = 'f' AND chn.nspname = 'public' AND pan.nspname = 'public'`

// List returns the tenant tables of schema public, parents before children
// (ties by name), or an error wrapping ErrRules naming the first table that
// breaks the rules. A cycle of foreign keys is broken by name order.
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
	return parentsFirst(tables, parents), nil
}

// parentsFirst orders tables so that every table comes after the tables it
// references; among tables whose parents are all placed, by name.
func parentsFirst(tables []Table, parents map[string][]string) []Table {
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
		if !progress { // a cycle: place the first remaining table and go on
			for _, t := range tables {
				if !placed[t.Name] {
					placed[t.Name] = true
					out = append(out, t)
					break
				}
			}
		}
	}
	return out
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
