package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Names of the session cookie and of the form field carrying the CSRF token.
const (
	SessionCookie = "tenantry_session"
	CSRFField     = "csrf"
)

// errNoSession means a request had no valid session cookie.
var errNoSession = errors.New("no valid dashboard session")

// sessions signs and checks session cookies. A cookie is
// "v1.<expiry unix>.<nonce>.<mac>": stateless, so that every control-plane
// replica (they share the platform secret) accepts the sessions of the
// others. The key is derived from the platform secret and the admin token,
// so rotating the token ends every session.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

func newSessions(secret []byte, adminToken string, ttl time.Duration, now func() time.Time) *sessions {
	tok := sha256.Sum256([]byte(adminToken))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("tenantry dashboard session v1\x00"))
	m.Write(tok[:])
	return &sessions{key: m.Sum(nil), ttl: ttl, now: now}
}

func (s *sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns a new session cookie value.
func (s *sessions) issue() (string, time.Time) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	exp := s.now().Add(s.ttl).Truncate(time.Second)
	body := "v1." + strconv.FormatInt(exp.Unix(), 10) + "." + hex.EncodeToString(nonce[:])
	return body + "." + s.mac("session", body), exp
}

// check verifies a cookie value and its expiry.
func (s *sessions) check(v string) error {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return errNoSession
	}
	body, sig := v[:i], v[i+1:]
	if subtle.ConstantTimeCompare([]byte(sig), []byte(s.mac("session", body))) != 1 {
		return errNoSession
	}
	parts := strings.Split(body, ".")
	if len(parts) != 3 || parts[0] != "v1" {
		return errNoSession
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || !s.now().Before(time.Unix(exp, 0)) {
		return fmt.Errorf("%w: expired", errNoSession)
	}
	return nil
}

// csrf is the CSRF token of a session: bound to the session cookie, so a
// token is worthless without the cookie it came with and the other way round.
func (s *sessions) csrf(session string) string { return s.mac("csrf", session) }

func (s *sessions) checkCSRF(session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf(session))) == 1
}

// session returns the request's valid session cookie value.
func (s *sessions) session(r *http.Request) (string, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return "", errNoSession
	}
	if err := s.check(c.Value); err != nil {
		return "", err
	}
	return c.Value, nil
}

func (s *sessions) setCookie(w http.ResponseWriter, r *http.Request, value string, exp time.Time) {
	c := &http.Cookie{Name: SessionCookie, Value: value, Path: Prefix, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = exp
	}
	http.SetCookie(w, c)
}
