// Package tenantsig signs and verifies the tenant header that the gateway
// passes to application instances. The gateway authenticates the caller's API
// key, then states the tenant in HeaderTenant and proves it with an HMAC of the
// platform secret in HeaderSignature; a service accepts a request only when the
// signature verifies, so a client that reaches an instance directly cannot
// claim another tenant.
package tenantsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderTenant    = "X-Tenantry-Tenant"
	HeaderSignature = "X-Tenantry-Signature"
)

// MaxSkew bounds how old (or how far in the future) a signature may be.
const MaxSkew = 5 * time.Minute

// Errors returned by Verify.
var (
	ErrMissing = errors.New("tenant header missing")
	ErrInvalid = errors.New("tenant header signature invalid")
	ErrExpired = errors.New("tenant header signature expired")
)

// Sign returns the signature of tenant at time now: "<unix seconds>.<hex mac>".
func Sign(secret []byte, tenant string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return ts + "." + mac(secret, ts, tenant)
}

// Set writes the tenant and its signature into h, replacing any values a
// client may have sent.
func Set(h http.Header, secret []byte, tenant string, now time.Time) {
	h.Set(HeaderTenant, tenant)
	h.Set(HeaderSignature, Sign(secret, tenant, now))
}

// Verify checks the signed tenant header of h and returns the tenant.
func Verify(h http.Header, secret []byte, now time.Time) (string, error) {
	tenant, sig := h.Get(HeaderTenant), h.Get(HeaderSignature)
	if tenant == "" || sig == "" {
		return "", ErrMissing
	}
	ts, got, ok := strings.Cut(sig, ".")
	if !ok {
		return "", ErrInvalid
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrInvalid
	}
	if !hmac.Equal([]byte(got), []byte(mac(secret, ts, tenant))) {
		return "", ErrInvalid
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return "", ErrExpired
	}
	return tenant, nil
}

func mac(secret []byte, ts, tenant string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write([]byte(tenant))
	return hex.EncodeToString(m.Sum(nil))
}
