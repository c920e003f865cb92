package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"tenantry/pgtest"
	"tenantry/registry"
)

// Every entry of the error table round-trips through a real HTTP server and
// the client: the status and code are the table's, and errors.Is finds the
// sentinel on the client's error.
func TestErrorCodes_roundTrip(t *testing.T) {
	seenCode := map[string]bool{}
	seenErr := map[error]bool{}
	for _, e := range errorCodes {
		if seenCode[e.code] || seenErr[e.err] {
			t.Fatalf("error table: %q (%v) appears twice; one code per sentinel", e.code, e.err)
		}
		seenCode[e.code], seenErr[e.err] = true, true
	}

	ctx := context.Background()
	store, err := registry.OpenStore(ctx, pgtest.MustCluster(t).DSN(pgtest.MustDB(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	svc, err := NewService(Config{Store: store, Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(svc, "tok")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errorCodes {
		srv.Handle("GET /v1/errors/"+e.code, func(*http.Request) (int, any, error) {
			return 0, nil, fmt.Errorf("doing %s: %w", e.code, e.err)
		})
	}
	srv.Handle("GET /v1/errors/plain", func(*http.Request) (int, any, error) {
		return 0, nil, errors.New("no sentinel")
	})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c := &Client{BaseURL: hs.URL, Token: "tok"}

	for _, e := range errorCodes {
		t.Run(e.code, func(t *testing.T) {
			err := c.Do(ctx, http.MethodGet, "/v1/errors/"+e.code, nil, nil)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != e.status || ae.Code != e.code {
				t.Fatalf("answer %v, want status %d code %s", err, e.status, e.code)
			}
			if !errors.Is(err, e.err) {
				t.Fatalf("errors.Is(%v, %v) is false on the client", err, e.err)
			}
			for _, other := range errorCodes {
				if other.err != e.err && errors.Is(err, other.err) {
					t.Errorf("client error %q also matches %v", e.code, other.err)
				}
			}
		})
	}
	t.Run("internal", func(t *testing.T) {
		err := c.Do(ctx, http.MethodGet, "/v1/errors/plain", nil, nil)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError || ae.Code != "internal" || ae.Unwrap() != nil {
			t.Fatalf("answer %v, want 500 internal with no sentinel", err)
		}
	})
}
