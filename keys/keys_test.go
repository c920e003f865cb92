package keys_test

import (
	"bytes"
	"errors"
	"testing"

	"tenantry/keys"
)

func TestDerive(t *testing.T) {
	a := keys.Derive([]byte("secret"), keys.ClusterCredentials)
	if len(a) != keys.Size || !bytes.Equal(a, keys.Derive([]byte("secret"), keys.ClusterCredentials)) {
		t.Fatal("Derive is not a 32-byte function of secret and purpose")
	}
	for _, b := range [][]byte{
		keys.Derive([]byte("secret"), keys.TenantPasswords),
		keys.Derive([]byte("secret2"), keys.ClusterCredentials),
		[]byte("secret"),
	} {
		if bytes.Equal(a, b) {
			t.Fatal("two purposes or secrets share a key")
		}
	}
}

func TestSealOpen(t *testing.T) {
	k := keys.Derive([]byte("secret"), keys.ClusterCredentials)
	sealed, err := keys.Seal(k, []byte("hunter2"), []byte("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("plaintext visible")
	}
	got, err := keys.Open(k, sealed, []byte("c1"))
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	for name, try := range map[string]func() error{
		"other ad":  func() error { _, err := keys.Open(k, sealed, []byte("c2")); return err },
		"other key": func() error { _, err := keys.Open(keys.Derive([]byte("x"), "p"), sealed, []byte("c1")); return err },
		"tampered":  func() error { _, err := keys.Open(k, tampered, []byte("c1")); return err },
		"short":     func() error { _, err := keys.Open(k, sealed[:5], []byte("c1")); return err },
	} {
		if err := try(); !errors.Is(err, keys.ErrOpen) {
			t.Errorf("%s: %v, want ErrOpen", name, err)
		}
	}
}
