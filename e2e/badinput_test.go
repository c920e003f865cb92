package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/control"
	"tenantry/platform"
	"tenantry/tenantsig"
)

// hostile is one request a hostile or broken client sends.
type hostile struct {
	name   string
	base   string // gateway, control API or instance URL
	method string
	path   string
	header http.Header
	body   string
}

// fingerprint is what a refused request must leave as it was: every row of
// every table of the pooled database (count and an order-independent hash
// per table) and the registry's version, which every registry write bumps.
func fingerprint(t *testing.T, ctx context.Context, pool *pgxpool.Pool) string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range tables {
		var n int64
		var h string
		q := "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM " + pgx.Identifier{tbl}.Sanitize() + " t"
		if err := pool.QueryRow(ctx, q).Scan(&n, &h); err != nil {
			t.Fatalf("fingerprint %s: %v", tbl, err)
		}
		fmt.Fprintf(&b, "%s:%d:%s ", tbl, n, h)
	}
	v, err := plat.Store.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "registry:%d", v)
	return b.String()
}

// TestBadInput sends hostile requests through the running platform — the
// gateway, an OMS instance directly, and the control API — and checks that
// each is answered with a 4xx JSON error with a code and changes nothing
// in the pooled database or the registry.
func TestBadInput(t *testing.T) {
	ctx := testContext(t)
	a, b, cat := tenantPair(t, "e2e-bad-a", "e2e-bad-b")
	orderA := placeOrder(t, a, cat, nil)
	prodA, locA := cat[a.Tenant].Products[0], cat[a.Tenant].Locations[0]
	admin := &control.Client{BaseURL: plat.APIURL, Token: plat.Local.State.AdminToken}
	keysA, err := admin.APIKeys(ctx, a.Tenant)
	if err != nil || len(keysA) == 0 {
		t.Fatalf("keys of %s: %v %v", a.Tenant, keysA, err)
	}
	// An idempotency key used once, to be replayed with another body.
	idem := http.Header{"Idempotency-Key": {"e2e-bad-idem"}}
	order := func(loc, prod int64, qty any) string {
		return fmt.Sprintf(`{"location_id":%d,"lines":[{"product_id":%d,"quantity":%v}]}`, loc, prod, qty)
	}
	if status, _, out := call(t, "POST", "/v1/orders", bearer(a.APIKey), json.RawMessage(order(locA, prodA, 1)), idem); status != http.StatusCreated {
		t.Fatalf("first use of the idempotency key: %d %v", status, out)
	}
	snap, err := plat.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inst := snap.Stacks[platform.SharedStack].Instances[0].URL
	gw, api := plat.GatewayURL, plat.APIURL
	asA, asB := http.Header{"Authorization": {bearer(a.APIKey)}}, http.Header{"Authorization": {bearer(b.APIKey)}}
	adminH := http.Header{"Authorization": {"Bearer " + plat.Local.State.AdminToken}}
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	signed := func(key []byte, tenant, stack, method, target string, at time.Time) http.Header {
		return http.Header{tenantsig.HeaderTenant: {tenant}, tenantsig.HeaderSignature: {tenantsig.Sign(key, tenant, stack, method, target, at)}}
	}
	shared := stackKey(platform.SharedStack)
	pathA := fmt.Sprintf("/v1/orders/%d", orderA)
	lines := func(n int) string {
		var s strings.Builder
		for i := range n {
			if i > 0 {
				s.WriteByte(',')
			}
			fmt.Fprintf(&s, `{"product_id":%d,"quantity":1}`, i+1)
		}
		return fmt.Sprintf(`{"location_id":%d,"lines":[%s]}`, locA, s.String())
	}

	cases := []hostile{
		// Missing and wrong credentials at the gateway.
		{"no key", gw, "GET", "/v1/orders", nil, ""},
		{"no key, a body", gw, "POST", "/v1/orders", nil, order(locA, prodA, 1)},
		{"unknown key", gw, "GET", "/v1/orders", http.Header{"Authorization": {"Bearer tk_nope"}}, ""},
		{"key without Bearer", gw, "GET", "/v1/orders", http.Header{"Authorization": {a.APIKey}}, ""},
		{"Basic auth", gw, "GET", "/v1/orders", http.Header{"Authorization": {"Basic " + a.APIKey}}, ""},
		{"key with a suffix", gw, "GET", "/v1/orders", http.Header{"Authorization": {bearer(a.APIKey + "x")}}, ""},
		{"admin token as API key", gw, "GET", "/v1/orders", adminH, ""},
		{"tenant header, no key", gw, "GET", "/v1/orders", signed(shared, a.Tenant, platform.SharedStack, "GET", "/v1/orders", time.Now()), ""},
		// Another tenant's ids.
		{"B reads A's order", gw, "GET", pathA, asB, ""},
		{"B fulfils A's order", gw, "POST", pathA + "/fulfil", asB, ""},
		{"B cancels A's order", gw, "POST", pathA + "/cancel", asB, ""},
		{"B reads A's product", gw, "GET", fmt.Sprintf("/v1/products/%d", prodA), asB, ""},
		{"B reads A's location", gw, "GET", fmt.Sprintf("/v1/locations/%d", locA), asB, ""},
		{"B sets A's stock", gw, "PUT", fmt.Sprintf("/v1/inventory/%d/%d", prodA, locA), asB, `{"on_hand":0}`},
		{"B receives into A's stock", gw, "POST", fmt.Sprintf("/v1/inventory/%d/%d/receipts", prodA, locA), asB, `{"quantity":5}`},
		{"B orders from A's location", gw, "POST", "/v1/orders", asB, order(locA, prodA, 1)},
		{"B orders A's product", gw, "POST", "/v1/orders", asB, order(cat[b.Tenant].Locations[0], prodA, 1)},
		// Cursors: malformed, or another list's.
		{"negative cursor", gw, "GET", "/v1/orders?after=-1", asA, ""},
		{"text cursor", gw, "GET", "/v1/orders?after=abc", asA, ""},
		{"inventory cursor on orders", gw, "GET", fmt.Sprintf("/v1/orders?after=%d.%d", prodA, locA), asA, ""},
		{"order cursor on inventory", gw, "GET", fmt.Sprintf("/v1/inventory?after=%d", orderA), asA, ""},
		{"page too large", gw, "GET", "/v1/orders?limit=100000", asA, ""},
		{"inventory page too large", gw, "GET", "/v1/inventory?limit=501", asA, ""},
		{"zero page", gw, "GET", "/v1/inventory?limit=0", asA, ""},
		{"bad status filter", gw, "GET", "/v1/orders?status=everything", asA, ""},
		// Bad JSON and wrong types.
		{"truncated JSON", gw, "POST", "/v1/orders", asA, `{"location_id":`},
		{"not JSON", gw, "POST", "/v1/products", asA, `sku=a&name=b`},
		{"empty body", gw, "POST", "/v1/products", asA, ""},
		{"null body", gw, "POST", "/v1/products", asA, "null"},
		{"array body", gw, "POST", "/v1/products", asA, `[{"sku":"x","name":"y"}]`},
		{"two values", gw, "POST", "/v1/products", asA, `{"sku":"x","name":"y"}{"sku":"z","name":"w"}`},
		{"duplicate key", gw, "POST", "/v1/products", asA, `{"sku":"x","sku":"y","name":"n"}`},
		{"unknown field", gw, "POST", "/v1/products", asA, `{"sku":"x","name":"y","tenant_id":"` + b.Tenant + `"}`},
		{"field in other case", gw, "POST", "/v1/orders", asA, `{"LOCATION_ID":1,"lines":[]}`},
		{"id as string", gw, "POST", "/v1/orders", asA, fmt.Sprintf(`{"location_id":"%d","lines":[{"product_id":%d,"quantity":1}]}`, locA, prodA)},
		{"quantity as float", gw, "POST", "/v1/orders", asA, order(locA, prodA, 1.5)},
		{"quantity zero", gw, "POST", "/v1/orders", asA, order(locA, prodA, 0)},
		{"quantity negative", gw, "POST", "/v1/orders", asA, order(locA, prodA, -5)},
		{"quantity huge", gw, "POST", "/v1/orders", asA, order(locA, prodA, "1e30")},
		{"quantity overflow", gw, "POST", "/v1/orders", asA, order(locA, prodA, "9223372036854775808")},
		{"same product twice", gw, "POST", "/v1/orders", asA, fmt.Sprintf(`{"location_id":%d,"lines":[{"product_id":%d,"quantity":1},{"product_id":%d,"quantity":1}]}`, locA, prodA, prodA)},
		{"no lines", gw, "POST", "/v1/orders", asA, fmt.Sprintf(`{"location_id":%d,"lines":[]}`, locA)},
		{"stock as string", gw, "PUT", fmt.Sprintf("/v1/inventory/%d/%d", prodA, locA), asA, `{"on_hand":"lots"}`},
		{"negative stock", gw, "PUT", fmt.Sprintf("/v1/inventory/%d/%d", prodA, locA), asA, `{"on_hand":-1}`},
		{"invalid UTF-8", gw, "POST", "/v1/products", asA, "{\"sku\":\"\xff\",\"name\":\"n\"}"},
		{"lone surrogate", gw, "POST", "/v1/products", asA, `{"sku":"\ud800","name":"n"}`},
		{"control character in name", gw, "POST", "/v1/products", asA, `{"sku":"x\u0000","name":"n"}`},
		{"blank sku", gw, "POST", "/v1/products", asA, `{"sku":"   ","name":"n"}`},
		{"idempotency key reused with another body", gw, "POST", "/v1/orders", with(asA, "Idempotency-Key", "e2e-bad-idem"), order(locA, prodA, 2)},
		// Huge bodies, arrays and headers.
		{"body over 1 MiB", gw, "POST", "/v1/products", asA, `{"sku":"x","name":"` + strings.Repeat("a", 1<<20) + `"}`},
		{"101 order lines", gw, "POST", "/v1/orders", asA, lines(101)},
		{"20,000 order lines", gw, "POST", "/v1/orders", asA, lines(20_000)},
		{"deep nesting", gw, "POST", "/v1/orders", asA, strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)},
		{"name of 10,000 characters", gw, "POST", "/v1/products", asA, `{"sku":"x","name":"` + strings.Repeat("é", 10_000) + `"}`},
		// net/http tolerates a few KiB past MaxHeaderBytes on a reused connection.
		{"100 KiB header", gw, "GET", "/v1/orders", with(asA, "X-Big", strings.Repeat("a", 100<<10)), ""},
		// Path tricks.
		{"dot dot", gw, "GET", "/v1/../v1/orders", asA, ""},
		{"escaped dot dot", gw, "GET", "/v1/orders/%2e%2e/products/1", asA, ""},
		{"double slash", gw, "GET", "//v1/orders", asA, ""},
		{"escaped slash", gw, "GET", "/v1/orders%2F1", asA, ""},
		{"id with a plus", gw, "GET", fmt.Sprintf("/v1/orders/+%d", orderA), asA, ""},
		{"id with a leading zero", gw, "GET", fmt.Sprintf("/v1/orders/0%d", orderA), asA, ""},
		{"negative id", gw, "GET", "/v1/orders/-1", asA, ""},
		{"id past int64", gw, "GET", "/v1/orders/99999999999999999999", asA, ""},
		{"unknown path", gw, "GET", "/v1/admin", asA, ""},
		{"metrics on the public listener", gw, "GET", "/metrics", asA, ""},
		{"wrong method", gw, "DELETE", pathA, asA, ""},
		{"PATCH", gw, "PATCH", "/v1/products/1", asA, `{"name":"x"}`},
		// Forged tenant headers, straight to an instance.
		{"instance: no header", inst, "GET", "/v1/orders", nil, ""},
		{"instance: unsigned", inst, "GET", "/v1/orders", http.Header{tenantsig.HeaderTenant: {a.Tenant}}, ""},
		{"instance: signed with a guess", inst, "GET", "/v1/orders", signed([]byte("guess"), a.Tenant, platform.SharedStack, "GET", "/v1/orders", time.Now()), ""},
		{"instance: another stack's key", inst, "GET", "/v1/orders", signed(stackKey("other"), a.Tenant, "other", "GET", "/v1/orders", time.Now()), ""},
		{"instance: the platform secret", inst, "GET", "/v1/orders", signed([]byte(plat.Local.State.Secret), a.Tenant, platform.SharedStack, "GET", "/v1/orders", time.Now()), ""},
		{"instance: replayed on another path", inst, "POST", pathA + "/cancel", signed(shared, a.Tenant, platform.SharedStack, "GET", pathA, time.Now()), ""},
		{"instance: replayed with another method", inst, "POST", "/v1/orders", signed(shared, a.Tenant, platform.SharedStack, "GET", "/v1/orders", time.Now()), order(locA, prodA, 1)},
		{"instance: a minute old", inst, "POST", pathA + "/cancel", signed(shared, a.Tenant, platform.SharedStack, "POST", pathA+"/cancel", time.Now().Add(-time.Minute)), ""},
		{"instance: bad tenant id", inst, "GET", "/v1/orders", signed(shared, "Not A Tenant", platform.SharedStack, "GET", "/v1/orders", time.Now()), ""},
		// The control API: credentials, then bad names and values.
		{"api: no token", api, "GET", "/v1/tenants", nil, ""},
		{"api: API key as token", api, "GET", "/v1/tenants", asA, ""},
		{"api: no token, a tenant", api, "POST", "/v1/tenants", nil, `{"id":"e2e-bad-new","alias":"pool-1"}`},
		{"api: upper-case tenant", api, "POST", "/v1/tenants", adminH, `{"id":"Acme","alias":"pool-1"}`},
		{"api: SQL in tenant id", api, "POST", "/v1/tenants", adminH, `{"id":"x'); DROP TABLE tenants; --","alias":"pool-1"}`},
		{"api: quote in tenant id", api, "POST", "/v1/tenants", adminH, `{"id":"a\"b","alias":"pool-1"}`},
		{"api: reserved tenant id", api, "POST", "/v1/tenants", adminH, `{"id":"default","alias":"pool-1"}`},
		{"api: 62-character tenant id", api, "POST", "/v1/tenants", adminH, `{"id":"` + strings.Repeat("a", 62) + `","alias":"pool-1"}`},
		{"api: existing tenant", api, "POST", "/v1/tenants", adminH, `{"id":"` + a.Tenant + `","alias":"pool-1"}`},
		{"api: unknown alias", api, "POST", "/v1/tenants", adminH, `{"id":"e2e-bad-new","alias":"no-such-alias"}`},
		{"api: bad alias name", api, "POST", "/v1/tenants", adminH, `{"id":"e2e-bad-new","alias":"Pool 1"}`},
		{"api: tenant id as number", api, "POST", "/v1/tenants", adminH, `{"id":7,"alias":"pool-1"}`},
		{"api: tenant unknown field", api, "POST", "/v1/tenants", adminH, `{"id":"e2e-bad-new","alias":"pool-1","superuser":true}`},
		{"api: bad alias", api, "POST", "/v1/aliases", adminH, `{"name":"bad alias","cluster":"pool-1","database":"x"}`},
		{"api: alias on a system database", api, "POST", "/v1/aliases", adminH, `{"name":"e2e-bad-alias","cluster":"pool-1","database":"postgres"}`},
		{"api: alias on an unknown cluster", api, "POST", "/v1/aliases", adminH, `{"name":"e2e-bad-alias","cluster":"nowhere","database":"x"}`},
		{"api: bad cluster name", api, "POST", "/v1/clusters", adminH, `{"name":"Bad;Cluster","standbys":0}`},
		{"api: negative standbys", api, "POST", "/v1/clusters", adminH, `{"name":"e2e-bad-cluster","standbys":-1}`},
		{"api: route to an unknown stack", api, "PUT", "/v1/routes/" + a.Tenant, adminH, `{"backends":[{"stack":"no-such-stack","weight":1}]}`},
		{"api: negative route weight", api, "PUT", "/v1/routes/" + a.Tenant, adminH, `{"backends":[{"stack":"shared","weight":-1}]}`},
		{"api: route for a bad tenant", api, "PUT", "/v1/routes/Bad_Tenant", adminH, `{"backends":[{"stack":"shared","weight":1}]}`},
		{"api: negative rate limit", api, "PUT", "/v1/tenants/" + a.Tenant + "/limits", adminH, `{"rate":-1}`},
		{"api: limits of an unknown tenant", api, "PUT", "/v1/tenants/e2e-bad-nobody/limits", adminH, `{"rate":1}`},
		{"api: delete a bad tenant id", api, "DELETE", "/v1/tenants/Bad_Tenant", adminH, ""},
		{"api: revoke another tenant's key", api, "DELETE", "/v1/tenants/" + b.Tenant + "/keys/" + keysA[0].ID, adminH, ""},
		{"api: revoke an unknown key", api, "DELETE", "/v1/tenants/" + a.Tenant + "/keys/k_nope", adminH, ""},
		{"api: move to an unknown alias", api, "POST", "/v1/moves", adminH, `{"tenant":"` + a.Tenant + `","to":"no-such-alias"}`},
		{"api: move of a bad tenant", api, "POST", "/v1/moves", adminH, `{"tenant":"Bad Tenant","to":"pool-1"}`},
		{"api: deploy a badly named stack", api, "POST", "/v1/stacks", adminH, `{"name":"Bad Stack","version":"v1","instances":1}`},
		{"api: deploy 10,000 instances", api, "POST", "/v1/stacks", adminH, `{"name":"e2e-bad-stack","version":"v1","instances":10000}`},
		{"api: stop an unknown stack", api, "POST", "/v1/stacks/no-such-stack/stop", adminH, ""},
		{"api: isolation with a bad --until", api, "POST", "/v1/isolations", adminH, `{"tenant":"` + a.Tenant + `","until":"somewhere"}`},
		{"api: isolation with a space factor under 1", api, "POST", "/v1/isolations", adminH, `{"tenant":"` + a.Tenant + `","space_factor":0.5}`},
		{"api: resume no isolation", api, "POST", "/v1/isolations/" + a.Tenant + "/resume", adminH, `{"until":"deploy"}`},
		{"api: sandbox twin with a bad id", api, "PUT", "/v1/tenants/" + a.Tenant + "/sandbox-twin", adminH, `{"twin":"x'); DROP TABLE tenants; --"}`},
		{"api: tenant its own sandbox twin", api, "PUT", "/v1/tenants/" + a.Tenant + "/sandbox-twin", adminH, `{"twin":"` + a.Tenant + `"}`},
		{"api: sandbox twin of an unknown tenant", api, "PUT", "/v1/tenants/e2e-bad-nobody/sandbox-twin", adminH, `{"twin":"` + a.Tenant + `"}`},
		{"api: path trick", api, "GET", "/v1/tenants/../clusters", adminH, ""},
		{"api: huge body", api, "POST", "/v1/tenants", adminH, `{"id":"` + strings.Repeat("a", 2<<20) + `","alias":"pool-1"}`},
	}
	if len(cases) < 60 {
		t.Fatalf("only %d hostile requests", len(cases))
	}
	pool := pooledAdmin(t)
	hc := &http.Client{Timeout: 30 * time.Second}
	before := fingerprint(t, ctx, pool)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, ctype, code, raw := send(t, ctx, hc, tc)
			if status < 400 || status > 499 || !strings.HasPrefix(ctype, "application/json") || code == "" {
				t.Errorf("%s %s: %d %q %.300s; want a 4xx JSON error with a code", tc.method, tc.path, status, ctype, raw)
			}
			if after := fingerprint(t, ctx, pool); after != before {
				t.Errorf("%s %s (%d %s) changed the database:\nbefore %s\nafter  %s", tc.method, tc.path, status, code, before, after)
				before = after
			}
		})
	}
	// Another tenant's cursor reads nothing of it: B paging from before A's
	// order sees only its own (no) orders.
	status, _, out := call(t, "GET", fmt.Sprintf("/v1/orders?after=%d", orderA-1), bearer(b.APIKey), nil, nil)
	if orders, _ := out["orders"].([]any); status != http.StatusOK || len(orders) != 0 {
		t.Errorf("B with a cursor before A's order: %d %v, want 200 and no orders", status, out)
	}
}

// send sends one hostile request as given (the body as raw bytes) and
// returns the status, Content-Type, error code and body.
func send(t *testing.T, ctx context.Context, hc *http.Client, h hostile) (int, string, string, []byte) {
	t.Helper()
	var body io.Reader
	if h.body != "" {
		body = bytes.NewReader([]byte(h.body))
	}
	req, err := http.NewRequestWithContext(ctx, h.method, h.base, body)
	if err != nil {
		t.Fatal(err)
	}
	// The path exactly as written (no cleaning, no re-escaping).
	req.URL.Opaque = "//" + req.URL.Host + h.path
	for k, vs := range h.header {
		req.Header[k] = vs
	}
	if h.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", h.method, h.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	return resp.StatusCode, resp.Header.Get("Content-Type"), e.Error.Code, raw
}
