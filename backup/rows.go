package backup

import (
	"bytes"
	"fmt"
	"slices"
)

// tenantRows checks that every row of one COPY text stream belongs to one
// tenant. Bytes are fed in arbitrary chunks (Write); a row may span chunks.
// A tenant id needs no COPY escaping (ids match registry.ValidateTenantID),
// so the raw tenant_id field equals the id exactly for the tenant's rows and
// differs for any other value, for NULL (\N) and for any escape sequence.
type tenantRows struct {
	file    string
	tenant  []byte
	col     int    // index of tenant_id among the file's columns
	partial []byte // the unfinished row carried over from the last chunk
	row     int64  // rows checked so far
}

// newTenantRows checks tf's rows against tenant; a file without a tenant_id
// column is refused.
func newTenantRows(tf TableFile, tenant string) (*tenantRows, error) {
	col := slices.Index(tf.Columns, "tenant_id")
	if col < 0 {
		return nil, &CorruptError{File: tf.File, Reason: "no tenant_id column"}
	}
	return &tenantRows{file: tf.File, tenant: []byte(tenant), col: col}, nil
}

// Write checks the complete rows in p; it never keeps p.
func (t *tenantRows) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.partial = append(t.partial, p...)
			return n, nil
		}
		row := p[:i]
		if len(t.partial) > 0 {
			row = append(t.partial, row...)
		}
		if err := t.check(row); err != nil {
			return 0, err
		}
		t.partial = t.partial[:0]
		p = p[i+1:]
	}
}

// Close reports a last row without its newline, which COPY would still load.
func (t *tenantRows) Close() error {
	if len(t.partial) == 0 {
		return nil
	}
	return t.check(t.partial)
}

func (t *tenantRows) check(row []byte) error {
	t.row++
	f := row
	for range t.col {
		i := bytes.IndexByte(f, '\t')
		if i < 0 {
			f = nil
			break
		}
		f = f[i+1:]
	}
	if i := bytes.IndexByte(f, '\t'); i >= 0 {
		f = f[:i]
	}
	if !bytes.Equal(f, t.tenant) {
		return fmt.Errorf("%s row %d: tenant_id %.64q is not %s: %w", t.file, t.row, f, t.tenant, ErrForeignRow)
	}
	return nil
}
