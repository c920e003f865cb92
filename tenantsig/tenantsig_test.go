package tenantsig

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	secret := []byte("platform-secret")
	now := time.Unix(1_800_000_000, 0)
	good := http.Header{}
	Set(good, secret, "acme", now)
	tests := []struct {
		name string
		h    func() http.Header
		at   time.Time
		want error
	}{
		{"valid", func() http.Header { return good.Clone() }, now, nil},
		{"missing", func() http.Header { return http.Header{} }, now, ErrMissing},
		{"other tenant", func() http.Header { h := good.Clone(); h.Set(HeaderTenant, "globex"); return h }, now, ErrInvalid},
		{"wrong secret", func() http.Header { h := http.Header{}; Set(h, []byte("x"), "acme", now); return h }, now, ErrInvalid},
		{"garbage", func() http.Header { h := good.Clone(); h.Set(HeaderSignature, "nonsense"); return h }, now, ErrInvalid},
		{"expired", func() http.Header { return good.Clone() }, now.Add(MaxSkew + time.Second), ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tenant, err := Verify(tc.h(), secret, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %q, %v; want %v", tenant, err, tc.want)
			}
			if err == nil && tenant != "acme" {
				t.Fatalf("tenant = %q, want acme", tenant)
			}
		})
	}
}
