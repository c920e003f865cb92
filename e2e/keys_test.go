package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"tenantry/load"
	"tenantry/platform"
	"tenantry/tenanttable"
)

// cli runs the tenantry binary against the platform's control API, as an
// operator does, and returns its stdout.
func cli(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tenantryBin, args...)
	cmd.Env = append(os.Environ(), "TENANTRY_API="+plat.APIURL, "TENANTRY_TOKEN="+plat.Local.State.AdminToken)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, fmt.Errorf("tenantry %v: %w: %s", args, err, ee.Stderr)
	}
	return out, err
}

// keyStatus is the gateway's answer to GET /v1/orders with key.
func keyStatus(ctx context.Context, key string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, plat.GatewayURL+"/v1/orders", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	drain(resp)
	return resp.StatusCode, nil
}

// TestKeyRotationUnderLoad: load runs on a tenant's second key while a
// prober uses its first; the first is revoked through the CLI mid-run. The
// gateway answers the revoked key 401 from its next snapshot and never 200
// after that, and the load on the second key fails no request. Then `tenant
// delete` leaves no row, role or key of the tenant.
func TestKeyRotationUnderLoad(t *testing.T) {
	ctx := testContext(t)
	first := newTenant(t, "e2e-keys")
	out, err := cli(ctx, "--output", "json", "tenant", "key", "create", first.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	var k2 struct {
		KeyID  string `json:"key_id"`
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &k2); err != nil {
		t.Fatalf("key create printed %q: %v", out, err)
	}
	second := load.Target{Tenant: first.Tenant, APIKey: k2.APIKey}
	if err := syncGateway(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitServed(ctx, []load.Target{second}, platform.SharedStack); err != nil {
		t.Fatal(err)
	}
	keys, err := plat.Store.APIKeys(ctx, first.Tenant)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys of %s = %+v, %v; want 2", first.Tenant, keys, err)
	}
	firstID := keys[0].ID

	var refusedAfter time.Duration
	var probeErr error
	sum, ledger := runLoad(t, []load.Target{second}, time.Minute, 100, func(p *progress, done <-chan struct{}, stop func()) {
		defer stop()
		probeErr = func() error {
			if _, ok := p.waitAcks(50, done); !ok {
				return fmt.Errorf("the load ended before 50 acknowledged requests")
			}
			if st, err := keyStatus(ctx, first.APIKey); err != nil || st != http.StatusOK {
				return fmt.Errorf("first key before revocation: %d, %v; want 200", st, err)
			}
			if _, err := cli(ctx, "tenant", "key", "revoke", first.Tenant, firstID); err != nil {
				return err
			}
			revoked := time.Now()
			for {
				st, err := keyStatus(ctx, first.APIKey)
				if err != nil {
					return err
				}
				if st == http.StatusUnauthorized {
					refusedAfter = time.Since(revoked)
					break
				}
				if st != http.StatusOK {
					return fmt.Errorf("first key after revocation: %d, want 200 or 401", st)
				}
				if time.Since(revoked) > 30*time.Second {
					return fmt.Errorf("first key still accepted 30 s after its revocation")
				}
				time.Sleep(5 * time.Millisecond)
			}
			for range 20 {
				if st, err := keyStatus(ctx, first.APIKey); err != nil || st != http.StatusUnauthorized {
					return fmt.Errorf("revoked key answered %d, %v after a 401", st, err)
				}
			}
			s, ok := p.waitAcks(0, done)
			if ok {
				p.waitAcks(s.Acknowledged+50, done)
			}
			return nil
		}()
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	t.Logf("revoked key refused by the gateway %v after `tenant key revoke` returned", refusedAfter)
	if sum.Failures != 0 || sum.Acknowledged == 0 {
		t.Fatalf("load on the second key: %d failures %v, %d acknowledged; want no failure", sum.Failures, sum.FailuresByCode, sum.Acknowledged)
	}
	checkLedger(t, ledger)

	// Delete the tenant: its rows (the load's orders among them), role and
	// keys go.
	if _, err := cli(ctx, "tenant", "delete", first.Tenant); err == nil {
		t.Fatal("tenant delete without --yes succeeded")
	}
	if _, err := cli(ctx, "tenant", "delete", first.Tenant, "--yes"); err != nil {
		t.Fatal(err)
	}
	pool := pooledAdmin(t)
	tables, err := tenanttable.Names(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+tbl+" WHERE tenant_id = $1", first.Tenant).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows of %s left in %s", n, first.Tenant, tbl)
		}
	}
	var role bool
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 't_' || $1)", first.Tenant).Scan(&role); err != nil || role {
		t.Errorf("role of %s left (%v)", first.Tenant, err)
	}
	var keysLeft int
	if err := plat.Store.Pool().QueryRow(ctx, "SELECT count(*) FROM api_keys WHERE tenant = $1", first.Tenant).Scan(&keysLeft); err != nil || keysLeft != 0 {
		t.Errorf("%d api keys of %s left (%v)", keysLeft, first.Tenant, err)
	}
	if err := poll(ctx, "the second key refused", func() (bool, error) {
		st, err := keyStatus(ctx, second.APIKey)
		return st == http.StatusUnauthorized, err
	}); err != nil {
		t.Fatal(err)
	}
}
