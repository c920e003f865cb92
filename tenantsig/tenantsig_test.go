package tenantsig

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

var root = RootKey([]byte("platform-secret"))

// captured is a request as stack "a" received it from the gateway, with
// its headers: what someone who can read traffic or logs could replay.
func captured(t *testing.T, now time.Time) *http.Request {
	t.Helper()
	r := httptest.NewRequest("GET", "/v1/orders/7?expand=lines", nil)
	SignRequest(r, StackKey(root, "a"), "acme", "a", now)
	return r
}

// replay is a new request carrying the captured tenant headers.
func replay(from *http.Request, method, target string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set(HeaderTenant, from.Header.Get(HeaderTenant))
	r.Header.Set(HeaderSignature, from.Header.Get(HeaderSignature))
	return r
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	keyA, keyB := StackKey(root, "a"), StackKey(root, "b")
	good := captured(t, now)
	tests := []struct {
		name  string
		r     func() *http.Request
		key   []byte
		stack string
		at    time.Time
		want  error
	}{
		{"valid", func() *http.Request { return good }, keyA, "a", now, nil},
		{"valid 30s later", func() *http.Request { return good }, keyA, "a", now.Add(MaxSkew), nil},
		{"valid from a clock 30s ahead", func() *http.Request { return good }, keyA, "a", now.Add(-MaxSkew), nil},
		{"missing", func() *http.Request { return httptest.NewRequest("GET", "/v1/orders/7", nil) }, keyA, "a", now, ErrMissing},
		{"another stack, its own key", func() *http.Request { return good }, keyB, "b", now, ErrInvalid},
		{"another stack name, stack a's key", func() *http.Request { return good }, keyA, "b", now, ErrInvalid},
		{"after 31s", func() *http.Request { return good }, keyA, "a", now.Add(MaxSkew + time.Second), ErrExpired},
		{"31s early", func() *http.Request { return good }, keyA, "a", now.Add(-MaxSkew - time.Second), ErrExpired},
		{"another method", func() *http.Request { return replay(good, "POST", "/v1/orders/7?expand=lines") }, keyA, "a", now, ErrInvalid},
		{"another path", func() *http.Request { return replay(good, "GET", "/v1/orders/8?expand=lines") }, keyA, "a", now, ErrInvalid},
		{"another query", func() *http.Request { return replay(good, "GET", "/v1/orders/7") }, keyA, "a", now, ErrInvalid},
		{"same request again", func() *http.Request { return replay(good, "GET", "/v1/orders/7?expand=lines") }, keyA, "a", now, nil},
		{"another tenant", func() *http.Request {
			r := replay(good, "GET", "/v1/orders/7?expand=lines")
			r.Header.Set(HeaderTenant, "globex")
			return r
		}, keyA, "a", now, ErrInvalid},
		{"the root key", func() *http.Request {
			r := httptest.NewRequest("GET", "/x", nil)
			SignRequest(r, root, "acme", "a", now)
			return r
		}, keyA, "a", now, ErrInvalid},
		{"the platform secret", func() *http.Request {
			r := httptest.NewRequest("GET", "/x", nil)
			SignRequest(r, []byte("platform-secret"), "acme", "a", now)
			return r
		}, keyA, "a", now, ErrInvalid},
		{"garbage", func() *http.Request {
			r := replay(good, "GET", "/v1/orders/7?expand=lines")
			r.Header.Set(HeaderSignature, "nonsense")
			return r
		}, keyA, "a", now, ErrInvalid},
		{"timestamp changed", func() *http.Request {
			r := replay(good, "GET", "/v1/orders/7?expand=lines")
			r.Header.Set(HeaderSignature, "1800000100"+r.Header.Get(HeaderSignature)[10:])
			return r
		}, keyA, "a", now.Add(100 * time.Second), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tenant, err := Verify(tc.r(), tc.key, tc.stack, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %q, %v; want %v", tenant, err, tc.want)
			}
			if err == nil && tenant != "acme" {
				t.Fatalf("tenant = %q, want acme", tenant)
			}
		})
	}
}

func TestStackKey_Distinct(t *testing.T) {
	seen := map[string]string{}
	for _, k := range []struct{ name, key string }{
		{"root", string(root)}, {"secret", "platform-secret"},
		{"a", string(StackKey(root, "a"))}, {"b", string(StackKey(root, "b"))},
		{"other root a", string(StackKey(RootKey([]byte("other")), "a"))},
	} {
		if prev, ok := seen[k.key]; ok {
			t.Fatalf("keys %s and %s are equal", prev, k.name)
		}
		seen[k.key] = k.name
	}
}

// FuzzVerify: Verify never panics on any header, method or target, and
// accepts a request only when its signature is exactly what Sign makes for
// that tenant, stack, method and target, at a time within MaxSkew of now.
// Seeds (valid signatures among them) in testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	key := StackKey(root, "a")
	f.Add("acme", Sign(key, "acme", "a", "GET", "/v1/orders/7", now), "GET", "/v1/orders/7", int64(0))
	f.Add("acme", Sign(key, "acme", "a", "POST", "/v1/orders?x=1", now), "POST", "/v1/orders?x=1", int64(29))
	f.Fuzz(func(t *testing.T, tenant, sig, method, target string, skew int64) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		r := &http.Request{Method: method, URL: u, Header: http.Header{HeaderTenant: {tenant}, HeaderSignature: {sig}}}
		at := now.Add(time.Duration(skew%1_000_000) * time.Second)
		got, err := Verify(r, key, "a", at)
		if err != nil {
			if !errors.Is(err, ErrMissing) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
				t.Fatalf("Verify error %v is none of the package's", err)
			}
			return
		}
		ts, _, _ := strings.Cut(sig, ".")
		sec, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil || got != tenant {
			t.Fatalf("accepted %q (tenant %q) answering %q", sig, tenant, got)
		}
		if want := Sign(key, tenant, "a", method, Target(r), time.Unix(sec, 0)); sig != want {
			t.Fatalf("accepted %q, but Sign makes %q", sig, want)
		}
		if d := at.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
			t.Fatalf("accepted a signature %v off", d)
		}
	})
}

// TestSigner_SignRequest: a Signer signs exactly as SignRequest does (the
// gateway uses the one, tests and baselines the other), replacing what a
// client sent, for targets with and without a query and with escapes.
func TestSigner_SignRequest(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	key := StackKey(root, "a")
	s := NewSigner(key, "a")
	for _, target := range []string{"/v1/orders/7", "/v1/orders?limit=5&after=9", "/v1/x%2Fy/z", "/"} {
		for _, method := range []string{"GET", "POST"} {
			want := httptest.NewRequest(method, target, nil)
			SignRequest(want, key, "acme", "a", now)
			got := httptest.NewRequest(method, target, nil)
			got.Header.Add(HeaderTenant, "globex")
			got.Header.Add(HeaderTenant, "initech")
			got.Header.Set(HeaderSignature, "forged")
			s.SignRequest(got, "acme", now)
			if g, w := got.Header.Values(HeaderTenant), want.Header.Values(HeaderTenant); len(g) != 1 || g[0] != w[0] {
				t.Fatalf("%s %s: tenant %q, want %q", method, target, g, w)
			}
			if g, w := got.Header.Values(HeaderSignature), want.Header.Values(HeaderSignature); len(g) != 1 || g[0] != w[0] {
				t.Fatalf("%s %s: signature %q, want %q", method, target, g, w)
			}
			if tenant, err := Verify(got, key, "a", now); err != nil || tenant != "acme" {
				t.Fatalf("%s %s: Verify = %q, %v", method, target, tenant, err)
			}
		}
	}
}
