// Package backup takes, checks and restores logical backups of one tenant's
// rows: one COPY file per tenant table plus a manifest with row counts and
// SHA-256 checksums, and the manifest's keyed MAC (HMAC-SHA256 under a key
// derived from the platform secret, Key), so that a backup edited by anyone
// without the secret does not verify. The move workflow takes one in its
// prepare step, and `tenantry backup` exposes it to operators. Backups are
// written in 0700 directories as 0600 files: they hold tenants' data.
//
// Files are in COPY's text format: one row per line (newlines inside values
// are escaped), so Verify can count rows without a database, the files are
// readable with standard tools, and they restore into any PostgreSQL
// version with the same columns.
package backup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"tenantry/keys"
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
	// ErrMAC: the manifest's MAC is missing or does not verify under the
	// key: the backup was edited, or made with another platform secret.
	ErrMAC = errors.New("backup manifest MAC does not verify")
	// ErrForeignRow: a backup file holds a row whose tenant_id is not the
	// backup's tenant (it would plant rows in another tenant).
	ErrForeignRow = errors.New("backup holds a row of another tenant")
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

// MACFile holds the hex HMAC-SHA256 of the manifest file's exact bytes.
const MACFile = "manifest.mac"

// Key derives the backup MAC key from the platform secret: HKDF-SHA256 with
// the info "tenantry backup" (the purpose "backup" in the scheme of
// per-purpose keys), so the key opens nothing else and the secret itself
// never keys a MAC. It panics on an empty secret, a programming error.
func Key(secret []byte) []byte { return keys.Derive(secret, keys.Backup) }

// errNoKey refuses a backup operation without a MAC key.
var errNoKey = errors.New("backup: a MAC key (backup.Key of the platform secret) is required")

// manifestMAC is the hex HMAC-SHA256 of manifest bytes b under key.
func manifestMAC(key, b []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

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

// Backups hold tenants' data: directories are 0700 and files 0600,
// whatever the umask.
const (
	dirMode  = 0o700
	fileMode = 0o600
)
