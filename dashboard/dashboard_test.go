package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"tenantry/dashboard"
	"tenantry/pgtest"
	"tenantry/registry"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const adminToken = "test-admin-token"

// mustPlatform serves a dashboard over a registry on a fresh database with
// one cluster (a primary and a standby), alias pool-1 and tenants
// tenants.
func mustPlatform(tb testing.TB, tenants int) (string, *registry.Store) {
	tb.Helper()
	ctx := context.Background()
	s, err := registry.OpenStore(ctx, pgtest.MustCluster(tb).DSN(pgtest.MustDB(tb)), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	must(tb, s.CreateCluster(ctx, registry.Cluster{Name: "c1", Members: []registry.Member{
		{Name: "m1", Host: "127.0.0.1", Port: 5432, Zone: "z1", Role: registry.RolePrimary},
		{Name: "m2", Host: "127.0.0.1", Port: 5433, Zone: "z2", Role: registry.RoleStandby},
	}}))
	must(tb, s.CreateAlias(ctx, registry.Alias{Name: "pool-1", Cluster: "c1", Database: "app"}))
	for i := range tenants {
		if _, err := s.CreateTenant(ctx, fmt.Sprintf("t%04d", i), "pool-1"); err != nil {
			tb.Fatal(err)
		}
	}
	d, err := dashboard.New(dashboard.Config{Registry: s, Secret: []byte("0123456789abcdef0123456789abcdef"), AdminToken: adminToken})
	if err != nil {
		tb.Fatal(err)
	}
	return httptestServer(tb, d), s
}

// httptestServer serves d until the test ends and returns its URL.
func httptestServer(tb testing.TB, d *dashboard.Dashboard) string {
	srv := httptest.NewServer(d)
	tb.Cleanup(func() { d.Close(); srv.Close() })
	return srv.URL
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see them.
func browser(tb testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	must(tb, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(tb testing.TB, c *http.Client, u string) (int, string) {
	tb.Helper()
	resp, err := c.Get(u)
	must(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(tb, err)
	return resp.StatusCode, string(b)
}

func login(tb testing.TB, c *http.Client, base, token string) *http.Response {
	tb.Helper()
	resp, err := c.PostForm(base+"/ui/login", url.Values{"token": {token}})
	must(tb, err)
	resp.Body.Close()
	return resp
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestDashboard_Login(t *testing.T) {
	srv, _ := mustPlatform(t, 3)
	c := browser(t)

	// Without a session, a view sends the browser to the login form.
	resp, err := c.Get(srv + "/ui/")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("GET /ui/ without a session = %d %q, want 303 to /ui/login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if r := login(t, c, srv, "wrong"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with a wrong token = %d, want 401", r.StatusCode)
	}
	// A login posted from another site is refused, even with the token.
	req, err := http.NewRequest("POST", srv+"/ui/login", strings.NewReader(url.Values{"token": {adminToken}}.Encode()))
	must(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	cross, err := c.Do(req)
	must(t, err)
	cross.Body.Close()
	if cross.StatusCode != http.StatusForbidden || len(cross.Cookies()) != 0 {
		t.Fatalf("cross-site login = %d with cookies %v, want 403 and none", cross.StatusCode, cross.Cookies())
	}
	r := login(t, c, srv, adminToken)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %d, want 303", r.StatusCode)
	}
	var sc *http.Cookie
	for _, ck := range r.Cookies() {
		if ck.Name == dashboard.SessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/ui/" {
		t.Fatalf("session cookie = %+v, want HttpOnly, SameSite=Strict, Path /ui/", sc)
	}
	status, body := get(t, c, srv+"/ui/")
	if status != http.StatusOK || !strings.Contains(body, `<b class="cluster">c1</b>`) || !strings.Contains(body, "3 tenants") {
		t.Fatalf("overview = %d:\n%s", status, body)
	}

	// A forged cookie (the MAC of another key) is no session.
	other := browser(t)
	u, _ := url.Parse(srv + "/ui/")
	other.Jar.SetCookies(u, []*http.Cookie{{Name: dashboard.SessionCookie, Value: "v1.9999999999.00.AAAA"}})
	if status, _ := get(t, other, srv+"/ui/tenants"); status != http.StatusSeeOther {
		t.Fatalf("forged session = %d, want 303 to the login form", status)
	}
}

// TestDashboard_StateChangeNeedsSessionAndCSRF: a state change (logout here;
// the move commands go through the same wrapper) is refused without the
// session cookie (401), without the CSRF token or with another session's
// (403), and from another origin (403).
func TestDashboard_StateChangeNeedsSessionAndCSRF(t *testing.T) {
	srv, _ := mustPlatform(t, 0)
	c := browser(t)
	login(t, c, srv, adminToken)
	_, body := get(t, c, srv+"/ui/")
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	csrf := m[1]
	c2 := browser(t)
	login(t, c2, srv, adminToken)
	_, body2 := get(t, c2, srv+"/ui/")
	csrf2 := csrfRe.FindStringSubmatch(body2)[1]

	post := func(c *http.Client, form url.Values, origin string) int {
		req, err := http.NewRequest("POST", srv+"/ui/logout", strings.NewReader(form.Encode()))
		must(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		resp, err := c.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		form   url.Values
		origin string
		want   int
	}{
		{"no session cookie", &http.Client{}, url.Values{"csrf": {csrf}}, "", http.StatusUnauthorized},
		{"no CSRF token", c, url.Values{}, "", http.StatusForbidden},
		{"another session's token", c, url.Values{"csrf": {csrf2}}, "", http.StatusForbidden},
		{"cross-site", c, url.Values{"csrf": {csrf}}, "https://evil.example", http.StatusForbidden},
		{"with both", c, url.Values{"csrf": {csrf}}, "", http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(tc.c, tc.form, tc.origin); got != tc.want {
				t.Fatalf("POST /ui/logout = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestDashboard_Tenants(t *testing.T) {
	srv, s := mustPlatform(t, 120)
	ctx := context.Background()
	must(t, s.CreateAlias(ctx, registry.Alias{Name: "pool-2", Cluster: "c1", Database: "app2"}))
	_, err := s.CreateTenant(ctx, "acme", "pool-2")
	must(t, err)
	must(t, s.AddEvent(ctx, "cluster.checked", "c1", "checked", nil))
	c := browser(t)
	login(t, c, srv, adminToken)

	rows := regexp.MustCompile(`<td>(t\d{4}|acme)</td>`)
	// acme sorts first: page 3 (of 50 each) starts at t0099.
	_, body := get(t, c, srv+"/ui/tenants?page=3")
	got := rows.FindAllStringSubmatch(body, -1)
	if len(got) != 21 || got[0][1] != "t0099" || got[20][1] != "t0119" || !strings.Contains(body, "121 tenants · page 3 of 3") {
		t.Fatalf("page 3 of the tenants = %d rows from %v:\n%s", len(got), got, body)
	}
	_, body = get(t, c, srv+"/ui/tenants?q=t001")
	if got := rows.FindAllStringSubmatch(body, -1); len(got) != 10 || got[9][1] != "t0019" {
		t.Fatalf("search t001 = %v", got)
	}
	// The gateways' request counts of this hour and the last, not older.
	now := time.Now()
	must(t, s.AddTenantTraffic(ctx, now, map[string]int64{"acme": 40, "t0001": 7}))
	must(t, s.AddTenantTraffic(ctx, now.Add(-time.Hour), map[string]int64{"acme": 2}))
	must(t, s.AddTenantTraffic(ctx, now.Add(-3*time.Hour), map[string]int64{"acme": 1000}))
	_, body = get(t, c, srv+"/ui/tenants?q=a")
	if !regexp.MustCompile(`<td>acme</td>(?s:.*?)<td class="num">42</td>`).MatchString(body) {
		t.Fatalf("acme's requests are not 42:\n%s", body)
	}
	_, body = get(t, c, srv+"/ui/tenants?alias=pool-2")
	if got := rows.FindAllStringSubmatch(body, -1); len(got) != 1 || got[0][1] != "acme" {
		t.Fatalf("tenants on pool-2 = %v", got)
	}

	_, body = get(t, c, srv+"/ui/events?kind=cluster")
	if !strings.Contains(body, "cluster.checked") || strings.Contains(body, "tenant.created") {
		t.Fatalf("events of kind cluster:\n%s", body)
	}
	_, body = get(t, c, srv+"/ui/events?subject=acme")
	if !strings.Contains(body, "tenant.created") || strings.Contains(body, "t0001") {
		t.Fatalf("events of acme:\n%s", body)
	}
}

// TestDashboard_OverviewStream: the overview's live stream sends the
// fragment at once and again when the registry changes.
func TestDashboard_OverviewStream(t *testing.T) {
	srv, s := mustPlatform(t, 1)
	c := browser(t)
	login(t, c, srv, adminToken)
	req, err := http.NewRequest("GET", srv+"/ui/overview/stream", nil)
	must(t, err)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	must(t, err)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream = %d %s", resp.StatusCode, ct)
	}
	next := eventReader(resp.Body)
	if first := next(); !strings.Contains(first, "1 tenants") {
		t.Fatalf("first update:\n%s", first)
	}
	_, err = s.CreateTenant(context.Background(), "acme", "pool-1")
	must(t, err)
	for {
		if u := next(); strings.Contains(u, "2 tenants") {
			break
		}
	}

	noSession, err := http.NewRequest("GET", srv+"/ui/overview/stream", nil)
	must(t, err)
	noSession.Header.Set("Accept", "text/event-stream")
	r2, err := http.DefaultClient.Do(noSession)
	must(t, err)
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream without a session = %d, want 401", r2.StatusCode)
	}
}

// eventReader returns the data of each "update" event read from r.
func eventReader(r io.Reader) func() string {
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 8<<10)
	return func() string {
		for {
			if i := strings.Index(string(buf), "\n\n"); i >= 0 {
				ev := string(buf[:i])
				buf = buf[i+2:]
				if !strings.HasPrefix(ev, "event: update\n") {
					continue
				}
				var data []string
				for line := range strings.SplitSeq(ev, "\n") {
					if d, ok := strings.CutPrefix(line, "data: "); ok {
						data = append(data, d)
					}
				}
				return strings.Join(data, "\n")
			}
			n, err := r.Read(tmp)
			if err != nil {
				panic(fmt.Sprintf("stream ended: %v", err))
			}
			buf = append(buf, tmp[:n]...)
		}
	}
}

// BenchmarkOverview renders the overview (and the first tenants page) with
// 2,000 tenants registered, through a real HTTP server and registry.
func BenchmarkOverview(b *testing.B) {
	srv, _ := mustPlatform(b, 2000)
	c := browser(b)
	login(b, c, srv, adminToken)
	for _, path := range []string{"/ui/", "/ui/tenants?q=t1"} {
		b.Run(strings.Trim(path, "/"), func(b *testing.B) {
			for b.Loop() {
				if status, _ := get(b, c, srv+path); status != 200 {
					b.Fatalf("GET %s = %d", path, status)
				}
			}
		})
	}
}
