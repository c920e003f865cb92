package backup

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/registry"
	"tenantry/tenanttable"
)

// Create writes a backup of tenant's rows from the database conn is
// connected to (a superuser connection) into dir, which must not exist. All
// tables are read in one REPEATABLE READ READ ONLY transaction, so the
// backup is one consistent snapshot. It is written to a temporary sibling
// directory and renamed into place at the end: a crash leaves no directory
// at dir. The manifest's MAC is made with key (Key of the platform secret).
func Create(ctx context.Context, conn *pgx.Conn, tenant, dir string, key []byte, progress Progress) (*Manifest, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	if len(key) == 0 {
		return nil, errNoKey
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, dir)
	}
	tmp, err := tempDir(dir)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	m, err := dump(ctx, conn, tenant, tmp, progress)
	if err != nil {
		return nil, err
	}
	if err := writeManifest(tmp, m, key); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("move backup into place: %w", err)
	}
	return m, nil
}

func tempDir(dir string) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tmp := fmt.Sprintf("%s.tmp-%s", filepath.Clean(dir), hex.EncodeToString(b[:]))
	if err := os.MkdirAll(tmp, dirMode); err != nil {
		return "", fmt.Errorf("create backup directory: %w", err)
	}
	return tmp, nil
}

func dump(ctx context.Context, conn *pgx.Conn, tenant, dir string, progress Progress) (*Manifest, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin backup snapshot: %w", err)
	}
	defer tx.Rollback(ctx)
	m := &Manifest{Tenant: tenant, Format: FormatText, CreatedAt: time.Now().UTC()}
	if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&m.Source); err != nil {
		return nil, fmt.Errorf("read database name: %w", err)
	}
	if m.SchemaVersion, err = schemaVersion(ctx, tx); err != nil {
		return nil, err
	}
	tables, err := tenanttable.List(ctx, tx)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		tf, err := dumpTable(ctx, conn, t, tenant, dir, progress)
		if err != nil {
			return nil, err
		}
		m.Tables = append(m.Tables, tf)
	}
	return m, tx.Commit(ctx)
}

// schemaVersion reads the highest version of oms_schema_version, nil if the
// table does not exist.
func schemaVersion(ctx context.Context, tx pgx.Tx) (*int64, error) {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('public.oms_schema_version') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return nil, err
	}
	var v *int64
	if err := tx.QueryRow(ctx, "SELECT max(version)::bigint FROM public.oms_schema_version").Scan(&v); err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func dumpTable(ctx context.Context, conn *pgx.Conn, t tenanttable.Table, tenant, dir string, progress Progress) (TableFile, error) {
	tf := TableFile{Table: t.Name, File: fileName(t.Name), Columns: t.Columns, PK: t.PK}
	f, err := os.OpenFile(filepath.Join(dir, tf.File), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return tf, fmt.Errorf("create backup file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	buf := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	lc := &lineCounter{w: buf, table: t.Name, progress: progress}
	sql := fmt.Sprintf("COPY (SELECT %s FROM %s WHERE tenant_id = %s ORDER BY %s) TO STDOUT",
		identList(t.Columns), t.Ident(), quoteLiteral(tenant), identList(t.PK))
	if _, err := conn.PgConn().CopyTo(ctx, lc, sql); err != nil {
		return tf, fmt.Errorf("copy %s: %w", t.Name, err)
	}
	if err := buf.Flush(); err != nil {
		return tf, fmt.Errorf("write %s: %w", tf.File, err)
	}
	if err := f.Sync(); err != nil {
		return tf, fmt.Errorf("sync %s: %w", tf.File, err)
	}
	tf.Rows, tf.SHA256 = lc.rows, hex.EncodeToString(h.Sum(nil))
	if progress != nil {
		progress(t.Name, tf.Rows)
	}
	return tf, nil
}

// writeManifest writes the manifest and its MAC under key.
func writeManifest(dir string, m *Manifest, key []byte) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	b = append(b, '\n')
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), b, fileMode); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, MACFile), []byte(manifestMAC(key, b)+"\n"), fileMode); err != nil {
		return fmt.Errorf("write manifest MAC: %w", err)
	}
	return nil
}

// identList quotes and joins column names.
func identList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// lineCounter counts COPY text rows (lines) passing through it and reports
// progress every 64k rows.
type lineCounter struct {
	w        io.Writer
	rows     int64
	table    string
	progress Progress
}

func (l *lineCounter) Write(p []byte) (int, error) {
	before := l.rows
	for _, b := range p {
		if b == '\n' {
			l.rows++
		}
	}
	if l.progress != nil && l.rows>>16 != before>>16 {
		l.progress(l.table, l.rows)
	}
	return l.w.Write(p)
}
