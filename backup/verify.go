package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Verify reads dir's manifest and checks every file against it: present,
// same SHA-256, same number of rows. A mismatch is a *CorruptError naming
// the file.
func Verify(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, &CorruptError{File: ManifestFile, Reason: err.Error()}
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &CorruptError{File: ManifestFile, Reason: "decode: " + err.Error()}
	}
	if m.Format != FormatText {
		return nil, &CorruptError{File: ManifestFile, Reason: fmt.Sprintf("unknown format %q", m.Format)}
	}
	for _, tf := range m.Tables {
		if tf.File == "" || strings.ContainsAny(tf.File, `/\`) || tf.File == ".." {
			return nil, &CorruptError{File: ManifestFile, Reason: fmt.Sprintf("bad file name %q", tf.File)}
		}
		if err := verifyFile(filepath.Join(dir, tf.File), tf); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

func verifyFile(path string, tf TableFile) error {
	f, err := os.Open(path)
	if err != nil {
		return &CorruptError{File: tf.File, Reason: err.Error()}
	}
	defer f.Close()
	h := sha256.New()
	lc := &lineCounter{w: h}
	if _, err := io.Copy(lc, f); err != nil {
		return &CorruptError{File: tf.File, Reason: err.Error()}
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != tf.SHA256 {
		return &CorruptError{File: tf.File, Reason: fmt.Sprintf("sha256 %s, manifest says %s", sum, tf.SHA256)}
	}
	if lc.rows != tf.Rows {
		return &CorruptError{File: tf.File, Reason: fmt.Sprintf("%d rows, manifest says %d", lc.rows, tf.Rows)}
	}
	return nil
}
