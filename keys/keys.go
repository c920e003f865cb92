// Package keys derives purpose-scoped keys from the platform secret and seals
// small secrets with them. Nothing uses the platform secret directly: each
// use derives its own key (Derive with a Purpose), so that a key handed to a
// process for one purpose (say, tenant database passwords) opens nothing
// else (cluster credentials, other stacks' headers).
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Purposes of derived keys. Changing one changes every key derived for it.
const (
	// ClusterCredentials seals clusters' admin credentials in the registry.
	ClusterCredentials = "cluster-credentials"
	// TenantPasswords derives tenant database role passwords
	// (provision.Password).
	TenantPasswords = "tenant-db-passwords"
	// Backup keys the MAC over backup manifests (backup.Key).
	Backup = "backup"
	// TenantHeaders is the tenant-header root key (tenantsig.RootKey),
	// from which each stack's header key is derived.
	TenantHeaders = "tenant-headers"
)

// Size is the length of a derived key in bytes.
const Size = 32

// ErrOpen means a sealed value could not be opened: wrong key, wrong
// associated data, or tampered bytes.
var ErrOpen = errors.New("sealed value does not open with this key")

// Derive returns the key for purpose: HKDF-SHA256 of the secret with the
// purpose as info. It panics on an empty secret or purpose, which are
// programming errors (callers check the secret when they are configured).
func Derive(secret []byte, purpose string) []byte {
	if len(secret) == 0 || purpose == "" {
		panic("keys: Derive needs a secret and a purpose")
	}
	k, err := hkdf.Key(sha256.New, secret, nil, "tenantry "+purpose, Size)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	return k
}

// Seal encrypts plaintext with AES-256-GCM under key, binding it to ad (the
// name of what it belongs to, so that a sealed value moved to another row
// does not open). The result is nonce || ciphertext.
func Seal(key, plaintext, ad []byte) ([]byte, error) {
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, ad), nil
}

// Open decrypts what Seal returned for the same key and ad. ErrOpen if it
// does not authenticate.
func Open(key, sealed, ad []byte) ([]byte, error) {
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrOpen
	}
	n := aead.NonceSize()
	out, err := aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	if len(key) != Size {
		return nil, fmt.Errorf("keys: key of %d bytes, want %d", len(key), Size)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
