package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/load"
	"tenantry/platform"
	"tenantry/registry"
	"tenantry/tenantsig"
)

// tenantPair creates tenants a and b, each with one product and one
// location in stock, served by the shared stack.
func tenantPair(t *testing.T, a, b string) (load.Target, load.Target, load.Catalog) {
	t.Helper()
	ctx := testContext(t)
	ta, tb := newTenant(t, a), newTenant(t, b)
	if err := syncGateway(ctx); err != nil {
		t.Fatal(err)
	}
	targets := []load.Target{ta, tb}
	if err := waitServed(ctx, targets, platform.SharedStack); err != nil {
		t.Fatal(err)
	}
	cat, err := load.Setup(ctx, load.Config{BaseURL: plat.GatewayURL, Targets: targets, Seed: 1},
		load.SetupOptions{Products: 1, Locations: 1, Stock: 100})
	if err != nil {
		t.Fatal(err)
	}
	return ta, tb, cat
}

// call sends one request through the gateway. auth is the whole
// Authorization header ("" for none); extra headers are added as given.
func call(t *testing.T, method, path, auth string, body any, extra http.Header) (int, string, map[string]any) {
	t.Helper()
	return callURL(t, plat.GatewayURL+path, method, auth, body, extra)
}

func callURL(t *testing.T, url, method, auth string, body any, extra http.Header) (int, string, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(testContext(t), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer drain(resp)
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	code := ""
	if e, ok := out["error"].(map[string]any); ok {
		code, _ = e["code"].(string)
	}
	return resp.StatusCode, code, out
}

func bearer(key string) string { return "Bearer " + key }

// placeOrder places an order of one unit as tg and returns its id.
func placeOrder(t *testing.T, tg load.Target, cat load.Catalog, extra http.Header) int64 {
	t.Helper()
	c := cat[tg.Tenant]
	body := map[string]any{"location_id": c.Locations[0], "lines": []map[string]any{{"product_id": c.Products[0], "quantity": 1}}}
	status, code, out := call(t, "POST", "/v1/orders", bearer(tg.APIKey), body, extra)
	if status != http.StatusCreated {
		t.Fatalf("place order as %s: %d %s %v", tg.Tenant, status, code, out)
	}
	id, _ := out["id"].(float64)
	if id == 0 {
		t.Fatalf("place order as %s: no id in %v", tg.Tenant, out)
	}
	return int64(id)
}

// orderTenant reads which tenant the database holds order id for.
// pooledAdmin is an admin pool to the pooled alias's database, closed when
// the test ends.
func pooledAdmin(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := testContext(t)
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := snap.AliasEndpoint(platform.PooledAlias)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := plat.AdminPool(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func orderTenant(t *testing.T, id int64) []string {
	t.Helper()
	ctx := testContext(t)
	pool := pooledAdmin(t)
	rows, err := pool.Query(ctx, "SELECT tenant_id FROM orders WHERE id = $1", id)
	if err != nil {
		t.Fatal(err)
	}
	tenants, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return tenants
}

// TestGatewayAuth: requests without a valid API key are refused before
// any routing, and a client cannot pick its tenant with the header the
// gateway signs for the service: the key's tenant is what counts.
func TestGatewayAuth(t *testing.T) {
	a, b, cat := tenantPair(t, "e2e-auth-a", "e2e-auth-b")

	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", bearer(a.APIKey + "x"), "Basic " + a.APIKey, a.APIKey} {
		for _, req := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/orders", nil},
			{"POST", "/v1/orders", map[string]any{"location_id": 1, "lines": []any{}}},
		} {
			status, code, out := call(t, req.method, req.path, auth, req.body, nil)
			if status != http.StatusUnauthorized || code != "unauthorized" {
				t.Errorf("%s %s with Authorization %q: %d %v, want 401 unauthorized", req.method, req.path, auth, status, out)
			}
		}
	}
	// A tenant header without a key is no credential either.
	forgedB := http.Header{tenantsig.HeaderTenant: {b.Tenant}}
	if status, code, _ := call(t, "GET", "/v1/orders", "", nil, forgedB); status != http.StatusUnauthorized || code != "unauthorized" {
		t.Errorf("tenant header without a key: %d %s, want 401 unauthorized", status, code)
	}

	// A's key with headers naming B (even signed, with a wrong secret):
	// the order is A's.
	forged := http.Header{
		tenantsig.HeaderTenant:    {b.Tenant},
		tenantsig.HeaderSignature: {tenantsig.Sign([]byte("not the platform secret"), b.Tenant, platform.SharedStack, "POST", "/v1/orders", time.Now())},
	}
	id := placeOrder(t, a, cat, forged)
	if got := orderTenant(t, id); len(got) != 1 || got[0] != a.Tenant {
		t.Fatalf("order %d placed with A's key and a forged tenant header belongs to %v, want [%s]", id, got, a.Tenant)
	}
	path := fmt.Sprintf("/v1/orders/%d", id)
	if status, code, _ := call(t, "GET", path, bearer(b.APIKey), nil, nil); status != http.StatusNotFound || code != "not_found" {
		t.Errorf("GET %s as %s: %d %s, want 404 not_found", path, b.Tenant, status, code)
	}
	if status, _, out := call(t, "GET", path, bearer(a.APIKey), nil, nil); status != http.StatusOK {
		t.Errorf("GET %s as %s: %d %v, want 200", path, a.Tenant, status, out)
	}
	// B's key with A's name in the header reads as B.
	forgedA := http.Header{tenantsig.HeaderTenant: {a.Tenant}}
	if status, code, _ := call(t, "GET", path, bearer(b.APIKey), nil, forgedA); status != http.StatusNotFound || code != "not_found" {
		t.Errorf("GET %s as %s with a header naming %s: %d %s, want 404 not_found", path, b.Tenant, a.Tenant, status, code)
	}
}

// TestServiceRejectsUnsignedTenant: an instance reached directly, around
// the gateway, refuses a tenant header that the platform did not sign.
func TestServiceRejectsUnsignedTenant(t *testing.T) {
	ctx := testContext(t)
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inst := snap.Stacks[platform.SharedStack].Instances[0].URL
	for name, h := range map[string]http.Header{
		"no tenant header": {},
		"unsigned":         {tenantsig.HeaderTenant: {"e2e-nobody"}},
		"wrong secret": {tenantsig.HeaderTenant: {"e2e-nobody"},
			tenantsig.HeaderSignature: {tenantsig.Sign([]byte("not the platform secret"), "e2e-nobody", platform.SharedStack, "GET", "/v1/orders", time.Now())}},
		"the platform secret itself": {tenantsig.HeaderTenant: {"e2e-nobody"},
			tenantsig.HeaderSignature: {tenantsig.Sign([]byte(plat.Local.State.Secret), "e2e-nobody", platform.SharedStack, "GET", "/v1/orders", time.Now())}},
		"another stack's key": {tenantsig.HeaderTenant: {"e2e-nobody"},
			tenantsig.HeaderSignature: {tenantsig.Sign(stackKey("other"), "e2e-nobody", "other", "GET", "/v1/orders", time.Now())}},
	} {
		status, code, out := callURL(t, inst+"/v1/orders", "GET", "", nil, h)
		if status != http.StatusUnauthorized || code != "unauthorized" {
			t.Errorf("%s, straight to the instance: %d %v, want 401 unauthorized", name, status, out)
		}
	}
}

// TestCrossTenantThroughGateway: one tenant cannot read or change another
// tenant's order or catalog through the platform.
func TestCrossTenantThroughGateway(t *testing.T) {
	a, b, cat := tenantPair(t, "e2e-cross-a", "e2e-cross-b")
	id := placeOrder(t, a, cat, nil)
	for _, req := range []struct{ method, path string }{
		{"GET", fmt.Sprintf("/v1/orders/%d", id)},
		{"POST", fmt.Sprintf("/v1/orders/%d/fulfil", id)},
		{"POST", fmt.Sprintf("/v1/orders/%d/cancel", id)},
		{"GET", fmt.Sprintf("/v1/products/%d", cat[a.Tenant].Products[0])},
		{"GET", fmt.Sprintf("/v1/locations/%d", cat[a.Tenant].Locations[0])},
	} {
		if status, code, out := call(t, req.method, req.path, bearer(b.APIKey), nil, nil); status != http.StatusNotFound || code != "not_found" {
			t.Errorf("%s %s as %s: %d %v, want 404 not_found", req.method, req.path, b.Tenant, status, out)
		}
	}
	status, _, out := call(t, "GET", "/v1/orders?limit=100", bearer(b.APIKey), nil, nil)
	if status != http.StatusOK {
		t.Fatalf("list orders as %s: %d %v", b.Tenant, status, out)
	}
	if orders, _ := out["orders"].([]any); len(orders) != 0 {
		t.Errorf("%s lists %d orders, want none (it placed none)", b.Tenant, len(orders))
	}
	status, _, out = call(t, "GET", fmt.Sprintf("/v1/orders/%d", id), bearer(a.APIKey), nil, nil)
	if status != http.StatusOK || out["status"] != "reserved" {
		t.Errorf("order %d as its owner after %s's attempts: %d %v, want 200 reserved", id, b.Tenant, status, out)
	}
}

// TestMetricsOnAdminListenerOnly: the gateway's and the instances' public
// listeners answer /metrics 404 (JSON), with or without a key; the
// gateway's admin listener serves it.
func TestMetricsOnAdminListenerOnly(t *testing.T) {
	ctx := testContext(t)
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := "Bearer " + newTenant(t, "e2e-metrics").APIKey
	if err := syncGateway(ctx); err != nil {
		t.Fatal(err)
	}
	if status, _, out := call(t, "GET", "/v1/orders", "", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("keyless request: %d %v", status, out)
	}
	for _, url := range []string{plat.GatewayURL, snap.Stacks[platform.SharedStack].Instances[0].URL} {
		for _, auth := range []string{"", key} {
			if status, code, out := callURL(t, url+"/metrics", "GET", auth, nil, nil); status != http.StatusNotFound || code != "not_found" {
				t.Errorf("public %s/metrics: %d %v, want 404 not_found", url, status, out)
			}
		}
	}
	resp, err := http.Get(plat.GatewayAdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("tenantry_gateway_requests_total")) {
		t.Fatalf("admin /metrics: %d %.200s", resp.StatusCode, b)
	}
}

// stackKey is the tenant-header key of stack on the test platform.
func stackKey(stack string) []byte {
	return tenantsig.StackKey(tenantsig.RootKey([]byte(plat.Local.State.Secret)), stack)
}

// TestHeaderKeyPerStack: each stack's instances receive their own
// tenant-header key, in their environment and never in their arguments; a
// header signed for one stack is refused by another stack's instance.
func TestHeaderKeyPerStack(t *testing.T) {
	ctx := testContext(t)
	tg := newTenant(t, "e2e-sigstack")
	if err := syncGateway(ctx); err != nil {
		t.Fatal(err)
	}
	other := deployStack(t, "e2e-sig", 1)
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared := snap.Stacks[platform.SharedStack].Instances[0]
	signed := func(stack string) http.Header {
		return http.Header{tenantsig.HeaderTenant: {tg.Tenant},
			tenantsig.HeaderSignature: {tenantsig.Sign(stackKey(stack), tg.Tenant, stack, "GET", "/v1/orders", time.Now())}}
	}
	for _, tc := range []struct {
		name, url, signedFor string
		want                 int
	}{
		{"shared's header at shared", shared.URL, platform.SharedStack, http.StatusOK},
		{"shared's header at e2e-sig", other.Instances[0].URL, platform.SharedStack, http.StatusUnauthorized},
		{"e2e-sig's header at e2e-sig", other.Instances[0].URL, "e2e-sig", http.StatusOK},
		{"e2e-sig's header at shared", shared.URL, "e2e-sig", http.StatusUnauthorized},
	} {
		if status, _, out := callURL(t, tc.url+"/v1/orders", "GET", "", nil, signed(tc.signedFor)); status != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, status, out, tc.want)
		}
	}
	for _, in := range []registry.Instance{shared, other.Instances[0]} {
		args, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", in.PID))
		if err != nil {
			t.Fatal(err)
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", in.PID))
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []string{platform.SharedStack, "e2e-sig"} {
			k := hex.EncodeToString(stackKey(st))
			if bytes.Contains(args, []byte(k)) {
				t.Errorf("instance %d has stack %s's header key in its arguments", in.PID, st)
			}
			own := (in.URL == shared.URL) == (st == platform.SharedStack)
			if has := bytes.Contains(env, []byte("TENANTRY_HEADER_KEY="+k)); has != own {
				t.Errorf("instance %d holds stack %s's header key: %v, want %v", in.PID, st, has, own)
			}
		}
		if bytes.Contains(env, []byte(hex.EncodeToString(tenantsig.RootKey([]byte(plat.Local.State.Secret))))) {
			t.Errorf("instance %d holds the tenant-header root key", in.PID)
		}
	}
}

// TestGatewaySilentBodies: the platform's gateway process, with its real
// limits: 500 connections announce a body they never send — 480 without a
// key are answered 401 and closed at once, 20 with a key are closed when
// the 30 s read timeout expires — while normal requests keep succeeding.
func TestGatewaySilentBodies(t *testing.T) {
	ctx := testContext(t)
	tg := newTenant(t, "e2e-silent")
	if err := syncGateway(ctx); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(plat.GatewayURL, "http://")
	type closed struct {
		keyed  bool
		status string
		after  time.Duration
		err    error
	}
	results := make(chan closed, 500)
	for i := range 500 {
		keyed := i%25 == 0
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		auth := ""
		if keyed {
			auth = "Authorization: " + bearer(tg.APIKey) + "\r\n"
		}
		start := time.Now()
		fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: gw\r\n%sContent-Length: 200000\r\n\r\n", auth)
		go func() {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(time.Minute))
			br := bufio.NewReader(c)
			status, err := br.ReadString('\n')
			if err == nil {
				_, err = io.Copy(io.Discard, br)
			}
			results <- closed{keyed, strings.TrimSpace(status), time.Since(start), err}
		}()
	}
	for i := range 20 {
		if status, _, out := call(t, "GET", "/v1/orders?limit=1", bearer(tg.APIKey), nil, nil); status != http.StatusOK {
			t.Fatalf("normal request %d beside 500 silent bodies: %d %v", i, status, out)
		}
	}
	var slowest [2]time.Duration
	for range 500 {
		r := <-results
		if r.err != nil {
			t.Fatalf("connection (keyed %v) after %v: %v", r.keyed, r.after, r.err)
		}
		i, want := 0, "HTTP/1.1 401 Unauthorized"
		if r.keyed {
			i, want = 1, "HTTP/1.1 400 Bad Request"
		}
		if r.status != want {
			t.Fatalf("connection (keyed %v): %q, want %q", r.keyed, r.status, want)
		}
		slowest[i] = max(slowest[i], r.after)
	}
	t.Logf("closed after at most: without a key %v, with a key %v", slowest[0], slowest[1])
	if slowest[0] > 10*time.Second || slowest[1] < 30*time.Second || slowest[1] > 45*time.Second {
		t.Fatalf("closed after %v (no key) and %v (key); want at once and at the 30 s read timeout", slowest[0], slowest[1])
	}
}
