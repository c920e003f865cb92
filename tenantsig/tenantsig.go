// Package tenantsig signs and verifies the tenant header that the gateway
// passes to application instances. The gateway authenticates the caller's API
// key, then states the tenant in HeaderTenant and proves it in
// HeaderSignature: an HMAC, with the key of the stack the request goes to, of
// the tenant, the stack, the request's method and target (path and query),
// and the time. A service accepts a request only when the signature verifies
// for its own stack, for this very method and target, within MaxSkew of its
// clock; so a client that reaches an instance directly cannot claim a tenant,
// and a header captured on the way (in a log, a proxy) opens nothing but the
// same request on the same stack for a few seconds.
//
// Keys are derived per purpose from the platform secret: RootKey for tenant
// headers (held by the gateway only), and from it StackKey, one per stack
// (held by that stack's instances only, so that one stack's instances cannot
// sign for another).
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

	"tenantry/keys"
)

// Header names.
const (
	HeaderTenant    = "X-Tenantry-Tenant"
	HeaderSignature = "X-Tenantry-Signature"
)

// MaxSkew bounds how old (or how far in the future) a signature may be.
const MaxSkew = 30 * time.Second

// Errors returned by Verify.
var (
	ErrMissing = errors.New("tenant header missing")
	ErrInvalid = errors.New("tenant header signature invalid")
	ErrExpired = errors.New("tenant header signature expired")
)

// RootKey derives the tenant-header root key from the platform secret
// (keys.Derive for keys.TenantHeaders). The gateway holds it and derives
// every stack's key from it; it opens nothing else (tenant database
// passwords, cluster credentials and backup MACs have keys of their own).
func RootKey(secret []byte) []byte { return keys.Derive(secret, keys.TenantHeaders) }

// StackKey derives stack's header key from the root key: HMAC-SHA256 of the
// stack's name. Only the gateway and the stack's own instances hold it.
func StackKey(root []byte, stack string) []byte {
	m := hmac.New(sha256.New, root)
	m.Write([]byte("stack\x00" + stack))
	return m.Sum(nil)
}

// Target is what the signature covers of a request's URL: the escaped path
// and, when there is one, the query.
func Target(r *http.Request) string {
	p := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		return p + "?" + r.URL.RawQuery
	}
	return p
}

// Sign returns the signature of tenant for a request with method and target
// to stack, at time now: "<unix seconds>.<hex mac>". key is StackKey of the
// stack.
func Sign(key []byte, tenant, stack, method, target string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return ts + "." + mac(key, ts, tenant, stack, method, target)
}

// SignRequest writes the tenant and its signature into r's headers,
// replacing any values a client may have sent. The signature covers r's
// method and Target as they are now: sign after the URL is final.
func SignRequest(r *http.Request, key []byte, tenant, stack string, now time.Time) {
	r.Header[HeaderTenant] = []string{tenant}
	r.Header[HeaderSignature] = []string{Sign(key, tenant, stack, r.Method, Target(r), now)}
}

// Verify checks the signed tenant header of r, received by an instance of
// stack holding key (StackKey of stack), and returns the tenant.
func Verify(r *http.Request, key []byte, stack string, now time.Time) (string, error) {
	tenant, sig := r.Header.Get(HeaderTenant), r.Header.Get(HeaderSignature)
	if tenant == "" || sig == "" {
		return "", ErrMissing
	}
	ts, got, ok := strings.Cut(sig, ".")
	if !ok || len(got) != 2*sha256.Size {
		return "", ErrInvalid
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrInvalid
	}
	if !hmac.Equal([]byte(got), []byte(mac(key, ts, tenant, stack, r.Method, Target(r)))) {
		return "", ErrInvalid
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return "", ErrExpired
	}
	return tenant, nil
}

// mac is the hex HMAC of the signed fields, each followed by a newline (no
// field can hold one: tenants and stacks are validated names, methods are
// tokens, and a request target has no raw control characters).
func mac(key []byte, fields ...string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("v1\n"))
	for _, f := range fields {
		m.Write([]byte(f))
		m.Write([]byte{'\n'})
	}
	return hex.EncodeToString(m.Sum(nil))
}
