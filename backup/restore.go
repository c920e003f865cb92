package backup

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/jackc/pgx/v5"

	"tenantry/registry"
	"tenantry/tenanttable"
)

// Restore loads the backup in dir into the database conn is connected to (a
// superuser connection). It verifies the backup first (Verify, with key),
// refuses with ErrNotEmpty if the target has any rows of tenant and with
// ErrForeignRow if any row's tenant_id is not tenant (checked again while
// loading, so a file changed after verification cannot plant rows either;
// nothing is changed in both cases),
// copies every table in parent-before-child order in one transaction, and
// then moves each sequence feeding a restored column up to at least that
// column's maximum (never backwards).
func Restore(ctx context.Context, conn *pgx.Conn, dir, tenant string, key []byte, progress Progress) (*Manifest, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	m, err := Verify(dir, key)
	if err != nil {
		return nil, err
	}
	if m.Tenant != tenant {
		return nil, fmt.Errorf("%w: backup is of tenant %q, not %q", ErrMismatch, m.Tenant, tenant)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		targets, err := tenanttable.List(ctx, tx)
		if err != nil {
			return err
		}
		if err := checkTarget(ctx, tx, m, targets, tenant); err != nil {
			return err
		}
		for _, tf := range m.Tables {
			if err := load(ctx, conn, dir, tf, tenant, progress); err != nil {
				return err
			}
		}
		for _, tf := range m.Tables {
			t, _ := tenanttable.Find(targets, tf.Table)
			if err := bumpSequences(ctx, tx, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// checkTarget checks that every backed-up table and column exists in the
// target and that the target holds no rows of the tenant.
func checkTarget(ctx context.Context, tx pgx.Tx, m *Manifest, targets []tenanttable.Table, tenant string) error {
	for _, tf := range m.Tables {
		t, ok := tenanttable.Find(targets, tf.Table)
		if !ok {
			return fmt.Errorf("%w: target has no tenant table %s", ErrMismatch, tf.Table)
		}
		for _, c := range tf.Columns {
			if !slices.Contains(t.Columns, c) {
				return fmt.Errorf("%w: target table %s has no column %s", ErrMismatch, tf.Table, c)
			}
		}
		var has bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.Ident()+" WHERE tenant_id = $1)", tenant).Scan(&has); err != nil {
			return fmt.Errorf("check target %s: %w", t.Name, err)
		}
		if has {
			return fmt.Errorf("%w: table %s has rows of %s", ErrNotEmpty, t.Name, tenant)
		}
	}
	return nil
}

func load(ctx context.Context, conn *pgx.Conn, dir string, tf TableFile, tenant string, progress Progress) error {
	check, err := newTenantRows(tf, tenant)
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(dir, tf.File))
	if err != nil {
		return fmt.Errorf("open %s: %w", tf.File, err)
	}
	defer f.Close()
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN", pgx.Identifier{"public", tf.Table}.Sanitize(), identList(tf.Columns))
	r := &lineReader{r: bufio.NewReaderSize(f, 1<<20), table: tf.Table, progress: progress, check: check}
	if _, err := conn.PgConn().CopyFrom(ctx, r, sql); err != nil {
		if r.err != nil {
			err = r.err
		}
		return fmt.Errorf("restore %s: %w", tf.Table, err)
	}
	if progress != nil {
		progress(tf.Table, tf.Rows)
	}
	return nil
}

// lineReader checks every row it passes on (a failed check fails the COPY,
// and with it the restore's transaction) and reports rows read every 64k
// rows.
type lineReader struct {
	r        *bufio.Reader
	rows     int64
	table    string
	progress Progress
	check    *tenantRows
	err      error // the failed check, which the server reports only as text
}

func (l *lineReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if _, l.err = l.check.Write(p[:n]); l.err != nil {
		return 0, l.err
	}
	if err == io.EOF {
		if l.err = l.check.Close(); l.err != nil {
			return 0, l.err
		}
	}
	before := l.rows
	for _, b := range p[:n] {
		if b == '\n' {
			l.rows++
		}
	}
	if l.progress != nil && l.rows>>16 != before>>16 {
		l.progress(l.table, l.rows)
	}
	return n, err
}

// sequencesSQL lists the sequences feeding columns of table $1: owned
// (serial, identity) and referenced by a column default (nextval).
const sequencesSQL = `
SELECT a.attname::text, n.nspname::text, s.relname::text
FROM (
  SELECT d.refobjsubid AS attnum, d.objid AS seq FROM pg_depend d
  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
    AND d.refobjid = $1::regclass AND d.refobjsubid > 0
  UNION
  SELECT ad.adnum, d.refobjid FROM pg_attrdef ad
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  WHERE ad.adrelid = $1::regclass
) x
JOIN pg_class s ON s.oid = x.seq AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_attribute a ON a.attrelid = $1::regclass AND a.attnum = x.attnum`

// bumpSequences sets every sequence feeding a column of t to at least the
// column's maximum.
func bumpSequences(ctx context.Context, tx pgx.Tx, t tenanttable.Table) error {
	rows, err := tx.Query(ctx, sequencesSQL, t.Ident())
	if err != nil {
		return fmt.Errorf("find sequences of %s: %w", t.Name, err)
	}
	type seqCol struct{ col, nsp, seq string }
	var seqs []seqCol
	var s seqCol
	if _, err := pgx.ForEachRow(rows, []any{&s.col, &s.nsp, &s.seq}, func() error { seqs = append(seqs, s); return nil }); err != nil {
		return fmt.Errorf("find sequences of %s: %w", t.Name, err)
	}
	for _, s := range seqs {
		seq := pgx.Identifier{s.nsp, s.seq}.Sanitize()
		_, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval(%s, m)
			FROM (SELECT max(%s)::bigint AS m FROM %s) mx, %s sq
			WHERE m IS NOT NULL AND (m > sq.last_value OR (m = sq.last_value AND NOT sq.is_called))`,
			quoteLiteral(seq), pgx.Identifier{s.col}.Sanitize(), t.Ident(), seq))
		if err != nil {
			return fmt.Errorf("bump sequence %s: %w", s.seq, err)
		}
	}
	return nil
}
