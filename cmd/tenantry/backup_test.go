package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tenantry/backup"
)

// TestMain_BackupVerifyKey: `backup verify` checks the manifest's MAC under
// the key of the platform secret it is given (--secret-file or
// $TENANTRY_SECRET) and refuses the backup under another secret.
func TestMain_BackupVerifyKey(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("the platform secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bdir := filepath.Join(dir, "acme-backup")
	if err := os.Mkdir(bdir, 0o700); err != nil {
		t.Fatal(err)
	}
	manifest := []byte(`{"tenant": "acme", "source": "pool", "format": "text", "tables": []}` + "\n")
	mac := hmac.New(sha256.New, backup.Key([]byte("the platform secret")))
	mac.Write(manifest)
	for name, b := range map[string][]byte{backup.ManifestFile: manifest, backup.MACFile: []byte(hex.EncodeToString(mac.Sum(nil)))} {
		if err := os.WriteFile(filepath.Join(bdir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := MainContext(context.Background(), append([]string{"--data-dir", dir}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("backup", "verify", bdir, "--secret-file", secretFile); code != exitOK || !strings.Contains(out, "tenant acme") {
		t.Fatalf("verify with the secret: exit %d, %q", code, out)
	}
	t.Setenv("TENANTRY_SECRET", "another secret")
	if code, out := run("backup", "verify", bdir); code != exitFailure || !strings.Contains(out, "MAC does not verify") {
		t.Fatalf("verify under another secret: exit %d, %q; want 1 naming the MAC", code, out)
	}
}
