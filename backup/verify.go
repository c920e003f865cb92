package backup

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"tenantry/registry"
)

// Verify reads dir's manifest, checks its MAC under key (Key of the
// platform secret) before trusting anything in it, and checks every file
// against it: present, same SHA-256, same number of rows, and every row of
// the manifest's tenant. A bad MAC is ErrMAC, a row of another tenant
// ErrForeignRow, any other mismatch a *CorruptError naming the file.
func Verify(dir string, key []byte) (*Manifest, error) {
	if len(key) == 0 {
		return nil, errNoKey
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, &CorruptError{File: ManifestFile, Reason: err.Error()}
	}
	mac, err := os.ReadFile(filepath.Join(dir, MACFile))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", MACFile, ErrMAC, err)
	}
	if !hmac.Equal(bytes.TrimSpace(mac), []byte(manifestMAC(key, b))) {
		return nil, fmt.Errorf("%s: %w", dir, ErrMAC)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &CorruptError{File: ManifestFile, Reason: "decode: " + err.Error()}
	}
	if m.Format != FormatText {
		return nil, &CorruptError{File: ManifestFile, Reason: fmt.Sprintf("unknown format %q", m.Format)}
	}
	if err := registry.ValidateTenantID(m.Tenant); err != nil {
		return nil, &CorruptError{File: ManifestFile, Reason: err.Error()}
	}
	for _, tf := range m.Tables {
		if tf.File == "" || strings.ContainsAny(tf.File, `/\`) || tf.File == ".." || tf.File == ManifestFile || tf.File == MACFile {
			return nil, &CorruptError{File: ManifestFile, Reason: fmt.Sprintf("bad file name %q", tf.File)}
		}
		if err := verifyFile(filepath.Join(dir, tf.File), tf, m.Tenant); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

func verifyFile(path string, tf TableFile, tenant string) error {
	rows, err := newTenantRows(tf, tenant)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return &CorruptError{File: tf.File, Reason: err.Error()}
	}
	defer f.Close()
	h := sha256.New()
	lc := &lineCounter{w: h}
	if _, err := io.Copy(io.MultiWriter(lc, rows), f); err != nil {
		if errors.Is(err, ErrForeignRow) {
			return err
		}
		return &CorruptError{File: tf.File, Reason: err.Error()}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != tf.SHA256 {
		return &CorruptError{File: tf.File, Reason: fmt.Sprintf("sha256 %s, manifest says %s", sum, tf.SHA256)}
	}
	if lc.rows != tf.Rows {
		return &CorruptError{File: tf.File, Reason: fmt.Sprintf("%d rows, manifest says %d", lc.rows, tf.Rows)}
	}
	return nil
}
