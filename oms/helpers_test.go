package oms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/oms"
	"tenantry/pgtest"
	"tenantry/tenantsig"
	"tenantry/tenanttable"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testStack is the stack the test servers belong to; headerKey is its
// tenant-header key.
const testStack = "oms-test"

var (
	headerRoot = tenantsig.RootKey([]byte("test-platform-secret")) // what a gateway holds
	headerKey  = tenantsig.StackKey(headerRoot, testStack)
)

// env is one migrated database served by a real OMS over loopback HTTP.
type env struct {
	t       *testing.T
	pool    *pgxpool.Pool
	handler *oms.Server
	srv     *httptest.Server
	admin   *httptest.Server // the server's AdminHandler
}

func newEnv(t *testing.T) *env {
	return newEnvWith(t, func(cfg *oms.Config) {})
}

func newEnvWith(t *testing.T, configure func(*oms.Config)) *env {
	t.Helper()
	c := pgtest.MustCluster(t)
	pool := pgtest.MustPool(t, c, pgtest.MustDB(t))
	if err := oms.Migrate(context.Background(), pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	cfg := oms.Config{DB: oms.PoolDB{Pool: pool}, HeaderKey: headerKey, Stack: testStack}
	configure(&cfg)
	s, err := oms.NewServer(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	admin := httptest.NewServer(s.AdminHandler())
	t.Cleanup(admin.Close)
	return &env{t: t, pool: pool, handler: s, srv: srv, admin: admin}
}

// response is an HTTP answer with its JSON body decoded.
type response struct {
	status int
	header http.Header
	close  bool // the server closes the connection after it
	raw    []byte
	body   map[string]any
}

func (r response) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r response) id() int64 {
	f, _ := r.body["id"].(float64)
	return int64(f)
}

// call sends method path as tenant (unsigned when tenant is ""), with body
// marshalled as JSON unless it is a string or []byte, and extra headers in
// pairs.
func (e *env) call(tenant, method, path string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if tenant != "" {
		tenantsig.SignRequest(req, headerKey, tenant, testStack, time.Now())
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, close: resp.Close, raw: raw}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// must is call that fails the test unless the status is want.
func (e *env) must(want int, tenant, method, path string, body any, headers ...string) response {
	e.t.Helper()
	r := e.call(tenant, method, path, body, headers...)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r
}

// counts returns the number of rows of every tenant table.
func (e *env) counts() map[string]int64 {
	e.t.Helper()
	out := map[string]int64{}
	tables, err := tenanttable.List(context.Background(), e.pool)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, tbl := range tables {
		var n int64
		if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+tbl.Ident()).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out[tbl.Name] = n
	}
	return out
}

// stocked creates a product and a location for tenant with on_hand stock.
func (e *env) stocked(tenant, sku string, onHand int64) (product, location int64) {
	e.t.Helper()
	product = e.must(201, tenant, "POST", "/v1/products", map[string]any{"sku": sku, "name": "Product " + sku}).id()
	location = e.must(201, tenant, "POST", "/v1/locations", map[string]any{"code": "loc-" + sku, "name": "Location"}).id()
	e.must(200, tenant, "PUT", pathf("/v1/inventory/%d/%d", product, location), map[string]any{"on_hand": onHand})
	return product, location
}

// position returns on_hand, reserved, shipped of a position straight from
// the database.
func (e *env) position(tenant string, product, location int64) [3]int64 {
	e.t.Helper()
	var p [3]int64
	err := e.pool.QueryRow(context.Background(), `SELECT on_hand, reserved, shipped FROM inventory
WHERE tenant_id = $1 AND product_id = $2 AND location_id = $3`, tenant, product, location).Scan(&p[0], &p[1], &p[2])
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// checkLedger asserts on_hand + reserved + shipped = sum(delta) for every position.
func (e *env) checkLedger() {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT i.tenant_id, i.product_id, i.location_id,
	i.on_hand + i.reserved + i.shipped, coalesce((SELECT sum(delta) FROM inventory_adjustments a
		WHERE a.tenant_id = i.tenant_id AND a.product_id = i.product_id AND a.location_id = i.location_id), 0)
FROM inventory i`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var tenant string
		var p, l, total, ledger int64
		if err := rows.Scan(&tenant, &p, &l, &total, &ledger); err != nil {
			e.t.Fatal(err)
		}
		if total != ledger {
			e.t.Errorf("tenant %s position %d/%d: on_hand+reserved+shipped = %d, ledger = %d", tenant, p, l, total, ledger)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	if n == 0 {
		e.t.Fatal("checkLedger: no positions")
	}
}

func pathf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
