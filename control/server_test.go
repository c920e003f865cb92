package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/control"
	"tenantry/dbconn"
	"tenantry/jsonapi/jsonapitest"
	"tenantry/oms"
	"tenantry/pgtest"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/stack"
	"tenantry/workflow"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	testToken = "adm_test_token"
	testAlias = "pool-t"
)

var testSecret = []byte("control-test-secret")

// api is a control plane served over loopback: a registry on a fresh
// control database and one alias on a fresh tenant database, both on the
// shared test cluster.
type api struct {
	url     string
	handler *control.Server
	store   *registry.Store
	dsn     string // of the control database
	client  *control.Client
	// runner is the service's Workflows: not started, no kinds registered.
	runner *workflow.Runner
	// host, port and db of the alias's database.
	host string
	port int
	db   string
}

func newAPI(t *testing.T) *api { return newAPIWith(t, nil) }

// newAPIWith is newAPI with the service's config changed by configure.
func newAPIWith(t *testing.T, configure func(*control.Config)) *api {
	t.Helper()
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	dsn := c.DSN(pgtest.MustDB(t))
	store, err := registry.OpenStore(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := workflow.Migrate(ctx, store.Pool()); err != nil {
		t.Fatal(err)
	}
	runner, err := workflow.NewRunner(store.Pool(), workflow.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := control.Config{
		Store: store, Secret: testSecret, Workflows: runner,
		PrepareDatabase: func(ctx context.Context, conn *pgx.Conn) error {
			if err := oms.Migrate(ctx, conn); err != nil {
				return err
			}
			return provision.SetupDatabase(ctx, conn)
		},
	}
	if configure != nil {
		configure(&cfg)
	}
	svc, err := control.NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.NewServer(svc, testToken)
	if err != nil {
		t.Fatal(err)
	}
	srv.EnableStacks(&stack.ExternalProvider{Store: store}, store)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	a := &api{url: hs.URL, handler: srv, store: store, dsn: dsn, client: &control.Client{BaseURL: hs.URL, Token: testToken}, runner: runner,
		host: c.Host, port: c.Port, db: pgtest.MustDB(t)}
	if _, err := a.client.RegisterCluster(ctx, control.RegisterClusterRequest{Name: "main", Members: []registry.Member{
		{Name: "main-0", Host: c.Host, Port: c.Port, Role: registry.RolePrimary},
	}, TLS: dbconn.TLS{Mode: dbconn.SSLDisable}, Credential: c.Credential()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.CreateAlias(ctx, registry.Alias{Name: testAlias, Cluster: "main", Database: a.db}); err != nil {
		t.Fatal(err)
	}
	return a
}

// answer is one HTTP answer of the API.
type answer struct {
	status int
	code   string
	body   string
	close  bool // the server closes the connection after it
}

// send sends body (a string is sent as is, anything else as JSON) with the
// given Authorization header value ("" for none).
func (a *api) send(t *testing.T, method, path, auth string, body any) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	return answer{status: resp.StatusCode, code: e.Error.Code, body: string(raw), close: resp.Close}
}

func (a *api) version(t *testing.T) int64 {
	t.Helper()
	v, err := a.store.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantUnchanged fails when the registry version moved from before.
func (a *api) wantUnchanged(t *testing.T, before int64) {
	t.Helper()
	if v := a.version(t); v != before {
		t.Errorf("registry version %d -> %d: a refused request changed the registry", before, v)
	}
}

func TestServer_AdminToken(t *testing.T) {
	a := newAPI(t)
	before := a.version(t)
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + testToken + "x", "Basic " + testToken, testToken, "Bearer "} {
		for _, req := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/status", nil},
			{"GET", "/v1/tenants", nil},
			{"POST", "/v1/tenants", map[string]string{"id": "acme", "alias": testAlias}},
			{"PUT", "/v1/routes/default", map[string]any{"backends": []any{}}},
		} {
			got := a.send(t, req.method, req.path, auth, req.body)
			if got.status != http.StatusUnauthorized || got.code != "unauthorized" || !got.close {
				t.Errorf("%s %s with Authorization %q: %d %s (closing %v), want 401 unauthorized and the connection closed",
					req.method, req.path, auth, got.status, got.body, got.close)
			}
		}
	}
	a.wantUnchanged(t, before)
	if got := a.send(t, "GET", "/healthz", "", nil); got.status != http.StatusOK {
		t.Errorf("/healthz without a token: %d, want 200", got.status)
	}
	bad := &control.Client{BaseURL: a.url, Token: "wrong"}
	_, err := bad.Tenants(context.Background())
	if !errors.Is(err, control.ErrUnauthorized) {
		t.Errorf("client with a wrong token: err = %v, want ErrUnauthorized", err)
	}
}

func TestServer_InvalidNames(t *testing.T) {
	a := newAPI(t)
	auth := "Bearer " + testToken
	long := strings.Repeat("a", 64)
	names := []string{"Robert'); drop table x;--", "UPPER", long, "", "a", "1abc", "has space", "x\"y"}
	before := a.version(t)
	for _, name := range names {
		for _, req := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/v1/tenants", map[string]any{"id": name, "alias": testAlias}},
			{"POST", "/v1/aliases", map[string]any{"name": name, "cluster": "main"}},
			{"POST", "/v1/aliases", map[string]any{"name": "ok-alias", "cluster": "main", "database": name}},
			{"POST", "/v1/clusters", map[string]any{"name": name}},
			{"POST", "/v1/clusters/register", map[string]any{"name": name, "members": []registry.Member{{Name: "m-0", Host: "127.0.0.1", Port: 5432, Role: registry.RolePrimary}},
				"credential": map[string]string{"user": "postgres", "password": "x"}}},
			{"POST", "/v1/stacks", map[string]any{"name": name, "version": "v1", "urls": []string{"http://127.0.0.1:1"}}},
			{"GET", "/v1/tenants/" + url.PathEscape(name), nil},
			{"PUT", "/v1/routes/" + url.PathEscape(name), map[string]any{"backends": []any{}}},
		} {
			switch {
			case name == "" && req.method != "POST":
				continue // an empty path segment is another route
			case name == "" && req.body.(map[string]any)["database"] == "":
				continue // an empty database name means the alias's name
			case name == "a" && !strings.Contains(req.path, "tenants") && !strings.Contains(req.path, "routes"):
				continue // a valid one-letter name, except for tenants
			}
			got := a.send(t, req.method, req.path, auth, req.body)
			if got.status != http.StatusBadRequest || got.code != "invalid_request" {
				t.Errorf("%s %s %v: %d %s, want 400 invalid_request", req.method, req.path, req.body, got.status, got.body)
			}
		}
	}
	a.wantUnchanged(t, before)
	// Nothing reached the database either: no role, no database was made.
	conn, err := pgx.Connect(context.Background(), pgtest.MustCluster(t).DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(),
		"SELECT (SELECT count(*) FROM pg_roles WHERE rolname ~ '^t_[^a-z]|drop|UPPER') + (SELECT count(*) FROM pg_database WHERE datname ~ 'drop|UPPER')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d roles or databases named after invalid input exist", n)
	}
	// The Go client maps the answer back to the registry's sentinel.
	if _, err := a.client.CreateTenant(context.Background(), "UPPER", testAlias); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("client CreateTenant(UPPER): err = %v, want registry.ErrInvalid", err)
	}
}

func TestServer_NotFoundAndExists(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	auth := "Bearer " + testToken

	before := a.version(t)
	got := a.send(t, "POST", "/v1/tenants", auth, map[string]string{"id": "acme", "alias": "no-such-alias"})
	if got.status != http.StatusNotFound || got.code != "not_found" {
		t.Errorf("tenant on an unknown alias: %d %s, want 404 not_found", got.status, got.body)
	}
	if _, err := a.client.CreateTenant(ctx, "acme", "no-such-alias"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("client: tenant on an unknown alias: err = %v, want registry.ErrNotFound", err)
	}
	if _, err := a.client.CreateAlias(ctx, registry.Alias{Name: "other", Cluster: "no-such-cluster"}); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("client: alias on an unknown cluster: err = %v, want registry.ErrNotFound", err)
	}
	if _, err := a.client.Tenant(ctx, "nobody"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("client: unknown tenant: err = %v, want registry.ErrNotFound", err)
	}
	a.wantUnchanged(t, before)

	nt, err := a.client.CreateTenant(ctx, "acme", testAlias)
	if err != nil {
		t.Fatal(err)
	}
	if nt.APIKey == "" || nt.Tenant.ID != "acme" || nt.Tenant.Alias != testAlias {
		t.Fatalf("created tenant %+v", nt)
	}
	before = a.version(t)
	got = a.send(t, "POST", "/v1/tenants", auth, map[string]string{"id": "acme", "alias": testAlias})
	if got.status != http.StatusConflict || got.code != "exists" {
		t.Errorf("duplicate tenant: %d %s, want 409 exists", got.status, got.body)
	}
	if _, err := a.client.CreateTenant(ctx, "acme", testAlias); !errors.Is(err, registry.ErrExists) {
		t.Errorf("client: duplicate tenant: err = %v, want registry.ErrExists", err)
	}
	var apiErr *control.APIError
	if _, err := a.client.CreateTenant(ctx, "acme", testAlias); !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Errorf("client: duplicate tenant: err = %#v, want *APIError with status 409", err)
	}
	a.wantUnchanged(t, before)

	info, err := a.client.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if info.Database != a.db || info.Cluster != "main" {
		t.Errorf("tenant info %+v, want database %s on cluster main", info, a.db)
	}
}

func TestServer_BadBodies(t *testing.T) {
	a := newAPI(t)
	auth := "Bearer " + testToken
	huge := `{"id":"` + strings.Repeat("a", 1<<20) + `","alias":"` + testAlias + `"}`
	padded := `{"id":"padded","alias":"` + testAlias + `"}` + strings.Repeat(" ", 1<<20)
	before := a.version(t)
	for name, body := range map[string]string{
		"unknown field":     `{"id":"acme","alias":"` + testAlias + `","admin":true}`,
		"bad json":          `{"id":"acme",`,
		"not an object":     `["acme"]`,
		"wrong type":        `{"id":42,"alias":"` + testAlias + `"}`,
		"capitalised field": `{"ID":"acme","ALIAS":"` + testAlias + `"}`,
		"duplicate key":     `{"id":"acme","alias":"` + testAlias + `","id":"other"}`,
		"invalid UTF-8":     "{\"id\":\"acme\",\"alias\":\"pool\xff\"}",
		"trailing data":     `{"id":"acme","alias":"` + testAlias + `"} {"id":"other"}`,
		"empty":             ``,
		"oversized":         huge,
		"oversized, padded": padded,
	} {
		got := a.send(t, "POST", "/v1/tenants", auth, body)
		if got.status != http.StatusBadRequest || got.code != "invalid_request" {
			t.Errorf("%s: %d %.200s, want 400 invalid_request", name, got.status, got.body)
		}
	}
	got := a.send(t, "POST", "/v1/clusters", auth, `{"name":"c2","standbys":1,"members":[{"name":"m","host":"127.0.0.1","port":1,"role":"primary","extra":1}]}`)
	if got.status != http.StatusBadRequest || got.code != "invalid_request" {
		t.Errorf("unknown nested field: %d %s, want 400 invalid_request", got.status, got.body)
	}
	a.wantUnchanged(t, before)
}

// TestService_TenantRole: a created tenant's database role logs in with the
// password derived from the platform secret and reads and writes only its
// own rows.
func TestService_TenantRole(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	for _, id := range []string{"acme", "globex"} {
		if _, err := a.client.CreateTenant(ctx, id, testAlias); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := pgx.Connect(ctx, pgtest.MustCluster(t).DSN(a.db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `INSERT INTO products (tenant_id, sku, name)
		VALUES ('acme', 'a-1', 'A1'), ('acme', 'a-2', 'A2'), ('globex', 'g-1', 'G1')`); err != nil {
		t.Fatal(err)
	}

	conn := connectAs(t, a, "acme", provision.Password(testSecret, "acme"))
	rows, err := conn.Query(ctx, "SELECT tenant_id, sku FROM products ORDER BY sku")
	if err != nil {
		t.Fatal(err)
	}
	seen, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var tenant, sku string
		err := r.Scan(&tenant, &sku)
		return tenant + "/" + sku, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "acme/a-1,acme/a-2" {
		t.Errorf("acme's role reads %v, want only acme/a-1 and acme/a-2", seen)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO products (tenant_id, sku, name) VALUES ('globex', 'evil', 'x')"); err == nil {
		t.Error("acme's role inserted a row for globex")
	}
	tag, err := conn.Exec(ctx, "UPDATE products SET name = 'changed' WHERE tenant_id = 'globex'")
	if err != nil || tag.RowsAffected() != 0 {
		t.Errorf("acme's role updating globex's rows: %v rows, err %v; want 0 rows", tag.RowsAffected(), err)
	}

	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Port, cfg.Database = a.host, uint16(a.port), a.db
	cfg.User, cfg.Password = provision.RoleName("acme"), provision.Password([]byte("another secret"), "acme")
	if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		c.Close(ctx)
		t.Error("acme's role logged in with a password derived from another secret")
	}
}

func connectAs(t *testing.T, a *api, tenant, password string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Port, cfg.Database = a.host, uint16(a.port), a.db
	cfg.User, cfg.Password = provision.RoleName(tenant), password
	cfg.ConnectTimeout = 5 * time.Second
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", cfg.User, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestServer_HealthAndMetricsWithoutToken(t *testing.T) {
	a := newAPI(t)
	for _, path := range []string{"/healthz", "/metrics"} {
		if ans := a.send(t, http.MethodGet, path, "", nil); ans.status != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, ans.status)
		}
	}
	if ans := a.send(t, http.MethodGet, "/metrics", "", nil); !strings.Contains(ans.body, "go_goroutines") {
		t.Error("/metrics has no Go runtime metrics")
	}
}

// TestServer_ReservedTenantIDs: a word the platform gives a meaning where a
// tenant id stands (the default route) is refused as a tenant id, 400
// invalid_request, before any role is made; ids that merely contain it are
// fine.
func TestServer_ReservedTenantIDs(t *testing.T) {
	if !slices.Contains(registry.ReservedTenantIDs, control.DefaultRouteName) {
		t.Fatalf("the default route's name %q is not a reserved tenant id", control.DefaultRouteName)
	}
	a := newAPI(t)
	auth := "Bearer " + testToken
	for _, tc := range []struct {
		id         string
		wantStatus int
		wantCode   string
	}{
		{"default", http.StatusBadRequest, "invalid_request"},
		{"default-co", http.StatusCreated, ""},
		{"my-default", http.StatusCreated, ""},
	} {
		t.Run(tc.id, func(t *testing.T) {
			before := a.version(t)
			got := a.send(t, "POST", "/v1/tenants", auth, map[string]string{"id": tc.id, "alias": testAlias})
			if got.status != tc.wantStatus || got.code != tc.wantCode {
				t.Fatalf("create tenant %q: %d %s, want %d %s", tc.id, got.status, got.body, tc.wantStatus, tc.wantCode)
			}
			if tc.wantStatus != http.StatusBadRequest {
				return
			}
			a.wantUnchanged(t, before)
			if _, err := a.store.CreateTenant(context.Background(), tc.id, testAlias); !errors.Is(err, registry.ErrInvalid) {
				t.Errorf("Store.CreateTenant(%q): err = %v, want ErrInvalid", tc.id, err)
			}
			conn, err := pgx.Connect(context.Background(), pgtest.MustCluster(t).DSN("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var n int
			if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE rolname = $1",
				provision.RoleName(tc.id)).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("a role %s was made for a refused tenant id", provision.RoleName(tc.id))
			}
		})
	}
}

// TestServer_Edges: every answer of the control API is JSON with a stable
// code, and a request for no endpoint is answered 401 before anything else
// without the admin token.
func TestServer_Edges(t *testing.T) {
	a := newAPI(t)
	addr := jsonapitest.MustServe(t, a.handler, control.Limits)
	req := func(method, target, token string) string {
		auth := ""
		if token != "" {
			auth = "Authorization: Bearer " + token + "\r\n"
		}
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: control\r\n%sContent-Length: 0\r\n\r\n", method, target, auth)
	}
	huge := strings.Repeat("a", 70<<10)
	for _, tc := range []struct {
		name, raw   string
		status      int
		code, allow string
	}{
		{"unknown path without a token", req("GET", "/v1/nothing", ""), 401, "unauthorized", ""},
		{"unknown path with a wrong token", req("GET", "/v1/nothing", "wrong"), 401, "unauthorized", ""},
		{"unknown path", req("GET", "/v1/nothing", testToken), 404, "not_found", ""},
		{"root", req("GET", "/", testToken), 404, "not_found", ""},
		{"wrong method without a token", req("DELETE", "/v1/tenants", ""), 401, "unauthorized", ""},
		{"wrong method", req("DELETE", "/v1/tenants", testToken), 405, "method_not_allowed", "GET, HEAD, POST"},
		{"unknown method", req("BREW", "/v1/status", testToken), 405, "method_not_allowed", "GET, HEAD"},
		{"double slash without a token", req("GET", "//v1/status", ""), 401, "unauthorized", ""},
		{"double slash", req("GET", "//v1/status", testToken), 404, "not_found", ""},
		{"dot dot", req("GET", "/v1/../v1/status", testToken), 404, "not_found", ""},
		{"OPTIONS *", req("OPTIONS", "*", testToken), 404, "not_found", ""},
		{"health", req("GET", "/healthz", ""), 200, "", ""},
		{"oversized URL", req("GET", "/v1/status?x="+huge, testToken), 431, "header_too_large", ""},
		{"malformed request line", "GET /v1/status\r\n\r\n", 400, "bad_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans := jsonapitest.MustSend(t, addr, tc.raw)
			ans.WantJSON(t, tc.status, tc.code)
			if got := ans.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

// TestService_StatusExpiresRouters: status lists each router with when it
// was last seen, and removes routers whose processes died without
// deregistering (silent past the expiry) instead of listing them forever.
func TestService_StatusExpiresRouters(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	cases := []struct {
		id      string
		silent  time.Duration
		expired bool
	}{
		{"r-beating", 0, false},
		{"r-slow", 20 * time.Second, false},
		{"r-dead", 2 * time.Minute, true},
		{"r-long-dead", 30 * 24 * time.Hour, true},
	}
	if _, err := a.client.CreateTenant(ctx, "acme", testAlias); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if err := a.store.RegisterRouter(ctx, c.id); err != nil {
			t.Fatal(err)
		}
		if err := a.store.AckEpoch(ctx, c.id, "acme", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := a.store.Pool().Exec(ctx, "UPDATE routers SET heartbeat = now() - $2 * interval '1 microsecond' WHERE id = $1",
			c.id, c.silent.Microseconds()); err != nil {
			t.Fatal(err)
		}
	}
	st, err := a.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]registry.RouterInstance{}
	for _, r := range st.Routers {
		listed[r.ID] = r
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r, ok := listed[c.id]
			if ok == c.expired || slices.Contains(st.Expired, c.id) != c.expired {
				t.Fatalf("listed %v, in expired %v (%v); want expired %v", ok, st.Expired, slices.Contains(st.Expired, c.id), c.expired)
			}
			if !c.expired && (r.LastSeenSeconds < c.silent.Seconds() || r.LastSeenSeconds > c.silent.Seconds()+30) {
				t.Errorf("last seen %.1f s ago, want about %.0f s", r.LastSeenSeconds, c.silent.Seconds())
			}
		})
	}
	// Expired routers are gone from the registry, acknowledgements with them.
	rs, err := a.store.Routers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Errorf("registry keeps %d routers after status, want the 2 live ones: %+v", len(rs), rs)
	}
	st, err = a.client.Status(ctx)
	if err != nil || len(st.Expired) != 0 || len(st.Routers) != 2 {
		t.Errorf("second status: %+v, %v; want the 2 live routers and nothing newly expired", st, err)
	}
}

// TestServer_HalfClose: a client that closes its sending side right after
// its request still reads a truthful answer: a 2xx only for work done, and
// work done is answered.
func TestServer_HalfClose(t *testing.T) {
	a := newAPI(t)
	addr := jsonapitest.MustServe(t, a.handler, control.Limits)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		tenants                  int // in the registry afterwards
	}{
		{"create a tenant", "POST", "/v1/tenants", `{"id":"half","alias":"` + testAlias + `"}`, 201, 1},
		{"refused body", "POST", "/v1/tenants", `{"id":"half2","ID":"x","alias":"` + testAlias + `"}`, 400, 1},
		{"status", "GET", "/v1/status", "", 200, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
				tc.method, tc.path, testToken, len(tc.body), tc.body)
			ans, ok := jsonapitest.Send(t, addr, raw, true)
			if !ok {
				t.Fatal("no answer")
			}
			ans.WantJSON(t, tc.status, map[bool]string{true: "", false: "invalid_request"}[tc.status < 300])
			snap, err := a.store.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Tenants) != tc.tenants {
				t.Errorf("%d tenants in the registry, want %d", len(snap.Tenants), tc.tenants)
			}
		})
	}
}
