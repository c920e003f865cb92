// Package backup takes, checks and restores logical backups of one tenant's
// rows: one COPY file per tenant table plus a manifest with row counts and
// SHA-256 checksums. The move workflow takes one in its prepare step, and
// `tenantry backup` exposes it to operators.
//
// Files are in COPY's text format: one row per line (newlines inside values
// are escaped), so Verify can count rows without a database, the files are
// readable with standard tools, and they restore into any PostgreSQL
// version with the same columns.
package backup

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors callers branch on.
var (
	// ErrCorrupt: a backup file is missing or does not match the manifest.
	ErrCorrupt = errors.New("backup corrupt")
	// ErrNotEmpty: the restore target already has rows of the tenant.
	ErrNotEmpty = errors.New("restore target already has rows of the tenant")
	// ErrMismatch: the backup does not fit the request or the target (other
	// tenant, missing table or column).
	ErrMismatch = errors.New("backup does not match")
	// ErrExists: the backup directory already exists.
	ErrExists = errors.New("backup directory already exists")
)

// CorruptError names the file that failed verification. It unwraps to
// ErrCorrupt.
type CorruptError struct {
	File   string
	Reason string
}

func (e *CorruptError) Error() string { return fmt.Sprintf("backup file %s: %s", e.File, e.Reason) }
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// ManifestFile is the manifest's name inside a backup directory.
const ManifestFile = "manifest.json"

// FormatText is the only format written: COPY text.
const FormatText = "text"

// Manifest describes a backup.
type Manifest struct {
	Tenant    string    `json:"tenant"`
	Source    string    `json:"source"` // database name
	CreatedAt time.Time `json:"created_at"`
	// SchemaVersion is the source's oms_schema_version, if that table exists.
	SchemaVersion *int64 `json:"schema_version,omitempty"`
	Format        string `json:"format"`
	// Tables are in restore order: parents before children.
	Tables []TableFile `json:"tables"`
}

// TableFile is one table's file in a backup.
type TableFile struct {
	Table   string   `json:"table"`
	File    string   `json:"file"`
	Rows    int64    `json:"rows"`
	SHA256  string   `json:"sha256"`
	Columns []string `json:"columns"`
	PK      []string `json:"pk"`
}

// Progress is told the rows done so far for a table during long work; it
// may be nil.
type Progress func(table string, rows int64)

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// on, the default since PostgreSQL 9.1). COPY takes no parameters.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// fileName is the table's file name in a backup directory.
func fileName(table string) string {
	return strings.NewReplacer("/", "_", "\x00", "_").Replace(table) + ".copy"
}
