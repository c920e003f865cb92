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
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// mac is the hex HMAC of the signed fields.
func mac(key []byte, ts, tenant, stack, method, target string) string {
	m := hmac.New(sha256.New, key)
	m.Write(appendFields(nil, ts, tenant, stack, method, target, ""))
	return hex.EncodeToString(m.Sum(nil))
}

// appendFields appends what the MAC covers to buf: a version line, then
// each field followed by a newline (no field can hold one: tenants and
// stacks are validated names, methods are tokens, and a request target has
// no raw control characters). The target is path, and "?" and query when
// query is not empty.
func appendFields(buf []byte, ts, tenant, stack, method, path, query string) []byte {
	buf = append(buf, "v1\n"...)
	for _, f := range [...]string{ts, tenant, stack, method} {
		buf = append(append(buf, f...), '\n')
	}
	buf = append(buf, path...)
	if query != "" {
		buf = append(append(buf, '?'), query...)
	}
	return append(buf, '\n')
}

// Signer signs tenant headers for one stack as SignRequest does, with its
// keyed HMAC states and buffers reused across requests: the gateway signs
// every request it forwards. It is safe for concurrent use.
type Signer struct {
	stack string
	pool  sync.Pool // *signState
}

type signState struct {
	mac hash.Hash
	buf []byte
	sum []byte
}

// NewSigner returns a Signer for stack with key (StackKey of stack).
func NewSigner(key []byte, stack string) *Signer {
	key = append([]byte(nil), key...)
	s := &Signer{stack: stack}
	s.pool.New = func() any { return &signState{mac: hmac.New(sha256.New, key)} }
	return s
}

// SignRequest is SignRequest with the Signer's key and stack.
func (s *Signer) SignRequest(r *http.Request, tenant string, now time.Time) {
	st := s.pool.Get().(*signState)
	ts := strconv.FormatInt(now.Unix(), 10)
	st.buf = appendFields(st.buf[:0], ts, tenant, s.stack, r.Method, r.URL.EscapedPath(), r.URL.RawQuery)
	st.mac.Reset()
	st.mac.Write(st.buf)
	st.sum = st.mac.Sum(st.sum[:0])
	sig := make([]byte, len(ts)+1+hex.EncodedLen(len(st.sum)))
	n := copy(sig, ts)
	sig[n] = '.'
	hex.Encode(sig[n+1:], st.sum)
	s.pool.Put(st)
	vals := []string{tenant, string(sig)}
	r.Header[HeaderTenant] = vals[0:1:1]
	r.Header[HeaderSignature] = vals[1:2:2]
}
