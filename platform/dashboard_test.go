package platform

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"tenantry/control"
	"tenantry/dashboard"
	"tenantry/move"
	"tenantry/oms"
	"tenantry/rollout"
)

// screenshots, when set, is where TestDashboard and TestDashboard_Rollout
// also write the screenshots of the move and rollout views that the README
// shows (make screenshots).
var screenshots = flag.String("screenshots", "", "directory to write the dashboard screenshots of the README to")

// chromium finds the headless browser the dashboard tests drive: $CHROMIUM
// or the distribution's package (scripts/ensure-chromium.sh installs it).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: run scripts/ensure-chromium.sh (Debian/Ubuntu: apt-get install chromium) or set CHROMIUM")
	return ""
}

// browserContext is a headless Chromium tab for the test.
func browserContext(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, chromedp.WindowSize(1280, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return bctx
}

// screenshot writes a PNG of the whole page under the test's temporary
// directory (and, for the README's, to -screenshots too).
func screenshot(t *testing.T, bctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %d bytes", name, len(png))
}

// waitJS waits until the JavaScript expression is true in the page.
func waitJS(bctx context.Context, expr string) error {
	_, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(3*time.Minute)))
	return err
}

// TestDashboard drives the dashboard in headless Chromium: log in; the
// overview lists the clusters; a move started through the API appears and
// its progress shows without a reload; a command that does not fit the
// move shows the CLI's error; promote clicked in the page promotes; a
// cutback made through the API shows in the open page without a reload; a
// state change without the session cookie or the CSRF token is refused.
// Each view's screenshot is written under the test's temporary directory.
func TestDashboard(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	runMoves(t)
	shots := t.TempDir()
	base := plat.APIURL + dashboard.Prefix
	api := &control.Client{BaseURL: plat.APIURL, Token: plat.Local.State.AdminToken}
	const tenant = "ui-move"
	newTenant(t, ctx, tenant, 500)
	b := browserContext(t, ctx)

	// Log in: the overview lists the clusters.
	logIn(t, b, base)
	clusters := text(t, b, "clusters")
	for _, c := range []string{PooledCluster, "dedicated-1"} {
		if !strings.Contains(clusters, c) {
			t.Fatalf("overview's clusters do not list %s:\n%s", c, clusters)
		}
	}
	screenshot(t, b, shots, "overview")

	// A cluster's page probes its members.
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`a[href="/ui/clusters/`+PooledCluster+`"]`)), chromedp.WaitVisible(chromedp.ID("members"))); err != nil {
		t.Fatalf("cluster page: %v", err)
	}
	if m := text(t, b, "members"); !strings.Contains(m, "primary") || !strings.Contains(m, "yes") {
		t.Fatalf("cluster %s's members:\n%s", PooledCluster, m)
	}
	screenshot(t, b, shots, "cluster")
	if err := chromedp.Do(b, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("clusters"))); err != nil {
		t.Fatal(err)
	}

	// A move started through the API appears in the overview, live.
	mv, err := api.StartMove(ctx, move.StartRequest{Tenant: tenant, To: dedicatedAlias, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitJS(b, fmt.Sprintf(`!!document.querySelector('#operations a[href="/ui/moves/%s"]')`, mv.ID)); err != nil {
		t.Fatalf("the move does not appear in the overview: %v", err)
	}

	// Its page shows the phases as they pass, without a reload (a marker
	// set in the page survives).
	if err := chromedp.Do(b, chromedp.Navigate(base+"moves/"+mv.ID), chromedp.WaitVisible(chromedp.ID("phase"))); err != nil {
		t.Fatal(err)
	}
	firstPhase := text(t, b, "phase")
	markPage(t, b)
	if err := waitJS(b, `document.querySelector('#phase').textContent === 'ready' && !!document.querySelector('#cmd-promote')`); err != nil {
		t.Fatalf("the move page never showed phase ready: %v", err)
	}
	wantNoReload(t, b)
	t.Logf("move page opened at phase %s, showed ready live", firstPhase)
	if copied := text(t, b, "copy"); !strings.Contains(copied, "orders") || !strings.Contains(copied, "100%") {
		t.Fatalf("copy progress:\n%s", copied)
	}
	screenshot(t, b, shots, "move-ready")

	// A state change without the session cookie or the CSRF token is
	// refused, and changes nothing.
	wantRefused(t, b, ctx, base+"moves/"+mv.ID+"/promote")
	if st, err := api.Move(ctx, mv.ID, false); err != nil || st.Data.On != PooledAlias {
		t.Fatalf("after refused requests the tenant is on %v (%v), want %s", st.Data.On, err, PooledAlias)
	}

	// A command that does not fit the move shows what the CLI would.
	_, cliErr := api.MoveCommand(ctx, mv.ID, move.SignalCutback)
	if cliErr == nil {
		t.Fatal("cutback before a promotion succeeded")
	}
	err = chromedp.Do(b, chromedp.Navigate(base+"moves/"+mv.ID+"/cutback"), chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("error")))
	if err != nil {
		t.Fatal(err)
	}
	if shown := text(t, b, "error"); shown != cliErr.Error() {
		t.Fatalf("page shows %q, the CLI %q", shown, cliErr.Error())
	}

	// Promote, clicked in the page and confirmed, promotes.
	err = chromedp.Do(b, chromedp.Click(chromedp.ID("cmd-promote")), chromedp.WaitVisible(chromedp.ID("confirm")))
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, b, shots, "confirm")
	if err := chromedp.Do(b, chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("flash"))); err != nil {
		t.Fatalf("promote: %v", err)
	}
	st, err := api.Move(ctx, mv.ID, false)
	if err != nil || st.Data.On != dedicatedAlias || len(st.Data.Flips) != 1 {
		t.Fatalf("after promote in the page: %+v (%v), want the tenant on %s after one flip", st, err, dedicatedAlias)
	}
	if err := waitJS(b, `document.querySelector('#on').textContent === 'dedicated' && !!document.querySelector('#flip-0')`); err != nil {
		t.Fatalf("the move page does not show the promotion: %v", err)
	}
	screenshot(t, b, shots, "move")
	if *screenshots != "" {
		screenshot(t, b, *screenshots, "dashboard-move")
	}

	// A cutback through the API shows in the open page, live.
	markPage(t, b)
	if _, err := api.MoveCommand(ctx, mv.ID, move.SignalCutback); err != nil {
		t.Fatal(err)
	}
	if err := waitJS(b, `document.querySelector('#on').textContent === 'pool-1' && !!document.querySelector('#flip-1')`); err != nil {
		t.Fatalf("the open move page does not show the cutback: %v", err)
	}
	wantNoReload(t, b)
	finishMove(t, ctx, mv.ID, move.SignalComplete)

	// The other views.
	for _, v := range []struct{ name, path, ready string }{
		{"tenants", "tenants?q=ui-", "#tenants"},
		{"moves", "moves", "#moves"},
		{"events", "events?subject=" + tenant, "#events"},
	} {
		if err := chromedp.Do(b, chromedp.Navigate(base+v.path), chromedp.WaitVisible(chromedp.CSS(v.ready))); err != nil {
			t.Fatalf("view %s: %v", v.name, err)
		}
		screenshot(t, b, shots, v.name)
	}
	if err := chromedp.Do(b, chromedp.Navigate(base+"tenants?q=ui-")); err != nil {
		t.Fatal(err)
	}
	if tenants := text(t, b, "tenants"); !strings.Contains(tenants, tenant) {
		t.Fatalf("tenants view does not find %s:\n%s", tenant, tenants)
	}
}

// logIn logs the browser in with the admin token: it lands on the overview.
func logIn(t *testing.T, b context.Context, base string) {
	t.Helper()
	err := chromedp.Do(b,
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), plat.Local.State.AdminToken),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("clusters")))
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
}

// TestDashboard_Rollout: a rollout's page shows each interval's verdict and
// the charts as they come, without a reload; promote clicked in the page
// sends all traffic to the new stack, and the open page follows the
// rollout through the hold to its end.
func TestDashboard_Rollout(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	runMoves(t)
	shots := t.TempDir()
	base := plat.APIURL + dashboard.Prefix
	const tenant, green = "ui-rollout", "ui-green"
	fx := newTenant(t, ctx, tenant, 0)
	deployStack(t, ctx, green, tenant, oms.Faults{})
	lr := startLoad(t, ctx, 100, fx)
	defer lr.finish(t)
	b := browserContext(t, ctx)
	logIn(t, b, base)

	// A long grace: the rollout stays at 10 % until promoted.
	p := testRolloutParams(10, 100)
	p.Grace = rollout.Duration(2 * time.Minute)
	in, err := rolloutClient().StartRollout(ctx, rollout.StartRequest{Route: tenant, To: green, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Navigate(base+"rollouts/"+in.ID), chromedp.WaitVisible(chromedp.ID("phase"))); err != nil {
		t.Fatal(err)
	}
	markPage(t, b)
	if err := waitJS(b, `document.querySelectorAll('#verdicts tr').length >= 3 && document.querySelectorAll('#charts polyline').length === 5`); err != nil {
		t.Fatalf("the rollout page never showed two verdicts and the charts: %v", err)
	}
	wantNoReload(t, b)
	if w := text(t, b, "weight"); w != "10%" {
		t.Fatalf("weight shown %q, want 10%%", w)
	}
	screenshot(t, b, shots, "rollout")
	if *screenshots != "" {
		screenshot(t, b, *screenshots, "dashboard-rollout")
	}

	err = chromedp.Do(b, chromedp.Click(chromedp.ID("cmd-promote")), chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("flash")))
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	if b := routeOf(t, ctx, tenant); len(b) != 1 || b[0].Stack != green || b[0].Weight != 100 {
		t.Fatalf("route after promote in the page: %+v", b)
	}
	// Promote goes to the hold (1 s here), then the rollout retires: the
	// open page follows it.
	markPage(t, b)
	if err := waitJS(b, `document.querySelector('#phase').textContent === 'retired' && document.querySelector('#status').textContent === 'succeeded'`); err != nil {
		t.Fatalf("the rollout page does not show the rollout retired: %v", err)
	}
	wantNoReload(t, b)
	if w := text(t, b, "weight"); w != "100%" {
		t.Fatalf("weight shown %q, want 100%%", w)
	}
	screenshot(t, b, shots, "rollout-retired")
}

// text is the text of the element with id, read in one evaluation: a live
// view may replace the element between a query and a read.
func text(t *testing.T, b context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(b, chromedp.Evaluate[string](fmt.Sprintf(`document.getElementById(%q).textContent`, id)))
	if err != nil {
		t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

// markPage sets a marker in the page that a reload would lose.
func markPage(t *testing.T, b context.Context) {
	t.Helper()
	if _, err := chromedp.Run(b, chromedp.Evaluate[bool](`window.noReload = true`)); err != nil {
		t.Fatal(err)
	}
}

// wantNoReload checks that the marker set in the page is still there.
func wantNoReload(t *testing.T, b context.Context) {
	t.Helper()
	kept, err := chromedp.Run(b, chromedp.Evaluate[bool](`window.noReload === true`))
	if err != nil || !kept {
		t.Fatalf("the page was reloaded (marker kept %v, %v)", kept, err)
	}
}

// wantRefused posts a command outside the browser: without the session
// cookie (401), then with the browser's session cookie but no CSRF token
// (403).
func wantRefused(t *testing.T, b, ctx context.Context, target string) {
	t.Helper()
	res, err := chromedp.Call(b, network.GetCookies, network.GetCookiesParams{URLs: []string{target}})
	if err != nil {
		t.Fatal(err)
	}
	var session string
	for _, c := range res.Cookies {
		if c.Name == dashboard.SessionCookie {
			session = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Fatalf("session cookie is not HttpOnly and SameSite=Strict: %+v", c)
			}
		}
	}
	if session == "" {
		t.Fatal("the browser has no session cookie")
	}
	post := func(cookie string, form url.Values) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: dashboard.SessionCookie, Value: cookie})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("", url.Values{dashboard.CSRFField: {"anything"}}); got != http.StatusUnauthorized {
		t.Fatalf("command without the session cookie = %d, want 401", got)
	}
	if got := post(session, nil); got != http.StatusForbidden {
		t.Fatalf("command without the CSRF token = %d, want 403", got)
	}
	if got := post(session, url.Values{dashboard.CSRFField: {"forged"}}); got != http.StatusForbidden {
		t.Fatalf("command with a wrong CSRF token = %d, want 403", got)
	}
}
